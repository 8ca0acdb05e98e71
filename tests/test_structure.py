"""The house: no import cycles, one module that knows the record format, one atomic writer,
and every reader of run records going through :mod:`actbench.records`."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from actbench import records
from conftest import REPO

SRC = REPO / "src"
MAX_LINES = 500


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        name = ".".join(path.relative_to(SRC).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """Project modules ``name`` imports anywhere in its file (function-level imports too)."""
    found = set()
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    # Importing a.b.c runs a.b's __init__ first: from outside that package it is an edge too
    # (a package __init__ that imports its own modules then closes a loop at run time).
    for target in list(found):
        parts = target.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent in known and not name.startswith(parent + ".") and parent != name:
                found.add(parent)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles, state = [], {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    return cycles


def test_a_cycle_through_a_package_init_is_found(tmp_path: Path):
    pkg = tmp_path / "pkg"
    (pkg / "rep").mkdir(parents=True)
    (pkg / "rep" / "__init__.py").write_text("from pkg.rep.cli import main\n")
    (pkg / "rep" / "cli.py").write_text("import pkg.board\n")
    (pkg / "rep" / "stats.py").write_text("")
    (pkg / "board.py").write_text("from pkg.rep.stats import x\n")
    known = {"pkg.rep": pkg / "rep" / "__init__.py", "pkg.rep.cli": pkg / "rep" / "cli.py",
             "pkg.rep.stats": pkg / "rep" / "stats.py", "pkg.board": pkg / "board.py"}  # fmt: skip
    graph = {name: _imports(name, path, known) for name, path in known.items()}
    assert _cycles(graph) == [["pkg.board", "pkg.rep", "pkg.rep.cli", "pkg.board"]]


def test_the_cycle_finder_finds_a_planted_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_src():
    known = _modules()
    graph = {name: _imports(name, path, known) for name, path in known.items()}
    assert _cycles(graph) == []


def test_only_the_records_module_names_the_summary_file():
    named = [n for n, p in _modules().items() if records.SUMMARY in p.read_text()]
    assert named == ["actbench.records"]


def test_one_atomic_write_helper():
    # Renames into place and temporary files live in records.atomic_path only.
    offenders = []
    for name, path in _modules().items():
        if name == "actbench.records":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("mkstemp", "NamedTemporaryFile"):
                offenders.append(f"{name}: tempfile.{node.attr}")
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("replace", "rename")
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "os"
            ):
                offenders.append(f"{name}: os.{node.func.attr}")
    assert offenders == []


def test_modules_stay_small_or_say_why():
    big = []
    for name, path in _modules().items():
        lines = path.read_text().count("\n")
        doc = ast.get_docstring(ast.parse(path.read_text())) or ""
        if lines > MAX_LINES and "over 500 lines" not in doc.lower():
            big.append(f"{name} ({lines})")
    assert big == []


# --- every reader goes through records.read_summary --------------------------------------------


@pytest.fixture
def counted_reads(monkeypatch) -> list[Path]:
    """Patch the records reader; the list collects every folder read through it."""
    seen: list[Path] = []
    real = records.read_summary

    def reader(run_dir: Path):
        seen.append(Path(run_dir))
        return real(run_dir)

    monkeypatch.setattr(records, "read_summary", reader)
    return seen


def _sweep_of_two(root: Path) -> Path:
    sweep = root / "multirun" / "demo"
    for i, act in enumerate(("relu", "gelu")):
        folder = sweep / f"run{i}"
        folder.mkdir(parents=True)
        (folder / records.SUMMARY).write_text(
            json.dumps(
                {
                    "status": "completed",
                    "overrides": [f"activation={act}", "seed=0"],
                    "activation": {"name": act},
                    "seeds": {"seed": 0},
                    "metrics": {"test/acc": 0.5 + i / 10, "val/acc_best": 0.5},
                }
            )
        )
        (folder / records.CONFIG).write_text(
            "model: {name: mlp}\ndata: {name: digits}\noptimizer: {lr: 0.01}\nseed: 0\n"
        )
    return sweep


def test_the_sweeper_reads_records_through_the_records_module(tmp_path, counted_reads):
    from actbench import sweep

    root = _sweep_of_two(tmp_path)
    manifest = {"name": "demo", "sweep_dir": str(root), "runs": ["run0", "run1"],
                "started": 0.0, "finished_before": 0}  # fmt: skip
    assert "2/2 done" in sweep.progress_line(manifest, now=10.0)
    assert {p.name for p in counted_reads} == {"run0", "run1"}


def test_the_report_reads_records_through_the_records_module(tmp_path, counted_reads):
    from actbench.report.cli import build_report

    build_report(_sweep_of_two(tmp_path), tmp_path / "out", sweep_name="demo")
    assert {p.name for p in counted_reads} >= {"run0", "run1"}


def test_the_experiments_read_records_through_the_records_module(tmp_path, counted_reads):
    from actbench.experiments.base import DOCS, RUNS
    from actbench.experiments.document import render

    render("dying", DOCS, out=tmp_path, figure=False)
    runs = DOCS / "records" / "dying" / RUNS
    assert {p.parent for p in counted_reads} == {runs}
    assert len(counted_reads) == len(records.run_folders(runs)) > 0


def test_the_bench_reads_records_through_the_records_module(tmp_path, counted_reads):
    from actbench.bench.timing import run_record

    sweep = _sweep_of_two(tmp_path)
    assert run_record(sweep / "run1")["metrics"]["test/acc"] == pytest.approx(0.6)
    assert counted_reads == [sweep / "run1"]
    with pytest.raises(RuntimeError, match="left no readable run record"):
        run_record(tmp_path)

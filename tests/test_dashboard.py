"""The dashboard: what it gathers from a small synthetic sweep's records, and the page itself
opened in headless Chromium (no console error, no request, the plotted values read back from
the page equal the records', a non-blank screenshot). Without Chromium the browser tests skip
with the reason; .ci/run installs it."""

from __future__ import annotations

import html
import json
import math
import re
import shutil
import subprocess
import urllib.parse
import zlib
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from actbench import records
from actbench.dashboard import cli, data, page
from actbench.dashboard.workspace import SPEC_NAME
from actbench.report import analysis

ACTS = ("relu", "gelu", "tanh")
SEEDS = (0, 1, 2)
TUNE_SEEDS = (100, 101)
LRS = (0.001, 0.01)
STEPS = (0, 10, 50, 100, 199)
LAYERS = ("hidden.0.act", "hidden.1.act")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--enable-logging=stderr",
    "--v=0",
    "--virtual-time-budget=5000",  # lets the page's promises settle before the dump
)
SHOT_SIZE = "--window-size=1200,1600"


# ----------------------------------------------------------------------------- the records


def acc_of(act: str, seed: int) -> float:
    """The test accuracy a synthetic confirmation run records."""
    return 0.6 + 0.05 * ACTS.index(act) + 0.01 * seed


def curve_value(key: str, act: str, seed: int, step: int) -> float:
    """The value a synthetic run logs: distinct per key, activation, seed and step."""
    k = sum(map(ord, key)) % 97
    return (1 + k / 10) * (1 + ACTS.index(act)) / (step + 1 + seed) + 0.001 * k


CURVE_COLUMNS = (
    "train/loss",
    "val/loss",
    "val/acc",
    "dead/hard",
    *(f"dead/hard/{layer}" for layer in LAYERS),
    "grad/global_norm",
    *(f"grad/norm/{layer}" for layer in LAYERS),
    "curv/top_eig",
    "curv/stability_ratio",
    "curv/trace",
)


def write_run(
    sweep_dir: Path,
    act: str,
    seed: int,
    lr: float,
    stage: str,
    status: str = "completed",
    val_acc: float = 0.7,
) -> Path:
    """A run folder as the training entry point writes it: summary, config.yaml, metrics.csv
    and a local W&B run folder."""
    name = f"{act}_mlp_mnist1d_lr{lr:g}_s{seed}__{stage}"
    folder = sweep_dir / name
    folder.mkdir(parents=True)
    overrides = [f"activation={act}", f"optimizer.lr={lr}", f"seed={seed}", "model=mlp"]
    overrides += ["data=mnist1d", "sweep.name=demo", f"sweep.stage={stage}"]
    wandb_id = f"{zlib.crc32(name.encode()):010d}-abc123"
    metrics: dict[str, float] = {}
    if status == "completed":
        metrics = {"test/acc": acc_of(act, seed), "val/acc": val_acc, "val/acc_best": val_acc}
    records.write_summary(
        folder,
        {
            "status": status,
            "run_id": name,
            "overrides": overrides,
            "metrics": metrics,
            "wall_time_s": None if status == "running" else 5.0 + seed,
            "steps": 200 if status == "completed" else None,
            "activation": {"name": act},
            "seeds": {"seed": seed},
            "sweep": {"name": "demo", "stage": stage},
            "wandb_id": wandb_id,
            "wandb": {"group": f"mlp-{act}-mnist1d-0123456789", "dir": str(folder / "wandb")},
            **({"error": "RuntimeError: out of memory"} if status == "failed" else {}),
        },
    )
    (folder / "wandb" / f"offline-run-20261201_120000-{wandb_id}").mkdir(parents=True)
    config = {
        "model": {"name": "mlp"},
        "data": {"name": "mnist1d"},
        "activation": {"name": act},
        "optimizer": {"lr": lr},
        "seed": seed,
        "logger": {"project": "actbench-test"},
        "sweep": {"name": "demo", "stage": stage},
    }
    (folder / records.CONFIG).write_text(yaml.safe_dump(config))
    if status == "completed":
        rows = [
            [str(step), "0", *(repr(curve_value(k, act, seed, step)) for k in CURVE_COLUMNS)]
            for step in STEPS
        ]
        records.write_metrics_rows(
            folder / records.METRICS, ["step", "epoch", *CURVE_COLUMNS], rows
        )
    return folder


def write_sweep(root: Path) -> Path:
    """A two-stage sweep: tuning runs (2 LRs x 2 seeds) per activation, the sweeper's
    selection.json, confirmation runs on 3 seeds, plus one failed and one running run."""
    sweep_dir = root / "multirun" / "demo"
    for act in ACTS:
        for lr in LRS:
            for seed in TUNE_SEEDS:
                score = 0.7 + (0.02 if lr == 0.01 else 0.0) + 0.003 * (seed - 100)
                write_run(sweep_dir, act, seed, lr, "tune", val_acc=score)
    tune = records.read_sweep(sweep_dir)
    chosen = records.select_per_group(
        [(r.override_list, r.summary) for r in tune], "optimizer.lr", "val/acc"
    )
    records.write_selection(sweep_dir, "optimizer.lr", "val/acc", "maximize", chosen)
    for act in ACTS:
        for seed in SEEDS:
            write_run(sweep_dir, act, seed, 0.01, "confirm")
    write_run(sweep_dir, "relu", 3, 0.01, "confirm", status="failed")
    write_run(sweep_dir, "gelu", 3, 0.01, "confirm", status="running")
    return sweep_dir


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sweep(tmp_path_factory.mktemp("dash"))


@pytest.fixture(scope="module")
def built(sweep: Path) -> Path:
    """The dashboard of the synthetic sweep, as ``actbench-dashboard`` writes it."""
    out = sweep.parent.parent / "reports"
    assert cli.main([str(sweep), "--out", str(out)]) == 0
    return out / "demo" / page.PAGE_NAME


# ----------------------------------------------------------------------------- what it gathers


def test_the_dashboard_takes_the_reports_numbers(sweep, tmp_path):
    board = data.gather(sweep, tmp_path)
    (unit,) = analysis.analyse(analysis.read_runs(sweep), records.read_selection(sweep))
    (view,) = board.units
    assert [r.activation for r in view.unit.rows] == [r.activation for r in unit.rows]
    assert [r.mean for r in view.unit.rows] == pytest.approx([r.mean for r in unit.rows])
    for row in view.unit.rows:  # the ranked runs are the confirmation runs, 3 seeds each
        assert row.scores == pytest.approx({s: acc_of(row.activation, s) for s in SEEDS})
    assert view.unit.chosen_lr == {a: 0.01 for a in ACTS}
    fams = {f.key: f for f in view.families}
    assert set(fams) >= {"train/loss", "dead/hard", "grad/norm", "curv/stability_ratio"}
    assert list(fams["dead/hard"].layers) == list(LAYERS) and fams["dead/hard"].total
    assert fams["grad/norm"].layers and not fams["grad/norm"].total  # per block only
    # The band is the seeds' mean and min-max at each step.
    band = next(b for b in fams["train/loss"].total if b.activation == "gelu")
    values = np.array([[curve_value("train/loss", "gelu", s, t) for t in STEPS] for s in SEEDS])
    assert band.steps == list(STEPS) and band.runs == len(SEEDS)
    assert band.mean == pytest.approx(values.mean(0).tolist())
    assert band.lo == pytest.approx(values.min(0).tolist())
    assert band.hi == pytest.approx(values.max(0).tolist())


def test_the_run_table_links_every_folder_and_its_wandb_run(sweep, tmp_path):
    board = data.gather(sweep, tmp_path / "reports" / "demo")
    folders = {p.name for p in records.run_folders(sweep)}
    assert {r.folder for r in board.runs} == folders  # partial: failed and running ones too
    assert {r.status for r in board.runs} == {"completed", "failed", "running"}
    for row in board.runs:
        target = (tmp_path / "reports" / "demo" / urllib.parse.unquote(row.href)).resolve()
        assert target == (sweep / row.folder).resolve()
        wandb_dir = (tmp_path / "reports" / "demo" / urllib.parse.unquote(row.wandb_href)).resolve()
        assert wandb_dir.parent == (sweep / row.folder / "wandb").resolve()
        assert wandb_dir.name.endswith(row.wandb_id)
    ranked = [r for r in board.runs if r.ranked and r.status == "completed"]
    assert len(ranked) == len(ACTS) * len(SEEDS)


class Tags(HTMLParser):
    """Every tag of a page with its attributes (script bodies are data, not tags)."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def test_the_page_is_one_self_contained_file(built):
    parser = Tags()
    parser.feed(built.read_text())
    tags = parser.tags
    csp = [a["content"] for t, a in tags if t == "meta" and a.get("http-equiv")]
    assert csp and "default-src 'none'" in csp[0] and "connect-src 'none'" in csp[0]
    assert [t for t, a in tags if "src" in a] == []  # scripts and styles are inline
    assert [t for t, _ in tags if t in ("link", "iframe", "object", "embed")] == []
    links = [a["href"] for t, a in tags if t == "a" and not a["href"].startswith("#")]
    assert len(links) >= 2 * len(records.run_folders(built.parents[2] / "multirun" / "demo"))
    assert [u for u in links if re.match(r"[a-z]+:", u)] == []  # relative links only
    assert (built.parent / SPEC_NAME).is_file()


def test_the_ranking_table_shows_the_reports_letters_and_differences(sweep, built):
    (unit,) = analysis.analyse(analysis.read_runs(sweep), records.read_selection(sweep))
    text = built.read_text()
    for row in unit.rows:
        assert f"{row.activation}</td>" in text and f"<b>{row.letters}</b>" in text
        delta = unit.deltas.get(row.activation)
        if delta is not None and math.isfinite(delta.diff):
            assert f">{delta.diff * 100:+.2f}<" in text


def test_a_bad_sweep_is_one_line_naming_the_valid_ones(sweep, capsys):
    code = cli.main(["nosuch", "--runs-root", str(sweep.parent)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "'nosuch'" in err and "demo" in err


# ----------------------------------------------------------------------------- in a browser


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no headless browser: chromium is not on PATH (apt-get install chromium)")


def launch(target: str, profile: Path, *mode: str) -> subprocess.Popen:
    """Headless Chromium on ``target`` with a profile of its own (runs beside others)."""
    return subprocess.Popen(
        [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *mode, target],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen) -> tuple[str, str]:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    return out, err


def readback_of(dom: str, stderr: str) -> tuple[dict, str]:
    """What the page rendered (its readback, from the dumped DOM) and its console lines."""
    found = re.search(rf'<pre id="{page.READBACK}"[^>]*>(.*?)</pre>', dom, re.S)
    assert found and found.group(1), "the page wrote no readback: its script did not finish"
    console = [line for line in stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(html.unescape(found.group(1))), "\n".join(console)


def planted_page(built: Path, path: Path) -> Path:
    """The dashboard with a remote image and a console error planted (and no figures, so it
    loads fast): what the checks must catch."""
    text = built.read_text()
    head, rest = text.split('id="actbench-figures">', 1)
    text = head + 'id="actbench-figures">{}' + rest[rest.index("</script>") :]
    planted = '<img src="http://127.0.0.1:9/x.png"><script>console.error("planted")</script>'
    path.write_text(text.replace("<body>", "<body>" + planted, 1))
    return path


@pytest.fixture(scope="module")
def browser(built: Path, tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The page read back, the planted page read back and a screenshot, the three browsers
    run at once (each takes seconds)."""
    work = tmp_path_factory.mktemp("browser")
    shot = work / "dashboard.png"
    bad = planted_page(built, work / "planted.html")
    readback = "#" + page.READBACK
    procs = {
        "page": launch(built.resolve().as_uri() + readback, work / "p1", "--dump-dom"),
        "planted": launch(bad.resolve().as_uri() + readback, work / "p2", "--dump-dom"),
        "shot": launch(built.resolve().as_uri(), work / "p3", f"--screenshot={shot}", SHOT_SIZE),
    }
    done = {name: finish(proc) for name, proc in procs.items()}
    return SimpleNamespace(
        page=readback_of(*done["page"]), planted=readback_of(*done["planted"]), shot=shot
    )


def traces(readback: dict, kind: str, key: str) -> dict[str, dict]:
    """activation -> trace of that kind for that key, over every plot of the page."""
    return {
        t["meta"]["activation"]: t
        for plot in readback["plots"].values()
        for t in plot["traces"]
        if t["meta"] and t["meta"]["kind"] == kind and t["meta"]["key"] == key
    }


def test_the_page_renders_offline_in_chromium_with_the_runs_values(browser):
    readback, console = browser.page
    assert readback["errors"] == [] and console == ""  # nothing on the console at all
    assert readback["refused"] == [] and readback["resources"] == []  # no request
    plots = readback["plots"]
    assert len(plots) >= 10 and all(p["rendered"] for p in plots.values())
    # The ranking holds each seed's test accuracy and the mean.
    seeds, means = traces(readback, "seeds", "test/acc"), traces(readback, "mean", "test/acc")
    assert set(seeds) == set(ACTS)
    for act in ACTS:
        expected = sorted(acc_of(act, s) * 100 for s in SEEDS)
        assert sorted(seeds[act]["x"]) == pytest.approx(expected)
        assert means[act]["x"] == pytest.approx([float(np.mean(expected))])
    # Every curve and per-layer curve holds the seeds' mean at each logged step.
    for key in ("train/loss", "val/acc", "dead/hard/hidden.1.act", "grad/norm/hidden.0.act",
                "curv/stability_ratio", "curv/trace"):  # fmt: skip
        lines = traces(readback, "mean", key)
        assert set(lines) == set(ACTS), key
        for act, line in lines.items():
            want = [np.mean([curve_value(key, act, s, t) for s in SEEDS]) for t in STEPS]
            assert line["x"] == list(STEPS) and line["y"] == pytest.approx(want), (key, act)
    # The LR sensitivity: the mean tuning score per LR.
    lr = traces(readback, "lr", "val/acc")
    assert lr["relu"]["x"] == list(LRS)
    assert lr["relu"]["y"] == pytest.approx([70.15, 72.15])


def test_the_readback_sees_a_request_and_a_console_error(browser):
    # The checks above can fail: a page that fetches an image and logs an error is caught.
    readback, console = browser.planted
    assert any("127.0.0.1" in r for r in readback["refused"] + readback["resources"])
    assert "Content Security Policy" in console  # the browser refused it
    assert any("planted" in e for e in readback["errors"]) and "planted" in console


def test_a_screenshot_of_the_page_is_not_blank(browser):
    from PIL import Image

    assert browser.shot.is_file()
    image = np.asarray(Image.open(browser.shot).convert("RGB"))
    assert image.shape[:2] == (1600, 1200)
    rgb = image.astype(np.int32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    colours = np.unique(packed)
    assert len(colours) > 100  # text, axes, lines and bands, not one flat colour
    relu_blue = np.array([0x1F, 0x77, 0xB4])  # the report's colour for relu: its line is drawn
    assert (np.abs(image.astype(int) - relu_blue).sum(-1) < 30).sum() > 50
    assert math.isfinite(image.std()) and image.std() > 5

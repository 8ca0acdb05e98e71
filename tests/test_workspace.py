"""The W&B workspace from code: built offline from a sweep's records (its sections, grouping,
filter and band), written as a spec beside the dashboard, and created from that spec against a
mocked W&B API (no network, no key)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import wandb

from actbench.dashboard import cli, data, workspace
from actbench.report.figures import activation_colour
from test_dashboard import ACTS, write_sweep

SECTION_NAMES = ["Accuracy and loss", "Dead units", "Gradient norms", "Curvature", "Cost"]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sweep(tmp_path_factory.mktemp("ws"))


@pytest.fixture
def spec(sweep: Path, tmp_path: Path) -> dict[str, Any]:
    return workspace.workspace_spec(data.gather(sweep, tmp_path))


class FakeApi:
    """Just what wandb-workspaces asks of ``wandb.Api`` when saving: the entity and app URL."""

    default_entity = "alice"

    class client:  # lower case: the attribute wandb-workspaces reads
        app_url = "https://wandb.example"


@pytest.fixture
def saved(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """Patch the one call that would reach W&B; collects each view it is asked to save."""
    import wandb_workspaces.workspaces.internal as internal

    views: list[Any] = []

    def upsert_view2(view: Any) -> dict[str, Any]:
        views.append(view)
        return {"upsertView": {"view": {"name": "nw-abc123-v", "id": "VIEW1"}, "inserted": True}}

    monkeypatch.setattr(internal, "upsert_view2", upsert_view2)
    monkeypatch.setattr(wandb, "Api", FakeApi)
    return views


def test_the_spec_has_the_sections_grouping_and_filter(spec):
    assert [s["name"] for s in spec["sections"]] == SECTION_NAMES
    assert spec["runset"]["groupby"] == ["activation"]  # one unit: activation is the group
    assert spec["runset"]["group_colors"] == {a: activation_colour(a) for a in ACTS}
    assert spec["aggregate"] == {"groupby_aggfunc": "mean", "groupby_rangefunc": "minmax"}
    # the sweep's runs, and of its two stages the confirmation runs the report ranks
    assert spec["runset"]["filters"] == (
        'Config("cfg.sweep.name") == "demo" and Config("cfg.sweep.stage") == "confirm"'
    )
    assert spec["project"] == "actbench-test" and spec["entity"] is None
    ys = {y for s in spec["sections"] for p in s["panels"] for y in p.get("y", [])}
    assert {"val/acc", "dead/hard", "grad/global_norm", "curv/stability_ratio"} <= ys
    assert json.loads(json.dumps(spec)) == spec  # plain JSON


def test_the_workspace_is_built_offline_with_grouped_bands(spec):
    from wandb_workspaces import expr

    ws = workspace.build_workspace(spec)
    assert [s.name for s in ws.sections] == SECTION_NAMES
    assert ws.runset_settings.groupby == [expr.Config("activation")]
    panels = [p for s in ws.sections for p in s.panels]
    assert panels and all(p.groupby_aggfunc == "mean" for p in panels)
    assert all(p.groupby_rangefunc == "minmax" for p in panels)
    # What W&B would store: the runset grouped by the config key, each panel's band.
    stored = json.loads(ws._to_model().spec.model_dump_json(by_alias=True, exclude_none=True))
    runset = stored["section"]["runSets"][0]
    assert runset["grouping"] == [{"section": "config", "name": "activation.value"}]
    names = {f["key"]["name"]: f["value"] for f in runset["filters"]["filters"]}
    assert names == {"cfg.sweep.name": "demo", "cfg.sweep.stage": "confirm"}
    configs = [p["config"] for s in stored["section"]["panelBankConfig"]["sections"]
               for p in s["panels"]]  # fmt: skip
    assert {(c["groupAgg"], c["groupArea"]) for c in configs} == {("mean", "minmax")}


def test_the_spec_is_written_beside_the_dashboard_with_the_command(sweep, tmp_path, capsys):
    assert cli.main([str(sweep), "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "demo" / workspace.SPEC_NAME
    assert workspace.read_spec(path)["sections"][0]["name"] == SECTION_NAMES[0]
    assert f"actbench-dashboard --create-workspace {path}" in out


def test_the_workspace_is_created_from_its_spec_later(sweep, tmp_path, saved, capsys):
    assert cli.main([str(sweep), "--out", str(tmp_path)]) == 0
    path = tmp_path / "demo" / workspace.SPEC_NAME
    assert cli.main(["--create-workspace", str(path)]) == 0
    (view,) = saved
    assert (view.entity, view.project, view.display_name) == (
        "alice",
        "actbench-test",
        "actbench sweep demo",
    )
    stored = json.loads(view.spec.model_dump_json(by_alias=True, exclude_none=True))
    sections = stored["section"]["panelBankConfig"]["sections"]
    assert [s["name"] for s in sections] == SECTION_NAMES
    assert stored["section"]["runSets"][0]["grouping"][0]["name"] == "activation.value"
    assert "https://wandb.example/alice/actbench-test?nw=abc123" in capsys.readouterr().out


def test_online_it_saves_and_without_a_key_it_says_so(sweep, tmp_path, saved, monkeypatch, capsys):
    monkeypatch.setattr(cli, "_has_api_key", lambda: False)
    assert cli.main([str(sweep), "--out", str(tmp_path), "--wandb"]) == 0
    assert "no W&B API key" in capsys.readouterr().out and saved == []
    monkeypatch.setattr(cli, "_has_api_key", lambda: True)
    assert cli.main([str(sweep), "--out", str(tmp_path), "--wandb", "--entity", "team"]) == 0
    assert [v.entity for v in saved] == ["team"]


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "is not JSON"), ('{"format": "other"}', "has format 'other'; valid:")],
)
def test_a_bad_spec_is_one_line_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "spec.json"
    path.write_text(content)
    assert cli.main(["--create-workspace", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and str(path) in err

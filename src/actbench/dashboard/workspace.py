"""The sweep's W&B workspace from code: a saved view of the project filtered to the sweep's
runs, grouped by activation (mean and min-max band over seeds, the dashboard's colours), with
sections for accuracy/loss, dead units, gradient norms, curvature and cost.

The spec is plain JSON (``wandb_workspace.json`` beside the dashboard), written with no W&B
account; :func:`build_workspace` turns it into a ``wandb_workspaces`` workspace and
:func:`save_workspace` saves it, now (online) or later from the file
(``actbench-dashboard --create-workspace <spec>``). The panels' arguments in the spec are
``wandb_workspaces.reports.v2`` ``LinePlot`` / ``BarPlot`` arguments as they are.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from actbench import records
from actbench.report.figures import activation_colour

if TYPE_CHECKING:
    from actbench.dashboard.data import Dashboard

SPEC_NAME = "wandb_workspace.json"
SPEC_FORMAT = "actbench-wandb-workspace/1"
PANEL_TYPES = ("line", "bar")
# Every grouped panel shows the mean over the seeds of a group and their min-max band, as the
# dashboard and the report's figures do.
GROUP_AGG, GROUP_RANGE = "mean", "minmax"


def _line(y: str, log_y: bool = False, **extra: Any) -> dict[str, Any]:
    return {"type": "line", "title": y, "y": [y], **({"log_y": True} if log_y else {}), **extra}


def _per_layer(prefix: str, log_y: bool = False) -> dict[str, Any]:
    # The diagnostics log per-layer values as <metric>/<layer>: one panel for all layers.
    panel = {"type": "line", "title": f"{prefix} per layer", "metric_regex": f"^{prefix}/.+"}
    return {**panel, **({"log_y": True} if log_y else {})}


SECTIONS: tuple[tuple[str, tuple[dict[str, Any], ...]], ...] = (
    (
        "Accuracy and loss",
        (
            _line("val/acc"),
            _line("val/loss", log_y=True),
            _line("train/loss", log_y=True),
            {"type": "bar", "title": "test/acc (after training)", "metrics": ["test/acc"]},
            {"type": "bar", "title": "val/acc_best", "metrics": ["val/acc_best"]},
        ),
    ),
    (
        "Dead units",
        (
            _line("dead/hard"),
            _line("dead/dormant_0.1"),
            _line("dead/dormant_0.025"),
            _line("dead/frozen"),
            _per_layer("dead/hard"),
        ),
    ),
    (
        "Gradient norms",
        (_line("grad/global_norm", log_y=True), _per_layer("grad/norm", log_y=True)),
    ),
    (
        "Curvature",
        (
            _line("curv/top_eig", log_y=True),
            _line("curv/stability_ratio"),
            _line("curv/trace", log_y=True),
        ),
    ),
    (
        "Cost",
        (
            {"type": "bar", "title": "wall time (s)", "metrics": ["_runtime"]},
            _line("train/loss", log_y=True, x="RelativeTime(Wall)", title="train/loss vs time"),
        ),
    ),
)


class WorkspaceError(ValueError):
    """A spec that cannot be used, or a save that cannot be made; the message is one line."""


def _quote(value: str) -> str:
    return json.dumps(str(value))


def group_keys(board: Dashboard) -> list[str]:
    """Config keys the runs are grouped by: the activation first (its colour is the group's),
    then whatever else separates the report's units (model, dataset, a swept setting), so a
    group is one activation in one unit and its runs differ only in seed."""
    units = [view.unit.key for view in board.units]
    keys = ["activation"]
    if len({model for model, _, _ in units}) > 1:
        keys.append("model")
    if len({data for _, data, _ in units}) > 1:
        keys.append("dataset")
    setting_keys = sorted(
        {part.split("=", 1)[0] for _, _, setting in units for part in setting.split(",") if part}
    )
    keys += [f"cfg.{k}" for k in setting_keys]
    return keys


def run_filter(sweep: str, staged: bool) -> str:
    """The runs of the sweep (its name is in every run's config); of a two-stage sweep, the
    confirmation runs only, the ones the report ranks."""
    found = f"Config({_quote('cfg.sweep.name')}) == {_quote(sweep)}"
    if staged:
        found += f" and Config({_quote('cfg.sweep.stage')}) == {_quote('confirm')}"
    return found


def workspace_spec(
    board: Dashboard, entity: str | None = None, project: str | None = None
) -> dict[str, Any]:
    """The workspace of a gathered sweep as plain JSON-able data."""
    staged = any(view.unit.staged for view in board.units)
    acts = sorted({r.activation for r in board.runs})
    shown = [r for r in board.runs if r.ranked] or board.runs
    return {
        "format": SPEC_FORMAT,
        "entity": entity,
        "project": project or board.project,
        "name": f"actbench sweep {board.sweep}",
        "sweep": board.sweep,
        "runset": {
            "filters": run_filter(board.sweep, staged),
            "groupby": group_keys(board),
            "group_colors": {a: activation_colour(a) for a in acts},
        },
        "settings": {"x_axis": "Step", "max_runs": max(10, len(shown))},
        "aggregate": {"groupby_aggfunc": GROUP_AGG, "groupby_rangefunc": GROUP_RANGE},
        "sections": [{"name": name, "panels": list(panels)} for name, panels in SECTIONS],
    }


def write_spec(spec: Mapping[str, Any], path: Path) -> Path:
    return records.atomic_write_json(Path(path), dict(spec))


def read_spec(path: Path) -> dict[str, Any]:
    try:
        spec = json.loads(Path(path).read_text())
    except OSError as err:
        raise WorkspaceError(
            f"workspace spec {str(path)!r} cannot be read ({err.strerror})"
        ) from None
    except ValueError:
        raise WorkspaceError(f"workspace spec {str(path)!r} is not JSON") from None
    if not isinstance(spec, dict) or spec.get("format") != SPEC_FORMAT:
        found = spec.get("format") if isinstance(spec, dict) else type(spec).__name__
        raise WorkspaceError(
            f"workspace spec {str(path)!r} has format {found!r}; valid: {SPEC_FORMAT!r} "
            "(written by actbench-dashboard)"
        )
    return spec


def create_command(spec_path: Path) -> str:
    """The command that creates the workspace from its spec later (online, with an API key)."""
    return f"actbench-dashboard --create-workspace {spec_path}"


# ----------------------------------------------------------------------------- wandb-workspaces


def _panel(panel: Mapping[str, Any], aggregate: Mapping[str, Any]) -> Any:
    import wandb_workspaces.reports.v2 as wr

    kwargs = {k: v for k, v in panel.items() if k != "type"}
    kind = panel.get("type")
    if kind not in PANEL_TYPES:
        raise WorkspaceError(f"panel type {kind!r} in the spec; valid: {', '.join(PANEL_TYPES)}")
    cls = wr.LinePlot if kind == "line" else wr.BarPlot
    return cls(**{**aggregate, **kwargs})


def _configs(keys: Iterable[str]) -> list[Any]:
    from wandb_workspaces import expr

    return [expr.Config(k) for k in keys]


def build_workspace(spec: Mapping[str, Any], entity: str | None = None) -> Any:
    """The ``wandb_workspaces.workspaces.Workspace`` of a spec (no network). ``entity``
    overrides the spec's; a workspace needs one, "unknown-entity" stands in until it is saved."""
    import wandb_workspaces.workspaces as ws

    spec = copy.deepcopy(dict(spec))
    aggregate = spec.get("aggregate") or {}
    runset = spec.get("runset") or {}
    settings = spec.get("settings") or {}
    try:
        return ws.Workspace(
            entity=entity or spec.get("entity") or "unknown-entity",
            project=spec["project"],
            name=spec["name"],
            sections=[
                ws.Section(
                    name=section["name"],
                    panels=[_panel(p, aggregate) for p in section["panels"]],
                    is_open=True,
                )
                for section in spec["sections"]
            ],
            settings=ws.WorkspaceSettings(**settings),
            runset_settings=ws.RunsetSettings(
                filters=runset.get("filters", ""),
                groupby=_configs(runset.get("groupby", [])),
                group_colors=dict(runset.get("group_colors", {})),
            ),
        )
    except KeyError as err:
        raise WorkspaceError(f"workspace spec lacks {err.args[0]!r}") from None


def save_workspace(spec: Mapping[str, Any], entity: str | None = None) -> str:
    """Save the spec's workspace to W&B (needs an API key); returns its URL."""
    import wandb

    entity = entity or spec.get("entity")
    if not entity:
        try:
            entity = wandb.Api().default_entity
        except Exception as err:  # no key, no network: W&B says why in many lines
            reason = " ".join(str(err).split())[:200]
            raise WorkspaceError(f"cannot reach W&B to find your entity ({reason})") from None
    if not entity:
        raise WorkspaceError("no W&B entity: W&B names no default one; pass --entity ENTITY")
    workspace = build_workspace(spec, entity)
    try:
        workspace.save()
    except Exception as err:
        reason = " ".join(str(err).split())[:200]
        raise WorkspaceError(f"saving the W&B workspace failed ({reason})") from None
    return str(workspace.url)

"""The report logged to one W&B run (job_type "report", grouped with the sweep's runs): the
per-run table, the rankings and the figures. Named so it never shadows the ``wandb`` package."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from actbench.report.analysis import STATUS_ORDER, Unit
from actbench.report.tables import RANKING_COLUMNS, SUMMARY_COLUMNS, ranking_rows

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _env(**values: str) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def log_to_wandb(
    sweep: str,
    sweep_dir: Path,
    rows: list[dict[str, Any]],
    units: list[Unit],
    images: Sequence[Path],
    project: str = "actbench",
) -> Path | None:
    """Log the report to one W&B run (job_type "report", group = sweep); only warns on failure.

    Returns the W&B run folder, or None when W&B is disabled or failed."""
    logger = None
    try:
        import wandb

        from actbench import tracking

        ids = ",".join(sorted(str(r["run_id"]) for r in rows))
        # One report run per set of records: rerunning the report resumes the same W&B run.
        run_id = f"report-{sweep}-{hashlib.sha1(ids.encode()).hexdigest()[:8]}"
        # start_wandb has no job_type argument; wandb reads it from the environment.
        with _env(WANDB_JOB_TYPE="report"):
            logger = tracking.start_wandb(
                sweep_dir,
                run_id,
                name=f"{sweep}-report",
                group=sweep,
                config={"sweep": sweep, "sweep_dir": str(sweep_dir), "runs": len(rows)},
                project=project,
                tags=["report"],
            )
        if logger is None:
            return None
        run = logger.experiment
        columns = list(SUMMARY_COLUMNS)
        payload: dict[str, Any] = {
            "report/runs": wandb.Table(
                # summary.csv spells a missing value ""; W&B columns need one type: None
                columns=columns,
                data=[[None if r[c] == "" else r[c] for c in columns] for r in rows],
            )
        }
        payload["report/ranking"] = wandb.Table(
            columns=list(RANKING_COLUMNS),
            data=[
                [None if row[c] == "" else row[c] for c in RANKING_COLUMNS]
                for row in ranking_rows(units, sweep)
            ],
        )
        for image in images:
            payload[f"figures/{image.stem}"] = wandb.Image(str(image))
        run.log(payload)
        counts = Counter(r["status"] for r in rows)
        run_dir = Path(run.dir).parent
        tracking.finish_wandb(
            logger, 0, {f"runs/{status}": counts.get(status, 0) for status in STATUS_ORDER}
        )
        return run_dir
    except Exception as err:
        log.warning("W&B logging of the report failed (%s); the report files are written", err)
        with contextlib.suppress(Exception):
            tracking.finish_wandb(logger, 1, {})
        return None

"""Members' resumable states, saved atomically across the pack.

Each member's state (weights, optimizer and schedule, random stream, step, epochs, the
``metrics.csv`` row count, latest metrics, diagnostics) lives in its own run folder, so a member
can resume in any pack. A pack saves in two phases: every member's state is written under a
pending name first (each write atomic), then each is renamed onto the committed name. A kill
during the first phase leaves the committed states as they were (the pending ones are dropped
on the next start); a kill during the second leaves some members committed, the others pending
at the same step, which the next start completes. Either way every member of the pack resumes
from one and the same step.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from actbench import records
from actbench.packing.member import Member


def member_state(m: Member, epochs_done: int) -> dict[str, Any]:
    """Everything that decides a member's next steps and the record it ends with."""
    from pytorch_lightning.loggers import CSVLogger

    rows = None
    for logger in m.loggers:
        if isinstance(logger, CSVLogger):
            logger.save()  # flush, so the row count matches what the weights have seen
            rows = records.metrics_row_count(Path(logger.log_dir) / records.METRICS)
    return {
        "run_id": m.run.run_id,
        "classifier": m.classifier.state_dict(),
        "optimizer": m.optimizer.state_dict() if m.optimizer is not None else None,
        "scheduler": m.scheduler.state_dict() if m.scheduler is not None else None,
        "global_step": m.step,
        "epochs": epochs_done,
        "rng": dict(m.rng),
        "metrics_rows": rows,
        "metrics": dict(m.metrics),
        "callbacks": [c.state_dict() for c in m.callbacks],
        "diverged_at": m.diverged_at,
    }


def save(members: list[Member], epochs_done: int, pack_id: str) -> None:
    """Write every member's state, atomically across the pack (see the module docstring)."""
    folders = [str(m.run.run_dir) for m in members]
    step = max((m.step for m in members), default=0)
    for m in members:
        state = member_state(m, epochs_done)
        state["pack"] = {"id": pack_id, "folders": folders, "step": step, "epochs": epochs_done}
        with records.atomic_path(m.run.run_dir / records.PACK_STATE_PENDING) as tmp:
            torch.save(state, tmp)
    for m in members:
        records.promote(
            m.run.run_dir / records.PACK_STATE_PENDING, m.run.run_dir / records.PACK_STATE
        )


def _pack_of(path: Path) -> dict[str, Any] | None:
    try:
        return torch.load(path, map_location="cpu", weights_only=False).get("pack")
    except (OSError, EOFError, RuntimeError, AttributeError):
        return None


def settle(run_dir: Path) -> None:
    """Finish or drop a save that a kill interrupted, for the pack ``run_dir`` trained in.

    A pending state is committed when every member of its pack holds that save (pending, or
    already committed at its step); otherwise the save never completed and is removed.
    """
    pending = run_dir / records.PACK_STATE_PENDING
    if not pending.exists():
        return
    pack = _pack_of(pending)
    if pack is None:
        pending.unlink(missing_ok=True)
        return
    complete = True
    for folder in map(Path, pack["folders"]):
        other = folder / records.PACK_STATE_PENDING
        committed = folder / records.PACK_STATE
        if other.exists() and (_pack_of(other) or {}).get("id") == pack["id"]:
            continue
        done = _pack_of(committed) if committed.exists() else None
        if done and done.get("id") == pack["id"] and done.get("step") == pack["step"]:
            continue
        complete = False
        break
    if complete:
        records.promote(pending, run_dir / records.PACK_STATE)
    else:
        pending.unlink(missing_ok=True)


def load(run_dir: Path, run_id: str) -> dict[str, Any] | None:
    """The member's committed state, if it is this configuration's (else None)."""
    path = run_dir / records.PACK_STATE
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    return state if state.get("run_id") == run_id else None


def restore(m: Member, state: dict[str, Any]) -> None:
    """Put a member back where its state was saved."""
    m.restored = state  # weights and optimizer are loaded once the Trainer has set the
    # module up (PackedClassifier.load_restored): in its precision, on its device
    m.step = int(state["global_step"])
    m.epoch_offset = int(state["epochs"])
    m.rng = dict(state["rng"])
    m.metrics = dict(state["metrics"])
    m.restored_metrics = dict(state["metrics"])
    m.diverged_at = state.get("diverged_at")
    m.run.resumed_from = {"global_step": m.step, "metrics_rows": state.get("metrics_rows")}


class Saver:
    """At pack epoch ends, at most once per ``min_interval_s`` of training, and at the end."""

    def __init__(self, members: list[Member], pack_id: str, min_interval_s: float) -> None:
        self.members, self.pack_id, self.min_interval_s = members, pack_id, min_interval_s
        self.last = time.monotonic()

    def __call__(self, module: Any) -> None:
        trainer = module.trainer
        ends = not module.still_training() or trainer.global_step >= trainer.max_steps
        if not ends and time.monotonic() - self.last < self.min_interval_s:
            return
        m0 = self.members[0]
        save(self.members, m0.epoch_offset + trainer.current_epoch + 1, self.pack_id)
        self.last = time.monotonic()

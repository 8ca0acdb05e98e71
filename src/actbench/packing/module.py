"""The pack's LightningModule: every member steps once per training step, on its own batch.

Each member keeps its own parameters and its own ``torch.optim`` optimizer (built by the
member's :class:`~actbench.module.Classifier`, as its unpacked run builds it), so learning
rate, betas, weight decay and the schedule are exactly what that optimizer would do for the
member alone. One backward pass of the summed member losses gives each member the gradient of
its own loss (the members share no parameter), so a member that diverges changes no other
member's numbers; it is recorded ``diverged`` at its step and stops. Members' forwards draw
dropout and stochastic gates from their own random streams.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from actbench.divergence import Diverged
from actbench.module import MAX_PENDING_ACC, LeanModule, classification_loss
from actbench.packing.member import Member


class Ticks:
    """The pack's training "loader": one tick per batch of an epoch; each member draws its
    own batch from its own loader on every tick."""

    def __init__(self, batches: int) -> None:
        self.batches = batches

    def __len__(self) -> int:
        return self.batches

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.batches))


def count_pack_step(trainer: pl.Trainer) -> None:
    """One pack step is one step of the Trainer (its ``global_step``, ``max_steps``, epoch and
    validation cadence), as one step is for an unpacked run. Under manual optimization Lightning
    counts the steps of its own optimizer wrappers; the members' optimizers step directly
    (each exactly as torch.optim would alone), so the pack counts its step itself."""
    progress = trainer.fit_loop.epoch_loop.manual_optimization.optim_step_progress
    progress.increment_ready()
    progress.increment_completed()


class PackedClassifier(LeanModule):
    """Trains the pack's members side by side (manual optimization: one optimizer each)."""

    def __init__(self, members: list[Member], gradient_clip_val: float | None = None) -> None:
        super().__init__()
        self.automatic_optimization = False
        self.members = members  # a plain list: the modules are registered below, once
        self.classifiers = nn.ModuleList(m.classifier for m in members)
        self.gradient_clip_val = gradient_clip_val
        self.on_epoch_end_saved: Any = None  # set by the runner: saves members' states
        # Wall clock after each pack step and how many members stepped in it: the record's
        # time per member-step (validation included, as for an unpacked run's steps).
        self.step_clock: list[tuple[float, int]] = []

    # -- loaders -------------------------------------------------------------------------------

    def train_dataloader(self) -> Ticks:
        return Ticks(len(self.members[0].datamodule.train_dataloader()))

    def val_dataloader(self) -> Any:
        return self.members[0].datamodule.val_dataloader()

    def test_dataloader(self) -> Any:
        return self.members[0].datamodule.test_dataloader()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        for m in self.members:
            out = m.classifier.configure_optimizers()
            m.optimizer = out["optimizer"] if isinstance(out, dict) else out
            m.scheduler = out["lr_scheduler"]["scheduler"] if isinstance(out, dict) else None
            if m.restored is not None:
                m.optimizer.load_state_dict(m.restored["optimizer"])
                if m.scheduler is not None:
                    m.scheduler.load_state_dict(m.restored["scheduler"])
        return [m.optimizer for m in self.members]

    # -- training ------------------------------------------------------------------------------

    def still_training(self) -> list[Member]:
        """The members still training: neither diverged nor at their last step."""
        return [m for m in self.members if m.diverged_at is None and m.step < m.max_steps]

    def load_restored(self) -> None:
        """Resumed members' weights and metric states, into the module as the Trainer set it
        up (after its precision conversion, so a float64 run resumes in float64)."""
        for m in self.members:
            if m.restored is not None and not m.weights_loaded:
                m.classifier.load_state_dict(m.restored["classifier"])
                m.weights_loaded = True

    def on_fit_start(self) -> None:
        self.load_restored()

    def on_test_start(self) -> None:
        self.load_restored()

    def on_train_start(self) -> None:
        for m in self.members:
            m.hook("on_train_start")

    def on_train_epoch_start(self) -> None:
        for m in self.still_training():
            m.batches = iter(m.datamodule.train_dataloader())
            m.hook("on_train_epoch_start")

    def training_step(self, tick: int, batch_idx: int) -> None:
        live = self.still_training()
        if not live:
            return
        losses = []
        for m in live:
            x, y = next(m.batches)
            x = self.trainer.precision_plugin.convert_input(x)
            with m.own_rng():
                logits = m.classifier._step_model[0](x)
            loss = classification_loss(m.classifier.loss_kind, logits, y)
            self._count_train(m, logits, y, loss)
            losses.append(loss)
            m.optimizer.zero_grad()
        # The members share no parameter: each gets the gradient of its own loss.
        self.manual_backward(torch.stack(losses).sum())
        for m, loss in zip(live, losses, strict=True):
            m.hook("on_before_optimizer_step", m.optimizer)
            if self.gradient_clip_val is not None:
                nn.utils.clip_grad_norm_(m.classifier.parameters(), self.gradient_clip_val)
            m.optimizer.step()
            if m.scheduler is not None:
                m.scheduler.step()
            m.step += 1
            try:
                m.hook("on_train_batch_end", loss, tick, batch_idx)
            except Diverged as err:
                self._diverged(m, err.step)
        count_pack_step(self.trainer)
        self.step_clock.append((time.perf_counter(), len(live)))

    def member_step_ms(self) -> float | None:
        """Milliseconds per member-step over the fit, the first tenth left out (warm-up)."""
        clock = self.step_clock[len(self.step_clock) // 10 :]
        if len(clock) < 2:
            return None
        member_steps = sum(k for _, k in clock[1:])
        return round(1000 * (clock[-1][0] - clock[0][0]) / max(member_steps, 1), 4)

    def _count_train(self, m: Member, logits: torch.Tensor, y: torch.Tensor, loss) -> None:
        """train/loss and train/acc on the member's logging cadence (as Classifier does)."""
        clf = m.classifier
        clf._pending_acc.append((logits.detach().argmax(-1), y))
        step = m.step + 1
        if step % clf.log_every_n_steps == 0 or step == m.max_steps:
            clf._count_pending_acc()
            values = {"train/loss": loss.detach(), "train/acc": clf.train_acc.compute()}
            if step % clf.log_every_n_steps == 0:
                m.log(values, m.step)
            else:  # the last step off the cadence: Lightning keeps it for the record only
                m.metrics.update({k: float(v) for k, v in values.items()})
            clf.train_acc.reset()
        elif len(clf._pending_acc) >= MAX_PENDING_ACC:
            clf._count_pending_acc()

    def _diverged(self, m: Member, step: int) -> None:
        m.diverged_at = step
        m.run.summary.update(status="diverged", diverged_at_step=step, metrics=dict(m.metrics))

    def _hook_alive(self, name: str) -> None:
        """A hook on every member that has not diverged; a divergence it finds is recorded."""
        for m in self.evaluated():
            try:
                m.hook(name)
            except Diverged as err:
                self._diverged(m, err.step)

    def on_train_epoch_end(self) -> None:
        self._hook_alive("on_train_epoch_end")  # the divergence check before the save
        if self.on_epoch_end_saved is not None:
            self.on_epoch_end_saved(self)

    def on_train_end(self) -> None:
        self._hook_alive("on_train_end")

    # -- evaluation ----------------------------------------------------------------------------

    def evaluated(self) -> list[Member]:
        return [m for m in self.members if m.diverged_at is None]

    @staticmethod
    def _evaluate(m: Member, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        """One evaluation batch into the member's ``split`` metrics; its logits."""
        x, y = batch
        clf = m.classifier
        logits = clf._step_model[0](x)
        getattr(clf, f"{split}_acc").update(logits, y)
        loss = classification_loss(clf.loss_kind, logits, y)
        getattr(clf, f"{split}_loss").update(loss, weight=len(y))
        return logits

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        for m in self.evaluated():
            self._evaluate(m, batch, "val")

    def on_validation_epoch_end(self) -> None:
        for m in self.evaluated():
            clf = m.classifier
            acc = clf.val_acc.compute()
            clf.val_acc_best.update(acc)
            values = {"val/loss": clf.val_loss.compute(), "val/acc": acc}
            values["val/acc_best"] = clf.val_acc_best.compute()
            clf.val_acc.reset()
            clf.val_loss.reset()
            m.log(values, max(m.step - 1, 0))

    def on_test_epoch_start(self) -> None:
        for m in self.evaluated():
            m.test_correct = []

    def test_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        for m in self.evaluated():
            logits = self._evaluate(m, batch, "test")
            m.test_correct.append((logits.argmax(-1) == batch[1]).detach())

    def on_test_epoch_end(self) -> None:
        from actbench import records

        loader = self.trainer.test_dataloaders
        order = loader.indices(0).numpy()
        for m in self.evaluated():
            clf = m.classifier
            m.log(
                {"test/loss": clf.test_loss.compute(), "test/acc": clf.test_acc.compute()}, m.step
            )
            clf.test_acc.reset()
            clf.test_loss.reset()
            local = torch.cat(m.test_correct).cpu().numpy()
            full = local.copy()
            full[order] = local
            records.write_test_correct(m.run.run_dir, full)

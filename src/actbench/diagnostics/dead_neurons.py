"""Dead, dormant and frozen units: three views of "this unit stopped contributing"."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from actbench.diagnostics.base import MeasuringDiagnostic, activation_layers, probe_data, probing


def unit_view(t: torch.Tensor) -> torch.Tensor:
    """(examples, units): an MLP feature, or a ViT channel taken over batch × tokens."""
    return t.reshape(-1, t.shape[-1])


def layer_stats(
    act: torch.nn.Module,
    z: torch.Tensor,
    h: torch.Tensor,
    dormant_taus: tuple[float, ...],
    frozen_tau: float,
) -> dict[str, float]:
    """Per-layer unit statistics from pre-activations ``z`` and outputs ``h`` (both 2-D)."""
    out = {"hard": (h == 0).all(0).float().mean().item()}
    # ReDo: score_i = mean|h_i| divided by the layer's mean score (not the sum).
    score = h.abs().mean(0)
    score = score / (score.mean() + 1e-9)
    for tau in dormant_taus:
        out[f"dormant_{tau:g}"] = (score <= tau).float().mean().item()
    # Frozen: the gradient signal f'(z) a unit passes back, relative to its layer. Smooth
    # activations never output exactly zero, but their slope can still vanish.
    with torch.enable_grad():
        zg = z.detach().requires_grad_(True)
        (slope,) = torch.autograd.grad(act(zg).sum(), zg)
    g = slope.abs().mean(0)
    g = g / (g.mean() + 1e-9)
    out["frozen"] = (g <= frozen_tau).float().mean().item()
    out["neg_share"] = (z < 0).float().mean().item()
    out["pre_mean"] = z.mean().item()
    out["pre_std"] = z.std().item()
    out["units"] = float(z.shape[1])
    return out


class DeadNeuronMonitor(MeasuringDiagnostic):
    """``dead/hard``, ``dead/dormant_τ``, ``dead/frozen`` and pre-activation statistics.

    Probe: the first ``probe_size`` validation examples. Totals are shares of all hidden units.
    ``every_n_steps`` replaces the log-spaced cadence with a fixed one (0, k, 2k, ..., end), for
    following a dead fraction over the whole run (its peak, and whether it comes back down).
    """

    def __init__(
        self,
        points: int = 12,
        probe_size: int = 1024,
        dormant_taus: tuple[float, ...] = (0.1, 0.025),
        frozen_tau: float = 0.1,
        wandb_all_layers: bool = False,
        every_n_steps: int | None = None,
    ) -> None:
        super().__init__(points, wandb_all_layers, every_n_steps)
        self.probe_size = probe_size
        self.dormant_taus = tuple(float(t) for t in dormant_taus)
        self.frozen_tau = frozen_tau
        self.probe: tuple[torch.Tensor, torch.Tensor] | None = None

    def prepare(self, trainer: pl.Trainer) -> None:
        self.probe = probe_data(trainer, "val", self.probe_size)

    def measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, float]:
        self._measured.add(trainer.global_step)
        with self.timed():
            totals, per_layer = self.compute(pl_module, self.probe[0])
            self.publish(trainer, totals, per_layer)
        return totals

    def compute(
        self, module: torch.nn.Module, x: torch.Tensor
    ) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
        """Totals and per-layer values on inputs ``x`` (eval mode, RNG isolated)."""
        layers = activation_layers(module)
        captured: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        hooks = [
            mod.register_forward_hook(
                lambda m, inp, out, name=name: captured.__setitem__(name, (inp[0], out))
            )
            for name, mod in layers.items()
        ]
        try:
            with probing(module), torch.no_grad():
                module(x)
                stats = {
                    name: layer_stats(
                        layers[name],
                        unit_view(z),
                        unit_view(h),
                        self.dormant_taus,
                        self.frozen_tau,
                    )
                    for name, (z, h) in captured.items()
                }
        finally:
            for hook in hooks:
                hook.remove()
        keys = ["hard", *(f"dormant_{t:g}" for t in self.dormant_taus), "frozen"]
        units = sum(s["units"] for s in stats.values())
        totals = {f"dead/{k}": sum(s[k] * s["units"] for s in stats.values()) / units for k in keys}
        for k in ("neg_share", "pre_mean", "pre_std"):
            totals[f"act/{k}"] = sum(s[k] for s in stats.values()) / len(stats)
        per_layer = {f"dead/{k}": {n: s[k] for n, s in stats.items()} for k in keys}
        for k in ("neg_share", "pre_mean", "pre_std"):
            per_layer[f"act/{k}"] = {n: s[k] for n, s in stats.items()}
        return totals, per_layer

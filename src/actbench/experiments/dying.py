"""Dying units against the learning rate: from which learning rate on do units of each
activation stop passing gradient in a deep narrow MLP, and do they come back? A question with
a rule fixed in advance, not a published claim."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

from actbench.experiments.base import (
    Experiment,
    Outcome,
    group_by,
    lr_text,
    median,
    pct,
    percentage_points,
    pyplot,
    save_figure,
    table,
)
from actbench.records import RunRecord


class Dying(Experiment):
    name = "dying"
    title = "At which learning rates do units die, and do they come back?"
    source = (
        "A question rather than a published claim. Background: L. Lu, Y. Shin, Y. Su and "
        "G. E. Karniadakis, *Dying ReLU and Initialization: Theory and Numerical Examples*, "
        "arXiv:1903.06733 (2019) (deep narrow ReLU nets can be born dead); the dormant-unit "
        "score of G. Sokar et al., *The Dormant Neuron Phenomenon in Deep Reinforcement "
        "Learning*, ICML 2023 (ReDo)."
    )
    claim = (
        "No claim is tested. The question: in a deep narrow MLP trained with Adam, from which "
        "learning rate on do units of each activation stop passing gradient, and do they "
        "recover before the end of training? Folklore says ReLU units die at large learning "
        "rates and smooth activations (ELU, GELU, SiLU) and leaky ReLU do not."
    )
    protocol = "\n".join(
        [
            "- MLP with 10 hidden layers × 32 units, no normalisation, the variance-preserving "
            "init of each activation (`model.init=activation`), on MNIST-1D.",
            "- Activations `relu`, `leaky_relu` (slope 0.01), `elu`, `gelu`, `silu`; Adam, batch "
            "128, 1500 steps (about 52 epochs); learning rate on a log grid 1e-4 … 1e-1 (7 "
            "values); 5 seeds each (175 runs).",
            "- Every 50 steps, on the 400 validation inputs in eval mode "
            "(`actbench.diagnostics.DeadNeuronMonitor`): `dead/hard` (output exactly 0 on every "
            "input), `dead/dormant_0.025` (ReDo score ≤ 0.025: mean |h| below 2.5 % of its "
            "layer's mean), `dead/frozen` (mean |f′(z)| ≤ 0.1 of its layer's mean: the unit "
            "passes back almost no gradient; defined for smooth activations too). Each is a share "
            "of all 320 hidden units.",
            "- Preset `conf/experiment/dying.yaml`, grid `sweeps/exp_dying.yaml`.",
        ]
    )
    differences = "\n".join(
        [
            "- Not a reproduction: Lu et al. study dying at initialisation as depth grows; this "
            "experiment varies the learning rate at fixed depth and follows the units during "
            "training. It is an actbench question, answered with a rule fixed in advance.",
        ]
    )
    small: ClassVar[dict[str, Any]] = {
        "data": "digits",
        "data.num_samples": None,  # the preset's MNIST-1D size does not apply to digits
        "activation": ["relu", "gelu"],
        "optimizer.lr": [0.001, 0.1],
        "seed": [0],
        "trainer.max_steps": 40,
        "callbacks.dead_neurons.every_n_steps": 10,
    }
    invariants: ClassVar[dict[str, Any]] = {
        "model.name": "mlp",
        "model.depth": 10,
        "model.width": 32,
        "model.init": "activation",
        "model.norm": "none",
        "model.dropout": 0.0,
        "optimizer.name": "adam",
        "optimizer.schedule": "none",
        "data.batch_size": 128,
        "loss": "ce",
    }
    full_invariants: ClassVar[dict[str, Any]] = {"data.name": "mnist1d", "trainer.max_steps": 1500}
    csv_keys = ("dead/hard", "dead/dormant_0.025", "dead/dormant_0.1", "dead/frozen")

    ORDER = ("relu", "leaky_relu", "elu", "gelu", "silu")
    # The rule, fixed before any run.
    MEASURES = ("dead/frozen", "dead/hard", "dead/dormant_0.025")
    LOST = 0.10  # a (activation, lr) loses units when the median peak share is at least this
    RECOVERED = 0.5  # ...and recovers when the median final share is at most this x the peak
    MAJORITY_DIVERGED = 0.5  # a cell with more than half its seeds diverged is "diverged"

    def rule(self) -> str:
        return "\n".join(
            [
                "Written in `src/actbench/experiments/dying.py` (`Dying`) before any run. For each "
                "measure (`dead/frozen` is the primary one: it asks whether a unit still passes "
                "gradient, for every activation) and each run:",
                "",
                "- *init* = the share at step 0 (born dead); *peak* = the largest share over the "
                "measurements after step 0; *final* = the share at the last step. *rise* = peak − "
                "init and *left* = final − init: what training added to the units dead at birth.",
                f"- A cell (activation, learning rate) **loses units** when the median over seeds "
                f"of the rise is ≥ {self.LOST * 100:.0f} percentage points of all hidden units; it "
                f"**recovers** when, in addition, the median left is ≤ {self.RECOVERED:g} × the "
                "median rise.",
                "- An activation's **onset** is the smallest learning rate of the grid at which "
                "its cell loses units.",
                f"- A cell where more than {self.MAJORITY_DIVERGED:.0%} of seeds diverged "
                "(non-finite loss) is reported as diverged; medians use completed runs only.",
            ]
        )

    @staticmethod
    def _peak_final(run: RunRecord, key: str) -> tuple[float | None, float | None, float | None]:
        points = run.curve(key)
        if not points:
            return None, None, None
        init = points[0][1] if points[0][0] == 0 else None
        later = [v for s, v in points if s > 0]
        return init, (max(later) if later else None), points[-1][1]

    def cell_stats(self, group: list[RunRecord]) -> dict[str, Any]:
        done = [r for r in group if r.ok]
        stats: dict[str, Any] = {
            "n": len(group),
            "completed": len(done),
            "diverged": sum(r.status == "diverged" for r in group),
            "test_acc": median(r.metric("test/acc") for r in done),
        }
        for key in self.MEASURES:
            triples = [t for t in (self._peak_final(r, key) for r in done) if None not in t]
            # Rises over the run's own start: units born dead are not lost to the learning rate.
            rise = median(peak - init for init, peak, _ in triples)
            left = median(final - init for init, _, final in triples)
            lost = rise is not None and rise >= self.LOST
            recovered = lost and left is not None and left <= self.RECOVERED * rise
            stats[key] = {
                "init": median(t[0] for t in triples),
                "peak": median(t[1] for t in triples),
                "final": median(t[2] for t in triples),
                "rise": rise,
                "left": left,
                "lost": lost,
                "recovered": recovered,
            }
        stats["is_diverged"] = stats["diverged"] > self.MAJORITY_DIVERGED * len(group)
        return stats

    def table_of_cells(self, runs: list[RunRecord]) -> dict[tuple[str, float], dict[str, Any]]:
        return {
            k: self.cell_stats(g)
            for k, g in sorted(group_by(runs, "activation.name", "optimizer.lr").items())
        }

    def analyse(self, runs: list[RunRecord], scale: str) -> Outcome:
        cells = self.table_of_cells(runs)
        order = [a for a in self.ORDER if any(k[0] == a for k in cells)]

        def state(s: dict[str, Any]) -> str:
            if not s["lost"]:
                return "kept"
            return "lost, recovered" if s["recovered"] else "**lost**"

        rows = []
        for act in order:
            for lr in sorted(lr for a, lr in cells if a == act):
                s = cells[(act, lr)]
                f, h, d = (s[m] for m in self.MEASURES)
                status = "diverged" if s["is_diverged"] else state(f)
                rows.append(
                    [
                        f"`{act}`",
                        lr_text(lr),
                        pct(f["init"]),
                        pct(f["peak"]),
                        pct(f["final"]),
                        f"{percentage_points(f['rise'])} / {percentage_points(f['left'])}",
                        status,
                        f"{pct(h['peak'])} / {pct(h['final'])}",
                        f"{pct(d['peak'])} / {pct(d['final'])}",
                        pct(s["test_acc"]),
                        f"{s['completed']}/{s['n']}"
                        + (f" ({s['diverged']} div.)" if s["diverged"] else ""),
                    ]
                )
        main = table(
            [
                "activation",
                "lr",
                "frozen at init",
                "frozen peak",
                "frozen final",
                "frozen rise / left",
                "frozen: rule",
                "hard peak / final",
                "dormant 0.025 peak / final",
                "median test acc",
                "runs completed",
            ],
            rows,
        )
        result = "\n\n".join(
            [
                f"![Dead-unit shares and test accuracy against the learning rate]({self.name}.png)",
                "Medians over seeds. Solid: peak share during training; dashed: share at the end.",
                "### Every cell",
                main,
            ]
        )
        return Outcome(self._answers(cells, order), result)

    def _answers(self, cells: dict[tuple[str, float], dict[str, Any]], order: list[str]) -> str:
        lines = []
        for act in order:
            lrs = sorted(lr for a, lr in cells if a == act)
            parts = []
            for key in self.MEASURES:
                lost = [
                    lr
                    for lr in lrs
                    if cells[(act, lr)][key]["lost"] and not cells[(act, lr)]["is_diverged"]
                ]
                if not lost:
                    parts.append(f"`{key}`: no learning rate of the grid loses units")
                    continue
                kept_after = [lr for lr in lost if not cells[(act, lr)][key]["recovered"]]
                recovered = [lr for lr in lost if cells[(act, lr)][key]["recovered"]]
                text = f"`{key}`: onset at lr {lr_text(lost[0])}"
                if recovered:
                    text += f"; recovers at {', '.join(lr_text(x) for x in recovered)}"
                if kept_after:
                    text += f"; stays lost at {', '.join(lr_text(x) for x in kept_after)}"
                parts.append(text)
            diverged = [lr for lr in lrs if cells[(act, lr)]["is_diverged"]]
            if diverged:
                parts.append(f"diverged at {', '.join(lr_text(x) for x in diverged)}")
            lines.append(f"- `{act}`: " + "; ".join(parts) + ".")
        head = (
            "**Answer** (a question, so no holds / fails): by the rule above, per activation, "
            "the smallest learning rate at which each measure loses units and whether the units "
            "come back by the end of training."
        )
        return head + "\n\n" + "\n".join(lines)

    def figure(self, runs: list[RunRecord], path: Path) -> None:
        plt = pyplot()
        cells = self.table_of_cells(runs)
        order = [a for a in self.ORDER if any(k[0] == a for k in cells)]
        colors = {"relu": "C0", "leaky_relu": "C9", "elu": "C2", "gelu": "C3", "silu": "C4"}
        fig, axes = plt.subplots(1, 4, figsize=(17, 3.8))
        panels = [*self.MEASURES, "test/acc"]
        for ax, key in zip(axes, panels, strict=True):
            for act in order:
                lrs = sorted(lr for a, lr in cells if a == act)
                if key == "test/acc":
                    ys = [cells[(act, lr)]["test_acc"] for lr in lrs]
                    ax.plot(
                        lrs,
                        [math.nan if y is None else y for y in ys],
                        "o-",
                        color=colors[act],
                        label=act,
                    )
                    continue
                for part, style in (("peak", "o-"), ("final", "x--")):
                    ys = [cells[(act, lr)][key][part] for lr in lrs]
                    ax.plot(
                        lrs,
                        [math.nan if y is None else y for y in ys],
                        style,
                        color=colors[act],
                        label=act if part == "peak" else None,
                    )
            ax.set_xscale("log")
            ax.set_xlabel("learning rate (Adam)")
            ax.set_title(key)
            if key != "test/acc":
                ax.set_ylabel("share of hidden units")
        axes[-1].set_ylabel("test accuracy")
        axes[-1].legend(fontsize=8)
        fig.tight_layout()
        save_figure(fig, path)

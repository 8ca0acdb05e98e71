"""Cohen et al.'s edge of stability: under full-batch gradient descent with step size η, does
the sharpness rise to 2/η and hover there? Each run is classified by the shape of its
λ_max·η/2 curve."""

from __future__ import annotations

import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any, ClassVar

from actbench.experiments.base import Experiment, Outcome, fmt, pyplot, save_figure, table
from actbench.records import RunRecord


class EdgeOfStability(Experiment):
    name = "edge_of_stability"
    title = "Sharpness rises to 2/η and hovers there (Cohen et al. 2021)"
    source = (
        "J. M. Cohen, S. Kaur, Y. Li, J. Z. Kolter and A. Talwalkar, *Gradient Descent on Neural "
        "Networks Typically Occurs at the Edge of Stability*, ICLR 2021; code: "
        "locuslab/edge-of-stability."
    )
    claim = (
        "Under full-batch gradient descent with step size η, the sharpness (largest eigenvalue "
        "of the training-loss Hessian) rises during training (progressive sharpening) until it "
        "reaches 2/η, and then hovers just above 2/η instead of rising further, while the loss "
        "keeps decreasing non-monotonically."
    )
    protocol = "\n".join(
        [
            "- MLP with 2 hidden layers × 200 units, Xavier-normal init, zero biases; activations "
            "`relu`, `elu`, `softplus`, `gelu`, `tanh`.",
            "- Full-batch gradient descent (`optimizer=sgd`, momentum 0, `data.full_batch=true`) "
            "on a fixed subset: MNIST-1D generated with 3000 samples, whose training split holds "
            "2160 examples; 4000 steps; step size η ∈ {0.02, 0.04, 0.08, 0.16, 0.32}; seed 0 (25 "
            "runs).",
            "- Square loss ½·Σ over the 10 outputs of (f − onehot)², averaged over examples "
            "(`loss=mse`, the paper's convention; PyTorch's `MSELoss` is 2/C times it).",
            "- Sharpness every 50 steps: Lanczos (≤ 20 iterations, warm-started) on "
            "Hessian-vector products of the loss over the whole training split "
            "(`actbench.diagnostics.CurvatureMonitor` with `every_n_steps=50`); the ratio "
            "λ_max·η/2 is `curv/stability_ratio` (1 at the stability limit).",
            "- Preset `conf/experiment/edge_of_stability.yaml`, grid "
            "`sweeps/exp_edge_of_stability.yaml`.",
        ]
    )
    differences = "\n".join(
        [
            "- **Data: a 2160-example MNIST-1D subset instead of 5000 CIFAR-10 images**: a "
            "protocol transfer, not a reproduction.",
            "- Init: Xavier normal with zero biases (actbench has no PyTorch-default init, "
            "which the paper used); a fixed budget of 4000 steps instead of training to a loss "
            "threshold, so a small η may not reach 2/η within the budget.",
            "- The η grid is one doubling grid for every activation (the paper chose η per "
            "network); where 2/η is below an activation's sharpness at init, the run starts "
            "beyond the limit and does not test progressive sharpening.",
        ]
    )
    small: ClassVar[dict[str, Any]] = {
        "data.num_samples": 500,
        "activation": ["relu", "tanh"],
        "optimizer.lr": [0.04, 0.16],
        "trainer.max_steps": 60,
        "callbacks.curvature.every_n_steps": 10,
    }
    invariants: ClassVar[dict[str, Any]] = {
        "model.name": "mlp",
        "model.depth": 2,
        "model.width": 200,
        "model.init": "xavier",
        "model.norm": "none",
        "model.dropout": 0.0,
        "optimizer.name": "sgd",
        "optimizer.momentum": 0.0,
        "optimizer.weight_decay": 0.0,
        "optimizer.schedule": "none",
        "data.full_batch": True,
        "loss": "mse",
    }
    full_invariants: ClassVar[dict[str, Any]] = {
        "data.name": "mnist1d",
        "data.num_samples": 3000,
        "trainer.max_steps": 4000,
    }
    csv_keys = ("curv/top_eig", "curv/stability_ratio", "train_eval/loss", "train_eval/acc")

    # The rule, fixed before any run.
    REACH = 0.9  # 2/η is reached at the first measurement with λ_max ≥ 0.9·2/η
    TAIL = 0.25  # the plateau is judged on the last quarter of the steps...
    BAND = (0.9, 1.25)  # ...where the median of λ_max·η/2 must lie in this band
    MIN_POINTS = 3  # ...over at least this many measurements at or after the reaching step

    def rule(self) -> str:
        lo, hi = self.BAND
        return "\n".join(
            [
                "Written in `src/actbench/experiments/edge_of_stability.py` (`EdgeOfStability`) "
                "before any run. "
                "With r(t) = λ_max(t)·η/2 (1 at the stability limit 2/η), T the last step, for "
                "each run (activation, η):",
                "",
                f"- *reached* at t* = the first measured step with r ≥ {self.REACH:g} that "
                f"follows a measurement with r < {self.REACH:g}: a rise to the limit from below, "
                "whether sharpness starts below 2/η or first drops below it (a run that starts "
                "beyond the limit catapults: its sharpness falls, then may sharpen again).",
                f"- *tail* = the measurements at steps ≥ max(t*, {1 - self.TAIL:g}·T).",
                f"- **plateau**: reached, and the tail has ≥ {self.MIN_POINTS} measurements with "
                f"median r in [{lo:g}, {hi:g}]. **above**: median > {hi:g}. **fell back**: "
                f"median < {lo:g}. **reached late**: fewer than {self.MIN_POINTS} tail "
                f"measurements. **not reached**: no rise to r ≥ {self.REACH:g}. **never below "
                f"2/η**: r ≥ {self.REACH:g} at every measurement. **diverged**: non-finite loss.",
                "- A run *tests* the claim when it is a plateau (it *supports* the claim), above "
                "or fell back (it *contradicts* it); the other outcomes test nothing.",
                "- Per activation: **holds** when at least one run tests the claim and every "
                "testing run supports it; **fails** when a testing run contradicts it; "
                "**untested** otherwise. **The claim holds** overall when it holds for every "
                "activation; it **does not hold** when it fails for any; with none failing, some "
                "holding and some untested, it **holds where tested**.",
            ]
        )

    def classify(self, run: RunRecord) -> dict[str, Any]:
        lr = float(run.param("optimizer.lr"))
        ratio = run.curve("curv/stability_ratio")
        out: dict[str, Any] = {
            "lr": lr,
            "limit": 2.0 / lr,
            "r0": ratio[0][1] if ratio and ratio[0][0] == 0 else None,
            "reached": None,
            "tail_median": None,
            "tail_points": 0,
            "loss": run.metric("train_eval/loss"),
            "max_r": max((v for _, v in ratio), default=None),
        }
        if run.status == "diverged":
            out["outcome"] = "diverged"
            out["diverged_at"] = run.diverged_at_step
        elif not ratio:
            out["outcome"] = "no data"
        else:
            last = run.steps or int(ratio[-1][0])
            below = next((i for i, (_, v) in enumerate(ratio) if v < self.REACH), None)
            # A rise to the limit from below: from the start, or after a drop (a run that starts
            # beyond 2/η catapults: its sharpness falls, then it can sharpen again).
            reached = None
            if below is not None:
                reached = next((s for s, v in ratio[below:] if v >= self.REACH), None)
            out["reached"] = reached
            if below is None:
                out["outcome"] = "never below 2/η"
            elif reached is None:
                out["outcome"] = "not reached"
            else:
                start = max(reached, (1 - self.TAIL) * last)
                tail = [v for s, v in ratio if s >= start]
                out["tail_points"] = len(tail)
                if len(tail) < self.MIN_POINTS:
                    out["outcome"] = "reached late"
                else:
                    med = float(statistics.median(tail))
                    out["tail_median"] = med
                    lo, hi = self.BAND
                    out["outcome"] = (
                        "plateau" if lo <= med <= hi else ("above" if med > hi else "fell back")
                    )
        out["tests"] = out["outcome"] in ("plateau", "above", "fell back")
        out["supports"] = out["outcome"] == "plateau"  # before the note below is appended
        if out["r0"] is not None and out["r0"] >= self.REACH and out["tests"]:
            out["outcome"] += " (after a drop from beyond 2/η)"
        return out

    def verdicts(self, runs: list[RunRecord]) -> dict[str, str]:
        by_act: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for r in runs:
            by_act[r.param("activation.name")].append(self.classify(r))
        out = {}
        for act, items in sorted(by_act.items()):
            testing = [c for c in items if c["tests"]]
            if not all(c["supports"] for c in testing):
                out[act] = "fails"
            elif testing:
                out[act] = "holds"
            else:
                out[act] = "untested"
        return out

    ORDER = ("relu", "elu", "softplus", "gelu", "tanh")

    def _sorted(self, runs: list[RunRecord]) -> list[RunRecord]:
        def key(r: RunRecord) -> tuple[int, float]:
            act = r.param("activation.name")
            rank = self.ORDER.index(act) if act in self.ORDER else len(self.ORDER)
            return rank, float(r.param("optimizer.lr"))

        return sorted(runs, key=key)

    def analyse(self, runs: list[RunRecord], scale: str) -> Outcome:
        rows = []
        for r in self._sorted(runs):
            c = self.classify(r)
            outcome = c["outcome"]
            if outcome == "diverged" and c.get("diverged_at") is not None:
                outcome += f" (step {c['diverged_at']})"
            rows.append(
                [
                    f"`{r.param('activation.name')}`",
                    f"{c['lr']:g}",
                    f"{c['limit']:.3g}",
                    fmt(c["r0"], ".3f"),
                    "—" if c["reached"] is None else str(c["reached"]),
                    fmt(c["max_r"], ".3f"),
                    fmt(c["tail_median"], ".3f"),
                    outcome,
                    "yes" if c["tests"] else "no",
                    fmt(c["loss"], ".4f"),
                ]
            )
        main = table(
            [
                "activation",
                "η",
                "2/η",
                "r at step 0",
                "reached at step",
                "max r",
                "tail median r",
                "outcome",
                "tests the claim",
                "final train loss",
            ],
            rows,
        )
        result = "\n\n".join(
            [
                f"![Sharpness against 2/η during full-batch gradient descent]({self.name}.png)",
                "Top row: sharpness λ_max (solid) and 2/η (dashed, same colour) per step size; "
                "bottom row: the training loss. Log scales.",
                "### Every run",
                "r = λ_max·η/2; the tail is the last quarter of the steps from the reaching step "
                "on.",
                main,
            ]
        )
        verdicts = self.verdicts(runs)
        lines = [
            f"- `{a}`: **{v}**"
            for a, v in sorted(
                verdicts.items(),
                key=lambda kv: self.ORDER.index(kv[0]) if kv[0] in self.ORDER else 99,
            )
        ]
        values = set(verdicts.values())
        untested = [a for a, v in verdicts.items() if v == "untested"]
        if verdicts and values == {"holds"}:
            head = "**The claim holds** on this protocol transfer, for every activation."
        elif "fails" in values:
            failing = ", ".join(f"`{a}`" for a, v in verdicts.items() if v == "fails")
            head = f"**The claim does not hold** on this protocol transfer: it fails for {failing}."
        elif "holds" in values:
            head = (
                "**The claim holds where tested**: no run contradicts it; untested: "
                + ", ".join(f"`{a}`" for a in untested)
                + "."
            )
        else:
            head = "**No verdict**: no run tested the claim."
        return Outcome(head + "\n\n" + "\n".join(lines), result)

    def figure(self, runs: list[RunRecord], path: Path) -> None:
        plt = pyplot()
        acts = [a for a in self.ORDER if any(r.param("activation.name") == a for r in runs)]
        lrs = sorted({float(r.param("optimizer.lr")) for r in runs})
        colors = {lr: f"C{i}" for i, lr in enumerate(lrs)}
        fig, axes = plt.subplots(
            2, max(len(acts), 1), figsize=(3.6 * max(len(acts), 1), 6), squeeze=False
        )
        for col, act in enumerate(acts):
            top, bottom = axes[0][col], axes[1][col]
            for r in self._sorted([r for r in runs if r.param("activation.name") == act]):
                lr = float(r.param("optimizer.lr"))
                sharp = r.curve("curv/top_eig")
                if sharp:
                    top.plot(
                        [s for s, _ in sharp],
                        [v for _, v in sharp],
                        color=colors[lr],
                        lw=1,
                        label=f"η={lr:g}",
                    )
                top.axhline(2.0 / lr, color=colors[lr], ls="--", lw=0.8)
                loss = r.curve("train_eval/loss")
                if loss:
                    bottom.plot([s for s, _ in loss], [v for _, v in loss], color=colors[lr], lw=1)
            top.set_yscale("log")
            top.set_title(act)
            bottom.set_yscale("log")
            bottom.set_xlabel("step")
            if col == 0:
                top.set_ylabel("sharpness λ_max")
                bottom.set_ylabel("training loss")
                top.legend(fontsize=7)
        fig.tight_layout()
        save_figure(fig, path)

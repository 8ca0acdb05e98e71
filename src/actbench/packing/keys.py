"""Which runs may share a pack, and how a sweep's runs are formed into packs.

Torch-free, so the sweep launcher can form packs without importing torch or Lightning.
"""

from __future__ import annotations

import json
import math
from typing import Any

from omegaconf import DictConfig, OmegaConf

from actbench.config import ConfigError, digest, pack_limit, run_identity

# What may differ between the members of a pack: cheap per member, and nothing that changes
# the architecture, the data, the budget or the optimizer's kind. Everything else of the
# configuration (its identity) must be equal across a pack: see :func:`pack_key`.
MEMBER_KEYS = (
    "activation",
    "seed",
    "optimizer.lr",
    "optimizer.weight_decay",
    "optimizer.beta1",
    "optimizer.beta2",
    "optimizer.momentum",
)
# Keys outside the run identity that must still agree: one Trainer and one set of callbacks.
SHARED_PRESENTATION_KEYS = ("callbacks", "torch_threads", "trainer.accelerator", "logger.wandb")
# pack=auto: at most this many runs per pack, so the sweep's progress line (which counts
# finished runs) moves every few minutes, and at least one pack per launcher worker.
AUTO_PACK_MAX = 16


def shared_presentation(cfg: DictConfig | dict[str, Any]) -> dict[str, Any]:
    """The values of :data:`SHARED_PRESENTATION_KEYS` in ``cfg``."""
    # Unresolved: the checkpoint folder is each run's own (${run_dir}), the same text in all.
    container = cfg if isinstance(cfg, dict) else OmegaConf.to_container(cfg, resolve=False)
    values = {}
    for dotted in SHARED_PRESENTATION_KEYS:
        node: Any = container
        for part in dotted.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        values[dotted] = node
    return values


def pack_key(cfg: DictConfig | dict[str, Any]) -> str:
    """Equal for two configurations exactly when they can train in one pack."""
    shared = run_identity(cfg, drop=MEMBER_KEYS)
    shared.update({f"presentation:{k}": v for k, v in shared_presentation(cfg).items()})
    return digest(shared)


def form_packs(keys: list[str], setting: Any, workers: int = 1) -> list[list[int]]:
    """Indices of runs grouped into packs: runs with equal :func:`pack_key`, in their order,
    split into packs of at most the limit (``auto``: :data:`AUTO_PACK_MAX`, in a multiple of the
    workers' count where there are enough runs). With packing off every run is a pack of one."""
    limit = pack_limit(setting)
    if limit is None:
        return [[i] for i in range(len(keys))]
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    workers = max(workers, 1)
    packs: list[list[int]] = []
    for members in groups.values():
        count = math.ceil(len(members) / (limit or AUTO_PACK_MAX))
        if not limit:
            # auto: a whole number of packs per worker, or the last round leaves workers idle
            # (45 runs on 2 workers: 4 packs of 12 and 11, not 3 of 15, one worker doing two).
            count = min(len(members), math.ceil(count / workers) * workers)
        # Even sizes (17 runs at 16 -> 9 + 8, not 16 + 1): the packs finish together.
        packs += [members[j::count] for j in range(count)]
    return packs


def _key(override: str) -> str:
    return override.split("=", 1)[0]


def pack_job(jobs: list[list[str]]) -> list[str]:
    """The overrides of the one job that trains ``jobs`` as a pack: the first run's overrides
    (its folder holds the pack's Hydra log), and in ``pack_members`` (JSON) what each member
    overrides differently from it."""
    if len(jobs) == 1:
        return list(jobs[0])
    first = list(jobs[0])
    diffs = [[o for o in job if o not in first] for job in jobs]
    if any({_key(o) for o in job} != {_key(o) for o in first} for job in jobs):
        raise ConfigError("the runs of a pack must set the same keys (a grid's runs do)")
    encoded = json.dumps(diffs, separators=(",", ":"))
    if "'" in encoded:
        raise ConfigError(f"a pack's overrides cannot hold a single quote: {encoded[:120]}")
    return [*first, f"pack_members='{encoded}'"]


def member_jobs(job: list[str], pack_members: str) -> list[list[str]]:
    """Each member's overrides, from the pack job's and ``pack_members`` (see :func:`pack_job`)."""
    diffs = json.loads(pack_members)
    if not isinstance(diffs, list) or not all(isinstance(d, list) for d in diffs):
        raise ConfigError(f"pack_members={pack_members[:120]!r} is not a list of override lists")
    base = [o for o in job if _key(o) != "pack_members"]
    members = []
    for diff in diffs:
        changed = {_key(o): str(o) for o in diff}
        members.append([changed.pop(_key(o), o) for o in base] + list(changed.values()))
    return members

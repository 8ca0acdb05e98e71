"""Structured config schemas (Hydra ConfigStore) and their validation.

Every config group is typed by a dataclass here: OmegaConf rejects unknown keys and wrong types
while composing, and :func:`validate` checks ranges, choices and combinations afterwards. All
errors become :class:`ConfigError`, whose message is one line naming the key, the value and what
is allowed; :func:`one_line_error` turns Hydra's and OmegaConf's multi-line errors into the same.

Over 500 lines because every schema sits beside the check and the error text for its keys.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf

from actbench import activations


class ConfigError(ValueError):
    """Invalid configuration; the message is a single line."""


def choice(default: str, *options: str) -> Any:
    """A string field restricted to ``options`` (checked by :func:`validate`)."""
    return field(default=default, metadata={"choices": options})


def bounded(
    default: Any,
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
) -> Any:
    """A numeric field with inclusive (ge/le) or exclusive (gt/lt) bounds; ``None`` is allowed."""
    return field(default=default, metadata={"ge": ge, "gt": gt, "le": le, "lt": lt})


DATASETS = ("mnist1d", "digits", "mnist", "fashion_mnist", "cifar10")
# Input shape of each dataset as the datamodule delivers it: (L,) sequences or (C, H, W) images.
DATASET_SHAPES: dict[str, tuple[int, ...]] = {
    "mnist1d": (40,),
    "digits": (1, 8, 8),
    "mnist": (1, 28, 28),
    "fashion_mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
}
# Datasets with on-device augmentation (random crop, and flips where a mirror keeps the class).
AUGMENTABLE = ("mnist", "fashion_mnist", "cifar10")


@dataclass
class DataConfig:
    _target_: str = "actbench.data.DataModule"
    name: str = choice("mnist1d", *DATASETS)
    root: str = "data"  # cache folder for generated data and downloaded files
    batch_size: int = bounded(128, ge=1)
    full_batch: bool = False  # one batch = the whole training split (gradient-descent experiments)
    val_fraction: float = bounded(0.1, gt=0.0, lt=1.0)
    split_seed: int = 0  # fixed across runs so every seed and activation sees the same split
    num_samples: int | None = bounded(None, ge=100)  # mnist1d only: total generated samples
    eval_batch_size: int = bounded(1024, ge=1)
    download: bool = False  # torchvision datasets only: fetch missing files (never by default)
    augment: bool = False  # random crop (+ flip for cifar10, fashion_mnist) on training batches
    verify_checksums: bool = True  # cifar10: md5 of each file; false accepts files of your own


@dataclass
class ModelConfig:
    _target_: str = MISSING
    _partial_: bool = True  # input shape and activation are supplied from the data at build time
    name: str = MISSING


@dataclass
class MLPConfig(ModelConfig):
    _target_: str = "actbench.models.mlp.MLP"
    name: str = "mlp"
    depth: int = bounded(3, ge=1)  # hidden layers
    width: int = bounded(256, ge=1)
    norm: str = choice("none", "none", "batch", "layer")
    dropout: float = bounded(0.0, ge=0.0, lt=1.0)
    init: str = choice("activation", "activation", "kaiming", "xavier", "unit_norm")


@dataclass
class ViTConfig(ModelConfig):
    _target_: str = "actbench.models.vit.ViT"
    name: str = "vit"
    image_size: int | None = bounded(None, ge=1)  # None: the data's; else must match it
    channels: int | None = bounded(None, ge=1)  # None: the data's; else must match it
    patch_size: int = bounded(4, ge=1)  # p×p patches of images, length-p segments of sequences
    dim: int = bounded(64, ge=1)
    depth: int = bounded(4, ge=1)
    heads: int = bounded(4, ge=1)
    mlp_ratio: float = bounded(4.0, gt=0.0)
    dropout: float = bounded(0.1, ge=0.0, lt=1.0)  # attention weights, MLP hidden, residuals
    pool: str = choice("mean", "cls", "mean")


@dataclass
class ActivationConfig:
    _target_: str = "actbench.activations.build"
    _partial_: bool = True  # a factory: each layer gets its own module
    name: str = choice("gelu", *activations.names())
    negative_slope: float | None = None  # leaky_relu
    alpha: float | None = None  # elu
    beta: float | None = None  # swish, softplus
    learnable: bool | None = None  # swish
    sigma: float | None = None  # noisy_relu


@dataclass
class OptimizerConfig:
    name: str = choice("adam", "sgd", "adam", "adamw")
    lr: float = bounded(1e-3, gt=0.0)
    weight_decay: float = bounded(0.0, ge=0.0)
    momentum: float = bounded(0.0, ge=0.0, lt=1.0)  # sgd only; 0 = plain gradient descent
    beta1: float = bounded(0.9, ge=0.0, lt=1.0)  # adam/adamw
    beta2: float = bounded(0.999, ge=0.0, lt=1.0)  # adam/adamw
    schedule: str = choice("none", "none", "cosine")
    warmup_steps: int = bounded(0, ge=0)


@dataclass
class TrainerConfig:
    _target_: str = "pytorch_lightning.Trainer"
    accelerator: str = "auto"
    devices: Any = "auto"
    strategy: str = "auto"
    num_nodes: int = bounded(1, ge=1)
    precision: str = choice("32-true", "32-true", "64-true", "bf16-mixed", "16-mixed")
    max_steps: int = bounded(3000, ge=1)  # the step budget: equal across activations
    max_epochs: int = -1  # -1: the step budget alone decides
    check_val_every_n_epoch: int = bounded(1, ge=1)
    log_every_n_steps: int = bounded(50, ge=1)
    gradient_clip_val: float | None = bounded(None, gt=0.0)
    deterministic: bool = False
    enable_progress_bar: bool = True
    enable_model_summary: bool = False
    num_sanity_val_steps: int = 0
    benchmark: bool = False


@dataclass
class LoggerConfig:
    wandb: bool = True
    mode: str = choice("auto", "auto", "online", "offline", "disabled")
    project: str = "actbench"
    entity: str | None = None
    group: str | None = None  # default: the configuration minus the seed
    tags: list[str] = field(default_factory=list)
    init_timeout_s: float = bounded(20.0, gt=0.0)


@dataclass
class SweepInfo:
    """Where a run sits in a sweep; set by the sweeper, recorded, never part of the identity."""

    name: str | None = None  # the sweep file's stem
    stage: str | None = choice(None, "tune", "confirm")  # two-stage protocol; None: single stage


@dataclass
class Config:
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    activation: ActivationConfig = MISSING
    optimizer: OptimizerConfig = MISSING
    trainer: TrainerConfig = MISSING
    logger: LoggerConfig = MISSING
    callbacks: dict[str, Any] = field(default_factory=dict)  # name -> Lightning callback node
    seed: int = 0
    loss: str = choice("ce", "ce", "mse")
    torch_threads: int | None = bounded(None, ge=1)
    matmul_precision: str = choice("highest", "highest", "high", "medium")
    # torch.compile the model for the training and evaluation steps (opt-in: compiling takes
    # tens of seconds, and pays on GPUs and larger models); HVPs and probes stay uncompiled.
    compile: bool = False
    run_dir: str = "."  # set by Hydra to the job's output folder
    rerun: bool = False  # train again even if this run's record says completed
    sweep: SweepInfo = field(default_factory=SweepInfo)
    # Packed runs (actbench.packing): the sweeper trains runs that differ only in activation,
    # seed, learning rate, betas, weight decay or momentum side by side in one process and one
    # Trainer. off; auto (packs of up to 16, at least one per launcher worker); or a number
    # (at most that many runs per pack). A packed run keeps its run_id, folder and record.
    pack: str = "off"
    # Set by the sweeper on the one job that trains a pack: every member's overrides (JSON).
    pack_members: str | None = None


def register_configs() -> None:
    """Store the schemas; group options reference theirs through their defaults lists."""
    cs = ConfigStore.instance()
    cs.store(name="actbench_schema", node=Config)
    cs.store(group="model", name="_schema_mlp", node=MLPConfig)
    cs.store(group="model", name="_schema_vit", node=ViTConfig)


# --- validation -----------------------------------------------------------------------------


def _check_field(path: str, value: Any, meta: dict) -> None:
    if value is None:
        return
    options = meta.get("choices")
    if options is not None and value not in options:
        raise ConfigError(f"{path}={value!r} is not allowed; valid: {', '.join(options)}")
    limits = [
        ("ge", lambda v, b: v >= b),
        ("gt", lambda v, b: v > b),
        ("le", lambda v, b: v <= b),
        ("lt", lambda v, b: v < b),
    ]
    for key, ok in limits:
        bound = meta.get(key)
        if bound is not None and not ok(value, bound):
            raise ConfigError(f"{path}={value!r} is out of range; must be {_bounds_text(meta)}")


_LIMIT_SIGNS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))


def _bounds_text(meta: dict) -> str:
    """A field's range as text, e.g. '>= 0 and < 1' ('' when unbounded)."""
    signs = [(sign, meta[k]) for k, sign in _LIMIT_SIGNS if meta.get(k) is not None]
    return " and ".join(f"{sign} {bound:g}" for sign, bound in signs)


def _walk(obj: Any, prefix: str) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _walk(value, path + ".")
        else:
            _check_field(path, value, dict(f.metadata))


def _reject_unknown_keys(node: DictConfig, schema: Any, prefix: str) -> None:
    """Keys added with ``+key=value`` that no schema declares (free-form dicts excepted)."""
    known = {f.name: f for f in dataclasses.fields(schema)}
    for key in node:
        if key == "hydra":
            continue
        if key not in known:
            valid = ", ".join(k for k in known if not k.startswith("_"))
            raise ConfigError(f"{prefix}{key}: unknown key; valid keys: {valid}")
        child = getattr(schema, key)
        if dataclasses.is_dataclass(child):
            _reject_unknown_keys(node[key], child, f"{prefix}{key}.")


def validate_trainer(trainer: TrainerConfig) -> None:
    """The trainer keys that Lightning takes as free-form strings, checked against Lightning's
    own registries (it would fail later with a message that names neither value nor choices).
    Called by the training entry point, not by :func:`validate`: the registries import torch,
    which the sweep's pre-run check must not."""
    from pytorch_lightning.accelerators import AcceleratorRegistry
    from pytorch_lightning.strategies import StrategyRegistry

    accelerators = ["auto", "gpu", *sorted(AcceleratorRegistry.available_accelerators())]
    if trainer.accelerator not in accelerators:
        raise ConfigError(
            f"trainer.accelerator={trainer.accelerator!r} is not an accelerator; "
            f"valid: {', '.join(accelerators)}"
        )
    strategies = ["auto", *StrategyRegistry.available_strategies()]
    if trainer.strategy not in strategies:
        raise ConfigError(
            f"trainer.strategy={trainer.strategy!r} is not a strategy; "
            f"valid: {', '.join(strategies)}"
        )
    if not _valid_devices(trainer.devices):
        raise ConfigError(
            f"trainer.devices={trainer.devices!r} is not a device count or list; valid: auto, "
            "an integer >= 1 (or -1 for all), a list of device indices like [0,1], or '0,1'"
        )


def _valid_devices(devices: Any) -> bool:
    if isinstance(devices, bool):
        return False
    if isinstance(devices, int):
        return devices >= 1 or devices == -1
    if isinstance(devices, (list, tuple)) or OmegaConf.is_list(devices):
        return len(devices) > 0 and all(isinstance(d, int) and d >= 0 for d in devices)
    if isinstance(devices, str):
        text = devices.strip()
        if text == "auto" or re.fullmatch(r"-1|[1-9]\d*", text):
            return True
        return bool(re.fullmatch(r"\d+(,\s*\d+)*,?", text))
    return False


PACK_CHOICES = "off, auto or a number of runs per pack (>= 1)"


def pack_limit(setting: Any) -> int | None:
    """``pack`` as a size limit: None for off, 0 for auto, else the number; bad values raise."""
    text = str(setting).strip().lower()
    if text in ("off", "false", "none", "1"):
        return None
    if text == "auto":
        return 0
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ConfigError(f"pack={setting!r} is not a pack setting; valid: {PACK_CHOICES}")


def validate(cfg: DictConfig) -> Config:
    """Check ranges, choices and combinations; return the typed config object."""
    try:
        obj: Config = OmegaConf.to_object(cfg)  # type: ignore[assignment]
    except Exception as err:  # missing mandatory values, failed interpolations
        raise ConfigError(one_line_error(err)) from err
    _reject_unknown_keys(cfg, obj, "")
    _walk(obj, "")
    act = obj.activation
    try:
        activations.resolve_params(act.name, **activation_params(act))
    except activations.ActivationError as err:
        raise ConfigError(str(err)) from err
    for name, node in obj.callbacks.items():
        if not isinstance(node, dict) or "_target_" not in node:
            raise ConfigError(
                f"callbacks.{name}={node!r} is not a callback; each entry needs a _target_ "
                "(a Lightning callback class)"
            )
        size = node.get("probe_size")  # a free-form node: no schema checks its values
        if size is not None and (type(size) is not int or size < 1):
            raise ConfigError(
                f"callbacks.{name}.probe_size={size!r} is out of range; must be an integer >= 1 "
                "(values above the split's size use the whole split)"
            )
    opt = obj.optimizer
    if opt.name != "sgd" and opt.momentum != 0.0:
        raise ConfigError(
            f"optimizer.momentum={opt.momentum!r} applies to sgd only; "
            f"optimizer.name={opt.name!r} uses beta1/beta2"
        )
    if obj.data.num_samples is not None and obj.data.name != "mnist1d":
        raise ConfigError(
            f"data.num_samples={obj.data.num_samples!r} applies to mnist1d only; "
            f"data.name={obj.data.name!r} has a fixed size"
        )
    _check_model_data(obj.model, obj.data)
    pack_limit(obj.pack)
    if obj.trainer.max_epochs < -1 or obj.trainer.max_epochs == 0:
        raise ConfigError(
            f"trainer.max_epochs={obj.trainer.max_epochs!r} is not allowed; "
            "valid: -1 (step budget only) or >= 1"
        )
    return obj


def _check_model_data(model: ModelConfig, data: DataConfig) -> None:
    """Reject model/data combinations that cannot run, before any data is loaded."""
    shape = DATASET_SHAPES[data.name]
    if data.augment and data.name not in AUGMENTABLE:
        raise ConfigError(
            f"data.augment=true applies to {', '.join(AUGMENTABLE)} only; "
            f"data.name={data.name!r} has no augmentation"
        )
    if not isinstance(model, ViTConfig):
        return  # the MLP flattens any input
    if model.dim % model.heads:
        divisors = [h for h in range(1, model.dim + 1) if model.dim % h == 0]
        raise ConfigError(
            f"model.heads={model.heads} does not divide model.dim={model.dim}; "
            f"valid: {', '.join(map(str, divisors))}"
        )
    channels, spatial = (1, shape) if len(shape) == 1 else (shape[0], shape[1:])
    kind = "sequences of length" if len(spatial) == 1 else "images of size"
    size = "×".join(map(str, spatial))
    if model.image_size is not None and any(s != model.image_size for s in spatial):
        raise ConfigError(
            f"model.image_size={model.image_size} does not match data.name={data.name!r} "
            f"({kind} {size}); valid: {spatial[0]} or null (take it from the data)"
        )
    if model.channels is not None and model.channels != channels:
        raise ConfigError(
            f"model.channels={model.channels} does not match data.name={data.name!r} "
            f"({channels} channel{'s' * (channels > 1)}); valid: {channels} or null"
        )
    for s in spatial:
        if s % model.patch_size:
            valid = [p for p in range(1, s + 1) if s % p == 0]
            raise ConfigError(
                f"model.patch_size={model.patch_size} does not divide data.name={data.name!r} "
                f"{kind} {size}; valid: {', '.join(map(str, valid))}"
            )


def activation_params(act: ActivationConfig) -> dict[str, Any]:
    """The activation's parameters as given (None = registry default)."""
    return {
        f.name: getattr(act, f.name)
        for f in dataclasses.fields(act)
        if f.name not in ("_target_", "_partial_", "name")
    }


# --- run identity ---------------------------------------------------------------------------

# Keys that change where or how a run is shown or stored, not what it computes: they are not
# part of a run's identity (its run_id and folder). README.md ("W&B and the run record") lists
# them; tests/test_run_identity.py checks that the list there is this one.
NON_IDENTITY_KEYS = (
    "run_dir",
    "rerun",
    "sweep",
    "logger",
    "callbacks",
    "torch_threads",
    "data.root",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.accelerator",
    "data.download",
    "data.verify_checksums",
    "pack",
    "pack_members",
)
# Keys added after runs were recorded, left out while at the value every earlier run had, so
# earlier run ids stay valid (a completed run is still found, not trained twice).
IDENTITY_OMIT_AT: dict[str, Any] = {"data.augment": False, "compile": False}


def run_identity(cfg: DictConfig | dict[str, Any], drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """The resolved config minus presentation keys: what decides a run's numbers.

    ``cfg`` may hold Hydra's own node (``hydra``, left out) and a ``run_dir`` that cannot be
    resolved yet: the run folder's name is computed from this identity while Hydra resolves
    ``hydra.run.dir`` (:func:`run_dirname`). So top-level keys that are not part of the
    identity are never resolved (``callbacks`` interpolates ``run_dir``), and nothing is copied
    (the sweeper computes this for every job).
    """
    root = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    skip = {"hydra", *(k for k in (*NON_IDENTITY_KEYS, *drop) if "." not in k)}
    container: dict[str, Any] = {}
    for key in root:
        if key in skip:
            continue
        node = root._get_node(key)
        if isinstance(node, DictConfig | ListConfig):
            container[key] = OmegaConf.to_container(node, resolve=True)
        else:
            container[key] = "???" if OmegaConf.is_missing(root, key) else root[key]
    for dotted in (*NON_IDENTITY_KEYS, *drop):
        node, leaf = _parent(container, dotted)
        node.pop(leaf, None)
    for dotted, value in IDENTITY_OMIT_AT.items():
        node, leaf = _parent(container, dotted)
        if leaf in node and node[leaf] == value:
            del node[leaf]
    return container


def _parent(container: dict[str, Any], dotted: str) -> tuple[dict[str, Any], str]:
    """The dict holding a dotted key (an empty one if the path is absent) and the key's name."""
    *parents, leaf = dotted.split(".")
    node: Any = container
    for part in parents:
        node = node.get(part, {}) if isinstance(node, dict) else {}
    return (node if isinstance(node, dict) else {}), leaf


def digest(obj: Any) -> str:
    """A 10-hex-digit hash of a JSON-able value, key order ignored (run and pack ids)."""
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:10]


def run_id(cfg: DictConfig | dict[str, Any]) -> str:
    """Stable 10-hex-digit id: equal configurations get equal ids however they were spelled."""
    return digest(run_identity(cfg))


def group_id(cfg: DictConfig) -> str:
    """The configuration minus the seed, so W&B groups average over seeds."""
    return digest(run_identity(cfg, drop=("seed",)))


def run_dirname(cfg: DictConfig | dict[str, Any]) -> str:
    """A run's folder name, ``<activation>_<model>_<data>_lr<lr>_s<seed>__<run_id>``.

    Made from the resolved configuration alone, never from how the command spelled it: so
    ``optimizer.lr=1e-3`` and ``optimizer.lr=0.001``, ``seed=01`` and ``seed=1``, reordered
    overrides and an override equal to the default all name one folder, and changing a default
    in ``conf/`` names a new one. The readable part is a few fields for people (activation
    parameters that are set included); the run_id decides.
    """
    identity = run_identity(cfg)
    act = identity.get("activation") or {}
    set_params = sorted((k, v) for k, v in act.items() if k[0] != "_" and k != "name")
    params = "".join(f"-{k}{str(v).lower()}" for k, v in set_params if v is not None)
    lr = (identity.get("optimizer") or {}).get("lr")
    fields = [
        f"{act.get('name', 'act')}{params}",
        str((identity.get("model") or {}).get("name", "model")),
        str((identity.get("data") or {}).get("name", "data")),
        f"lr{lr:g}" if isinstance(lr, (int, float)) else f"lr{lr}",
        f"s{identity.get('seed')}",
    ]
    readable = re.sub(r"[^A-Za-z0-9_.=,+-]+", "-", "_".join(fields))[:80]
    return f"{readable}__{digest(identity)}"


def legacy_run_dirname(override_dirname: str) -> str:
    """The folder name earlier versions gave a run: its override string (Hydra's
    ``override_dirname``) made safe, and a hash of that string. Kept to find such folders."""
    readable = re.sub(r"[^A-Za-z0-9_.=,-]+", "-", override_dirname)[:80] or "default"
    return f"{readable}__{hashlib.sha1(override_dirname.encode()).hexdigest()[:8]}"


def identity_diff(stored: DictConfig | dict[str, Any], cfg: DictConfig) -> list[str]:
    """The dotted keys whose identity values differ between a stored resolved config (a run
    folder's ``config.yaml``) and ``cfg`` (a key present on one side only counts)."""
    old, new = _flat(run_identity(stored)), _flat(run_identity(cfg))
    return sorted(k for k in old.keys() | new.keys() if old.get(k, _ABSENT) != new.get(k, _ABSENT))


_ABSENT = object()


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict) or not tree:
        return {prefix.rstrip("."): tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(_flat(value, f"{prefix}{key}."))
    return out


def _run_dirname_resolver(*, _root_: DictConfig) -> str:
    # ${actbench_run_dirname:} in hydra.run.dir / hydra.sweep.subdir: the root is the job's
    # whole config, Hydra's node included (run_identity leaves that out).
    return run_dirname(_root_)


if not OmegaConf.has_resolver("actbench_run_dirname"):
    OmegaConf.register_new_resolver("actbench_run_dirname", _run_dirname_resolver)


# --- one-line errors ------------------------------------------------------------------------


MODEL_SCHEMAS: dict[str, type[ModelConfig]] = {"MLPConfig": MLPConfig, "ViTConfig": ViTConfig}


def _schema_keys(path: str, schema: str | None = None) -> list[str] | None:
    """Valid keys at a dotted path of the schema, e.g. 'optimizer' -> OptimizerConfig fields."""
    fields = _schema_fields(path, schema)
    return None if fields is None else [f.name for f in fields if not f.name.startswith("_")]


def _schema_fields(path: str, schema: str | None = None) -> list[dataclasses.Field] | None:
    """The dataclass fields at a dotted path of the schema (None when the path is not typed).

    ``schema`` is the class OmegaConf names in its error ("Key 'x' not in 'ViTConfig'"): it
    picks the model family's schema, since 'model' alone does not say which one was chosen.
    """
    node: Any = Config
    for part in [p for p in path.split(".") if p]:
        hints = {f.name: f.type for f in dataclasses.fields(node)} if node else {}
        if part not in hints:
            return None
        node = (
            {
                "data": DataConfig,
                "model": MODEL_SCHEMAS.get(schema or "", MLPConfig),
                "activation": ActivationConfig,
                "optimizer": OptimizerConfig,
                "trainer": TrainerConfig,
                "logger": LoggerConfig,
            }.get(part)
            if node is Config
            else None
        )
        if node is None:
            return None
    return list(dataclasses.fields(node))


def _accepted(key_path: str, schema: str | None, kind: str | None = None) -> str:
    """What a key accepts, from its schema: 'Integer >= 1', 'one of: none, batch', ...

    ``kind`` is OmegaConf's word for the type (Integer, Float, Boolean), kept as it says it.
    """
    parent, _, leaf = key_path.rpartition(".")
    field_ = next((f for f in _schema_fields(parent, schema) or [] if f.name == leaf), None)
    meta = dict(field_.metadata) if field_ is not None else {}
    if meta.get("choices"):
        return "one of: " + ", ".join(str(c) for c in meta["choices"] if c is not None)
    kind = kind or {int: "Integer", float: "Float", bool: "Boolean"}.get(
        _base_type(field_.type) if field_ is not None else None, "a value"
    )
    if kind == "Boolean":
        return "Boolean (true or false)"
    bounds = _bounds_text(meta)
    return f"{kind} {bounds}" if bounds else kind


def _base_type(annotation: Any) -> type | None:
    """``int`` for 'int', 'int | None' and the like (annotations are strings here)."""
    text = str(annotation).replace("None", "").replace("|", "").strip()
    return {"int": int, "float": float, "bool": bool}.get(text)


def one_line_error(err: BaseException) -> str:
    """Condense a Hydra/OmegaConf/actbench error into one line naming key, value and choices."""
    chain: list[BaseException] = []
    cur: BaseException | None = err
    while cur is not None and cur not in chain:
        chain.append(cur)
        cur = cur.__cause__ or cur.__context__
    for e in chain:
        if isinstance(e, ConfigError):
            return str(e)
    text = "\n".join(str(e) for e in chain)
    missing_opt = re.search(r"Could not find '([^']+)/([^']+)'", text)
    if missing_opt:
        group, option = missing_opt.groups()
        options = re.findall(r"^\t(\S+)$", text, flags=re.M)
        options = [o for o in options if not o.startswith("_schema")]
        return f"{group}={option} is not an option of '{group}'; valid: {', '.join(options)}"
    unknown = re.search(r"Key '([^']+)' not in '(\w+)'", text)
    full_key = re.search(r"full_key: (\S+)", text)
    if unknown:
        key_path = full_key.group(1) if full_key else unknown.group(1)
        parent = key_path.rsplit(".", 1)[0] if "." in key_path else ""
        keys = _schema_keys(parent, unknown.group(2))
        valid = f"; valid keys: {', '.join(keys)}" if keys else ""
        return f"{key_path}: unknown key{valid}"
    object_type = re.search(r"object_type=(\w+)", text)
    schema = object_type.group(1) if object_type else None
    conv = re.search(r"Value '([^']*)' (?:of type '\w+' )?could not be converted to (\w+)", text)
    if conv and full_key:
        key_path = full_key.group(1)
        expected = _accepted(key_path, schema, conv.group(2))
        return f"{key_path}={conv.group(1)!r} has the wrong type; expected {expected}"
    bad_bool = re.search(r"Value '([^']*)' is not a valid bool", text)
    if bad_bool and full_key:
        key_path = full_key.group(1)
        return (
            f"{key_path}={bad_bool.group(1)!r} has the wrong type; expected Boolean (true or false)"
        )
    not_opt = re.search(r"field '([^']+)' is not Optional", text)
    if not_opt:
        key_path = not_opt.group(1)
        return f"{key_path}=None is not allowed; expected {_accepted(key_path, schema)}"
    first = next((line.strip() for line in text.splitlines() if line.strip()), type(err).__name__)
    return first


def is_user_error(err: BaseException) -> bool:
    """Bad input (config, data files) rather than a bug: those get the one-line treatment."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from actbench.activations import ActivationError
    from actbench.data import DataError

    user = (ConfigError, ActivationError, DataError, HydraException, OmegaConfBaseException)
    cur: BaseException | None = err
    while cur is not None:
        if isinstance(cur, user):
            return True
        cur = cur.__cause__ or cur.__context__
    return False

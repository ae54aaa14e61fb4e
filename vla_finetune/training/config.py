"""The VLA finetuning config: nested dataclasses read from YAML, checked before any work.

Same conventions (and parser) as :mod:`orv_engine.training.config`: unknown keys, wrong
types and missing paths fail at once with the dotted key; ``--set key=value`` overrides.

    config = load_config("configs/vla/robovlm_bridge_orv.yaml", overrides=["train.max_steps=10"])
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orv_engine.config_validation import ConfigError, apply_overrides, build_dataclass, read_yaml_mapping

POLICIES = ("robovlm", "spatialvla")


@dataclass
class PolicyConfig:
    kind: str = "robovlm"  # robovlm | spatialvla
    # A backbone folder (Kosmos-2 for robovlm, PaliGemma for spatialvla; e.g. an
    # OXE-pretrained backbone exported in the transformers layout) or a saved policy folder
    # of the same kind (continue finetuning).
    pretrained_path: str = ""
    # Fields of RoboVLMConfig / SpatialVLAConfig (history_len, chunk_size, lstm_hidden_size,
    # lora_rank, ...), for a new policy on a backbone folder.
    options: dict[str, Any] = field(default_factory=dict)
    lora: bool = True  # spatialvla: LoRA adapters (merged at export); robovlm: ignored (full finetune)
    gradient_checkpointing: bool = False


@dataclass
class DatasetEntry:
    path: str = ""  # local TFDS folder
    weight: float = 1.0


@dataclass
class DataConfig:
    # mixture.json written by `orv-export merge` (datasets, weights, statistics), or:
    mixture: str | None = None
    datasets: list[DatasetEntry] = field(default_factory=list)  # first = primary (e.g. BridgeV2)
    statistics: str | None = None  # dataset_statistics_openvla.json of the mixture
    split: str = "train"
    transform: str = "openvla"  # Bridge standardization: openvla | octo | none
    camera: str = "image_0"
    image_size: int | None = None  # resize frames (None: keep; processors resize anyway)
    shuffle_buffer: int = 1024
    num_workers: int = 0


@dataclass
class OptimConfig:
    optimizer: str = "adam"  # adam | adamw
    learning_rate: float = 2e-5
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    weight_decay: float = 0.0
    eps: float = 1e-8
    max_grad_norm: float = 1.0
    lr_scheduler: str = "constant"  # transformers.get_scheduler names
    lr_warmup_steps: int = 0


@dataclass
class TrainConfig:
    max_steps: int = 10000
    batch_size: int = 8  # per device
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "auto"  # auto (bf16 on GPU, no on CPU), bf16, fp16, no
    checkpoint_every: int = 1000
    checkpoints_total_limit: int | None = 3
    log_every: int = 10
    # DDP: set true if some parameter gets no gradient in a step (e.g. a backbone variant
    # with modules the policy does not use); costs an extra graph traversal.
    find_unused_parameters: bool = False


@dataclass
class VLAConfig:
    output_dir: str = "outputs/vla-train"
    seed: int = 42
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    tracker: str = "tensorboard"  # tensorboard | none

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CHOICES = {
    "policy.kind": POLICIES,
    "data.transform": ("openvla", "octo", "none"),
    "optim.optimizer": ("adam", "adamw"),
    "train.mixed_precision": ("auto", "no", "bf16", "fp16"),
    "tracker": ("tensorboard", "none"),
}


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def mixture_datasets(config: VLAConfig) -> tuple[list[DatasetEntry], str | None]:
    """The datasets and statistics file, from ``data.mixture`` or ``data.datasets``/``data.statistics``."""
    if config.data.mixture:
        path = Path(config.data.mixture).expanduser()
        if not path.is_file():
            raise ConfigError(f"data.mixture: {path} does not exist (a mixture.json from `orv-export merge`)")
        description = json.loads(path.read_text())
        entries = [DatasetEntry(str(Path(d["data_dir"]) / d["name"] / d["version"]), float(d["weight"]))
                   for d in description["datasets"]]
        statistics = config.data.statistics or description.get("statistics", {}).get("openvla")
        return entries, statistics
    return list(config.data.datasets), config.data.statistics


def validate(config: VLAConfig, check_paths: bool = True) -> None:
    for key, allowed in CHOICES.items():
        if _get(config, key) not in allowed:
            raise ConfigError(f"{key}: must be one of {', '.join(allowed)}, got {_get(config, key)!r}")
    for key in ("train.max_steps", "train.batch_size", "train.gradient_accumulation_steps", "train.checkpoint_every",
                "train.log_every", "optim.learning_rate", "data.shuffle_buffer"):
        if _get(config, key) <= 0:
            raise ConfigError(f"{key}: must be > 0, got {_get(config, key)}")
    for key in ("optim.max_grad_norm", "optim.weight_decay", "optim.lr_warmup_steps", "data.num_workers"):
        if _get(config, key) < 0:
            raise ConfigError(f"{key}: must be >= 0, got {_get(config, key)}")
    if len(config.optim.betas) != 2 or not all(0 <= b < 1 for b in config.optim.betas):
        raise ConfigError(f"optim.betas: must be two numbers in [0, 1), got {config.optim.betas}")
    from vla_finetune.policies.robovlm.configuration_robovlm import RoboVLMConfig
    from vla_finetune.policies.spatialvla.configuration_spatialvla import SpatialVLAConfig

    cls = RoboVLMConfig if config.policy.kind == "robovlm" else SpatialVLAConfig
    known = set(cls.__dataclass_fields__) if hasattr(cls, "__dataclass_fields__") else set(cls.__annotations__)
    for key in config.policy.options:
        if key not in known or key in ("backbone_config", "action_token_offset"):
            raise ConfigError(f"policy.options.{key}: not a {cls.__name__} field")
    if config.data.mixture and config.data.datasets:
        raise ConfigError("data: give data.mixture or data.datasets, not both")
    if not config.data.mixture and not config.data.datasets:
        raise ConfigError("data.datasets: required (or data.mixture)")
    for i, entry in enumerate(config.data.datasets):
        if entry.weight <= 0:
            raise ConfigError(f"data.datasets[{i}].weight: must be > 0, got {entry.weight}")
    if config.tracker == "tensorboard":
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
            raise ConfigError("tracker: 'tensorboard' needs the tensorboard package, or set tracker: none")
    if not check_paths:
        return
    what = "a Kosmos-2 folder or saved RoboVLM policy" if config.policy.kind == "robovlm" else \
        "a PaliGemma folder or saved SpatialVLA policy"
    path = config.policy.pretrained_path
    if not path:
        raise ConfigError(f"policy.pretrained_path: required ({what})")
    if not (Path(path).expanduser() / "config.json").is_file():
        raise ConfigError(f"policy.pretrained_path: {path} is not a model folder with config.json ({what})")
    entries, statistics = mixture_datasets(config)
    for i, entry in enumerate(entries):
        if not Path(entry.path).expanduser().exists():
            raise ConfigError(f"data.datasets[{i}].path: {entry.path} does not exist (a local TFDS folder)")
    if not statistics:
        raise ConfigError("data.statistics: required (the mixture's dataset_statistics_openvla.json; "
                          "`orv-export merge` writes it)")
    if not Path(statistics).expanduser().is_file():
        raise ConfigError(f"data.statistics: {statistics} does not exist")


def config_from_dict(values: dict, overrides=(), check_paths: bool = True) -> VLAConfig:
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"the config must be a mapping of keys, got {type(values).__name__}")
    config = build_dataclass(VLAConfig, apply_overrides(values, overrides))
    validate(config, check_paths=check_paths)
    return config


def load_config(path: str | Path, overrides=(), check_paths: bool = True) -> VLAConfig:
    return config_from_dict(read_yaml_mapping(path), overrides, check_paths=check_paths)

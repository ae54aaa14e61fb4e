"""The VLA finetuning config: nested dataclasses read from YAML, checked before any work.

Same conventions (and path, :mod:`orv_engine.config_validation`) as
:mod:`orv_engine.training.config`: unknown keys, wrong types and bad values fail at once with
the dotted key (each section checks its values in ``__post_init__``), :func:`check_inputs`
checks the folders and files; ``--set key=value`` overrides.

    config = load_config("configs/vla/robovlm_bridge_orv.yaml", overrides=["train.max_steps=10"])
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from orv_engine import config_validation
from orv_engine.config_validation import ConfigError, check_choices, check_range, option
from orv_engine.training.config import MixedPrecision, Tracker, check_tracker
from vla_finetune.policies.robovlm.configuration_robovlm import RoboVLMConfig
from vla_finetune.policies.spatialvla.configuration_spatialvla import SpatialVLAConfig

Policy = Literal["robovlm", "spatialvla"]
POLICY_CONFIGS = {"robovlm": RoboVLMConfig, "spatialvla": SpatialVLAConfig}


@dataclass
class PolicyConfig:
    kind: Policy = option("robovlm", help="robovlm (Kosmos-2 + LSTM head) or spatialvla (PaliGemma + action tokens)")
    pretrained_path: str = option(
        "", help="a backbone folder (Kosmos-2 for robovlm, PaliGemma for spatialvla; e.g. an OXE-pretrained "
                 "backbone exported in the transformers layout) or a saved policy folder of the same kind "
                 "(continue finetuning)")
    options: dict[str, Any] = option(factory=dict, help="fields of RoboVLMConfig / SpatialVLAConfig (history_len, "
                                                        "chunk_size, lstm_hidden_size, lora_rank, ...), for a new "
                                                        "policy on a backbone folder")
    lora: bool = option(True, help="spatialvla: LoRA adapters (merged at export); robovlm: ignored (full finetune)")
    gradient_checkpointing: bool = option(False, help="recompute the backbone's activations in the backward pass")

    def __post_init__(self):
        check_choices(self)
        cls = POLICY_CONFIGS[self.kind]
        known = set(cls.__dataclass_fields__) if hasattr(cls, "__dataclass_fields__") else set(cls.__annotations__)
        for key in self.options:
            if key not in known or key in ("backbone_config", "action_token_offset"):
                raise ConfigError(f"options.{key}: not a {cls.__name__} field")


@dataclass
class DatasetEntry:
    path: str = option("", help="local TFDS folder")
    weight: float = option(1.0, help="sampling weight in the mixture")

    def __post_init__(self):
        check_range(self, "weight")


@dataclass
class DataConfig:
    mixture: str | None = option(None, help="mixture.json written by `orv-export merge` (datasets, weights, "
                                            "statistics), or datasets + statistics")
    datasets: list[DatasetEntry] = option(factory=list, help="first = primary (e.g. BridgeV2)")
    statistics: str | None = option(None, help="dataset_statistics_openvla.json of the mixture")
    split: str = option("train", help="the TFDS split trained on")
    transform: Literal["openvla", "octo", "none"] = option("openvla", help="Bridge standardization: openvla, "
                                                                           "octo or none")
    camera: str = option("image_0", help="image key of the camera")
    image_size: int | None = option(None, help="resize frames (null: keep; processors resize anyway)")
    shuffle_buffer: int = option(1024, help="steps in the shuffle buffer of the mixture stream")
    num_workers: int = option(0, help="DataLoader workers per process")

    def __post_init__(self):
        check_choices(self)
        check_range(self, "shuffle_buffer")
        check_range(self, "num_workers", low_open=False)
        if self.mixture and self.datasets:
            raise ConfigError("mixture: give data.mixture or data.datasets, not both")


@dataclass
class OptimConfig:
    optimizer: Literal["adam", "adamw"] = option("adam", help="adam or adamw")
    learning_rate: float = option(2e-5, help="after warmup")
    betas: list[float] = option(factory=lambda: [0.9, 0.999], help="Adam betas")
    weight_decay: float = option(0.0, help="weight decay")
    eps: float = option(1e-8, help="Adam epsilon")
    max_grad_norm: float = option(1.0, help="gradient clipping norm")
    lr_scheduler: str = option("constant", help="transformers.get_scheduler names")
    lr_warmup_steps: int = option(0, help="warmup steps")

    def __post_init__(self):
        check_choices(self)
        check_range(self, "learning_rate")
        check_range(self, "max_grad_norm", "weight_decay", "lr_warmup_steps", low_open=False)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas: must be two numbers in [0, 1), got {self.betas}")


@dataclass
class TrainConfig:
    max_steps: int = option(10000, help="optimizer steps")
    batch_size: int = option(8, help="per device")
    gradient_accumulation_steps: int = option(1, help="micro-batches per optimizer step")
    mixed_precision: MixedPrecision = option("auto", help="auto (bf16 on GPU, no on CPU), bf16, fp16, no")
    checkpoint_every: int = option(1000, help="optimizer steps between checkpoints")
    checkpoints_total_limit: int | None = option(3, help="checkpoints kept (the oldest go); null: all")
    log_every: int = option(10, help="optimizer steps between log lines")
    find_unused_parameters: bool = option(
        False, help="DDP: set true if some parameter gets no gradient in a step (e.g. a backbone variant with "
                    "modules the policy does not use); costs an extra graph traversal")

    def __post_init__(self):
        check_choices(self)
        check_range(self, "max_steps", "batch_size", "gradient_accumulation_steps", "checkpoint_every", "log_every")


@dataclass
class VLAConfig:
    output_dir: str = option("outputs/vla-train", help="checkpoints, logs, the final policy and config.yaml")
    seed: int = option(42, help="seed of the run")
    policy: PolicyConfig = option(factory=PolicyConfig, help="the policy and the folder it starts from")
    data: DataConfig = option(factory=DataConfig, help="the RLDS mixture")
    optim: OptimConfig = option(factory=OptimConfig, help="optimizer and learning-rate schedule")
    train: TrainConfig = option(factory=TrainConfig, help="steps, batches, precision, checkpoints")
    tracker: Tracker = option("tensorboard", help="tensorboard or none")

    def __post_init__(self):
        check_choices(self)
        check_tracker(self.tracker)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


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


def check_inputs(config: VLAConfig) -> None:
    """The data and the folders a run reads are given and exist (the step ``check_paths=False`` skips)."""
    if not config.data.mixture and not config.data.datasets:
        raise ConfigError("data.datasets: required (or data.mixture)")
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


def config_from_dict(values: dict | None, overrides=(), check_paths: bool = True) -> VLAConfig:
    return config_validation.config_from_dict(VLAConfig, values, overrides, check_inputs if check_paths else None)


def load_config(path: str | Path, overrides=(), check_paths: bool = True) -> VLAConfig:
    return config_validation.load_config(VLAConfig, path, overrides, check_inputs if check_paths else None)

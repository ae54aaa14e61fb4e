"""The training config: nested dataclasses read from YAML, checked before any work starts.

Why dataclasses and not a dict: every key has a type, a default and an explanation in one
place, and a typo (``max_stepz``), a wrong type (``max_steps: "many"``), a value out of range
or a path that does not exist fails at once with the dotted key in the message, before a
model is loaded or a GPU touched. Reading, overrides and type checks are
:mod:`orv_engine.config_validation`'s (the one config path); each section checks its values
in ``__post_init__``; :func:`check_inputs` checks the paths.

    config = load_config("configs/bridge/stage1.yaml", overrides=["train.max_steps=10"])

``overrides`` are ``key=value`` strings with dotted keys; values are parsed as YAML
(``1e-4``, ``[depth, semantics]``, ``null``, ``true``).
"""

from __future__ import annotations

import dataclasses
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from diffusers.optimization import SchedulerType

from orv_engine import config_validation
from orv_engine.config_validation import ConfigError, check_choices, check_range, option
from orv_engine.data.clips import PRESETS, ClipConfig

MixedPrecision = Literal["auto", "no", "bf16", "fp16"]
Tracker = Literal["tensorboard", "none"]
ConditionKind = Literal["depth", "semantics"]
LR_SCHEDULERS = tuple(s.value for s in SchedulerType)


def check_tracker(tracker: str) -> None:
    """``tracker: tensorboard`` needs the package (checked at load, not at the first log)."""
    if tracker == "tensorboard" and importlib.util.find_spec("tensorboard") is None \
            and importlib.util.find_spec("tensorboardX") is None:
        raise ConfigError("tracker: 'tensorboard' needs the tensorboard package (pip install tensorboard), "
                          "or set tracker: none")


@dataclass
class ModelConfig:
    pretrained_path: str = option("", help="a diffusers pipeline folder with vae/, text_encoder/, tokenizer/, "
                                           "scheduler/ and transformer/ (CogVideoX-2B as downloaded, or an ORV "
                                           "folder saved by a run)")
    transformer_path: str | None = option(None, help="the transformer to start from; null: "
                                                     "<pretrained_path>/transformer. Stage 2 points this at a "
                                                     "stage-1 checkpoint's transformer/ folder")
    condition_kinds: list[ConditionKind] = option(factory=list, help="visual conditions of the model: [] in "
                                                                     "stage 1, [depth, semantics] in stage 2")
    gradient_checkpointing: bool = option(True, help="recompute activations in the backward pass (less memory)")
    trainable: Literal["all", "orv"] = option("all", help="all: the whole transformer; orv: only the new ORV "
                                                          "modules + patch embedding")

    def __post_init__(self):
        check_choices(self)


@dataclass
class DataConfig:
    path: str = option("", help="local TFDS folder (e.g. ~/tensorflow_datasets/bridge_dataset/1.0.0)")
    preset: str = option("bridge", help="clip sizes and strides, orv_engine.data.PRESETS: "
                                        + ", ".join(PRESETS))
    clip: dict[str, Any] = option(factory=dict, help="ClipConfig fields that override the preset's")
    dataset: str | None = option(None, help="schema kind; null: from the TFDS name")
    split: str = option("train", help="the TFDS split trained on")
    val_split: str = option("val", help="the TFDS split validation clips come from")
    camera: str | None = option(None, help="image key of the camera; null: the schema's main camera")
    num_workers: int = option(0, help="DataLoader workers per process (spawned)")
    shuffle_buffer: int = option(256, help="clips in the shuffle buffer of the episode stream")
    conditions_source: Literal["occupancy", "episode"] = option(
        "occupancy", help="occupancy: render conditions from the episode's 4D occupancy (the paper's coarse "
                          "maps); episode: the episode's own depth/segmentation (the paper's fine maps)")
    occupancy_store: str | None = option(
        None, help="an occupancy store (orv-occupancy) of this dataset: conditions_source occupancy renders the "
                   "maps from it (RGB-only datasets: BridgeV2, RT-1); episodes it lacks or flagged are skipped, "
                   "counted; null: occupancy from the episodes' own depth and cameras")
    condition_encoding: Literal["engine", "orv-official"] | None = option(
        None, help="how condition maps become VAE inputs (orv_engine.occupancy.condition_images): engine or "
                   "orv-official; null: what the starting checkpoint records (engine if nothing). The action "
                   "convention likewise comes from the checkpoint unless clip sets it")
    latents_dir: str | None = option(None, help="pre-encoded VAE latents (orv_engine.training.latents); "
                                                "training then reads these")
    max_clips: int | None = option(None, help="cap on the clips pre-encoded (tiny runs)")
    first_frame_variants: int = option(
        0, help="with latents_dir: 0 = the noise-augmented first frame is VAE-encoded every step (exact "
                "recipe); N > 0 = N noise-augmented encodings are stored per clip and a step draws one (saves "
                "the per-step VAE call, which dominates a CPU step)")

    def __post_init__(self):
        check_choices(self)
        if self.preset not in PRESETS:
            raise ConfigError(f"preset: unknown preset {self.preset!r} (known: {', '.join(PRESETS)})")
        clip_fields = {f.name for f in dataclasses.fields(ClipConfig)}
        for key in self.clip:
            if key not in clip_fields:
                raise ConfigError(f"clip.{key}: unknown key (known here: {', '.join(sorted(clip_fields))})")
        try:
            dataclasses.replace(PRESETS[self.preset], **self.clip)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"clip: {e}") from None
        check_range(self, "max_clips")
        check_range(self, "first_frame_variants", "num_workers", low_open=False)
        if self.first_frame_variants and not self.latents_dir:
            raise ConfigError("first_frame_variants: only applies with data.latents_dir (pre-encoded latents)")


@dataclass
class TextConfig:
    prompt: str = option("", help="the text prompt of every clip (ORV is conditioned on actions, not text; "
                                  "paper Sec. 11.2.1)")
    use_instruction: bool = option(False, help="true: the episode's instruction instead of prompt")


@dataclass
class LossConfig:
    image_noise_mean: float = option(-3.0, help="first-frame noise augmentation (CogVideoX I2V): "
                                                "sigma = exp(N(mean, std)) in pixels")
    image_noise_std: float = option(0.5, help="see image_noise_mean")
    image_dropout: float = option(0.05, help="per-sample probability of zeroed first-frame latents")
    null_action_prob: float = option(0.1, help="per-sample probability of the null-action token")

    def __post_init__(self):
        check_range(self, "image_dropout", "null_action_prob", low_open=False, high=1)


@dataclass
class OptimConfig:
    learning_rate: float = option(1e-4, help="AdamW learning rate after warmup")
    betas: list[float] = option(factory=lambda: [0.9, 0.95], help="AdamW betas")
    weight_decay: float = option(1e-3, help="AdamW weight decay")
    eps: float = option(1e-8, help="AdamW epsilon")
    max_grad_norm: float = option(1.0, help="gradient clipping norm")
    lr_scheduler: str = option("cosine_with_restarts", help="any diffusers.optimization name: "
                                                            + ", ".join(LR_SCHEDULERS))
    lr_warmup_steps: int = option(1000, help="linear warmup steps")
    lr_num_cycles: int = option(1, help="cycles of cosine_with_restarts")

    def __post_init__(self):
        check_range(self, "learning_rate", "lr_num_cycles")
        check_range(self, "lr_warmup_steps", "weight_decay", "max_grad_norm", low_open=False)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"betas: must be two numbers in [0, 1), got {self.betas}")
        if self.lr_scheduler not in LR_SCHEDULERS:
            raise ConfigError(f"lr_scheduler: unknown {self.lr_scheduler!r} (known: {', '.join(LR_SCHEDULERS)})")


@dataclass
class EMAConfig:
    enabled: bool = option(False, help="keep an exponential moving average of the weights")
    decay: float = option(0.9999, help="EMA decay")
    update_after_step: int = option(0, help="the EMA starts after this step")
    use_ema_warmup: bool = option(False, help="diffusers' EMA warmup of the decay")

    def __post_init__(self):
        check_range(self, "decay", low_open=False, high=1)


@dataclass
class TrainConfig:
    max_steps: int = option(30000, help="optimizer steps")
    batch_size: int = option(1, help="per device")
    gradient_accumulation_steps: int = option(1, help="micro-batches per optimizer step")
    mixed_precision: MixedPrecision = option("auto", help="auto (bf16 on GPU, no on CPU), bf16, fp16, no")
    checkpoint_every: int = option(1000, help="optimizer steps between checkpoints")
    checkpoints_total_limit: int | None = option(3, help="checkpoints kept (the oldest go); null: all")
    log_every: int = option(10, help="optimizer steps between log lines")
    ema: EMAConfig = option(factory=EMAConfig, help="exponential moving average of the weights")

    def __post_init__(self):
        check_choices(self)
        check_range(self, "max_steps", "batch_size", "gradient_accumulation_steps", "checkpoint_every", "log_every",
                    "checkpoints_total_limit")


@dataclass
class ValidationConfig:
    every: int = option(1000, help="optimizer steps between validations; 0: never")
    num_clips: int = option(4, help="held-out clips generated each time")
    num_inference_steps: int = option(50, help="sampler steps of a validation rollout")
    seed: int = option(0, help="seed of the validation generators")
    save_videos: bool = option(True, help="write ground truth | rollout mp4s")
    fps: int = option(5, help="of the saved mp4s")

    def __post_init__(self):
        check_range(self, "num_clips", "num_inference_steps", "fps")
        check_range(self, "every", low_open=False)


@dataclass
class Config:
    output_dir: str = option("outputs/orv-train", help="checkpoints, logs, validation videos and the "
                                                      "resolved config.yaml")
    seed: int = option(42, help="seed of the run (data order, noise, dropout)")
    model: ModelConfig = option(factory=ModelConfig, help="the pipeline and transformer to start from")
    data: DataConfig = option(factory=DataConfig, help="the dataset and how clips are cut")
    text: TextConfig = option(factory=TextConfig, help="the text prompt")
    loss: LossConfig = option(factory=LossConfig, help="the CogVideoX I2V recipe's augmentations")
    optim: OptimConfig = option(factory=OptimConfig, help="AdamW and the learning-rate schedule")
    train: TrainConfig = option(factory=TrainConfig, help="steps, batches, precision, checkpoints")
    validation: ValidationConfig = option(factory=ValidationConfig, help="held-out rollouts with PSNR/SSIM")
    tracker: Tracker = option("tensorboard", help="tensorboard or none")

    def __post_init__(self):
        check_choices(self)
        check_tracker(self.tracker)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def config_from_dict(values: dict | None, overrides=(), check_paths: bool = True) -> Config:
    """A checked :class:`Config`. Relative paths stay relative to the working directory."""
    return config_validation.config_from_dict(Config, values, overrides, check_inputs if check_paths else None)


def load_config(path: str | Path, overrides=(), check_paths: bool = True) -> Config:
    return config_validation.load_config(Config, path, overrides, check_inputs if check_paths else None)


# ---------------------------------------------------------------- paths


def _exists(key: str, value: str | None, what: str) -> None:
    if value is None or value == "":
        raise ConfigError(f"{key}: required ({what})")
    if not Path(value).expanduser().exists():
        raise ConfigError(f"{key}: path {value} does not exist ({what})")


def check_inputs(config: Config) -> None:
    """The folders a run reads exist (the step that ``check_paths=False`` skips)."""
    _exists("model.pretrained_path", config.model.pretrained_path, "a diffusers CogVideoX/ORV pipeline folder")
    if config.model.transformer_path is not None:
        _exists("model.transformer_path", config.model.transformer_path, "a transformer folder")
    else:
        _exists("model.pretrained_path", str(Path(config.model.pretrained_path).expanduser() / "transformer"),
                "the folder needs a transformer/ subfolder, or set model.transformer_path")
    for sub in ("vae", "scheduler", "text_encoder", "tokenizer"):
        _exists("model.pretrained_path", str(Path(config.model.pretrained_path).expanduser() / sub),
                f"the pipeline folder needs a {sub}/ subfolder")
    if config.data.latents_dir is None or not (Path(config.data.latents_dir).expanduser() / "index.json").is_file():
        _exists("data.path", config.data.path, "a local TFDS dataset folder, read unless data.latents_dir is complete")

"""The training config: nested dataclasses read from YAML, checked before any work starts.

Why dataclasses and not a dict: every key has a type and a default in one place, and a typo
(``max_stepz``), a wrong type (``max_steps: "many"``) or a path that does not exist fails
at once with the dotted key in the message, before a model is loaded or a GPU touched.

    config = load_config("configs/bridge/stage1.yaml", overrides=["train.max_steps=10"])

``overrides`` are ``key=value`` strings with dotted keys; values are parsed as YAML
(``1e-4``, ``[depth, semantics]``, ``null``, ``true``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


from orv_engine.config_validation import ConfigError, apply_overrides, build_dataclass, read_yaml_mapping



@dataclass
class ModelConfig:
    # A diffusers pipeline folder with vae/, text_encoder/, tokenizer/, scheduler/ and
    # transformer/ (CogVideoX-2B as downloaded, or an ORV folder saved by a run).
    pretrained_path: str = ""
    # The transformer to start from; default ``<pretrained_path>/transformer``. Stage 2 points
    # this at a stage-1 checkpoint's ``transformer/`` folder.
    transformer_path: str | None = None
    # Visual conditions of the model: [] in stage 1, [depth, semantics] in stage 2.
    condition_kinds: list[str] = field(default_factory=list)
    gradient_checkpointing: bool = True
    # "all": the whole transformer; "orv": only the new ORV modules + patch embedding.
    trainable: str = "all"


@dataclass
class DataConfig:
    path: str = ""  # local TFDS folder (e.g. ~/tensorflow_datasets/bridge_dataset/1.0.0)
    preset: str = "bridge"  # orv_engine.data.PRESETS: bridge, droid, rt1, sim, bridge-tiny
    clip: dict[str, Any] = field(default_factory=dict)  # ClipConfig overrides
    dataset: str | None = None  # schema kind; default from the tfds name
    split: str = "train"
    val_split: str = "val"
    camera: str | None = None
    num_workers: int = 0  # DataLoader workers per process (spawned)
    shuffle_buffer: int = 256
    # "occupancy": render conditions from the episode's 4D occupancy (the paper's coarse
    # maps); "episode": the episode's own depth/segmentation (the paper's "fine" maps).
    conditions_source: str = "occupancy"
    # How condition maps become VAE inputs (orv_engine.occupancy.condition_images): "engine"
    # or "orv-official"; None = what the starting checkpoint records ("engine" if nothing).
    # The action convention likewise comes from the checkpoint unless ``clip`` sets it.
    condition_encoding: str | None = None
    # Pre-encoded VAE latents (orv_engine.training.latents); training then reads these.
    latents_dir: str | None = None
    max_clips: int | None = None  # cap on the clips pre-encoded (tiny runs)
    # With latents_dir: 0 = the noise-augmented first frame is VAE-encoded every step (exact
    # recipe); N > 0 = N noise-augmented encodings are stored per clip and a step draws one
    # (saves the per-step VAE call, which dominates a CPU step).
    first_frame_variants: int = 0


@dataclass
class TextConfig:
    prompt: str = ""  # ORV is conditioned on actions, not text (paper Sec. 11.2.1)
    use_instruction: bool = False  # True: the episode's instruction instead of ``prompt``


@dataclass
class LossConfig:
    # First-frame noise augmentation (CogVideoX I2V): sigma = exp(N(mean, std)) in pixels.
    image_noise_mean: float = -3.0
    image_noise_std: float = 0.5
    image_dropout: float = 0.05  # per-sample probability of zeroed first-frame latents
    null_action_prob: float = 0.1  # per-sample probability of the null-action token


@dataclass
class OptimConfig:
    learning_rate: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    weight_decay: float = 1e-3
    eps: float = 1e-8
    max_grad_norm: float = 1.0
    lr_scheduler: str = "cosine_with_restarts"  # any diffusers.optimization name
    lr_warmup_steps: int = 1000
    lr_num_cycles: int = 1


@dataclass
class EMAConfig:
    enabled: bool = False
    decay: float = 0.9999
    update_after_step: int = 0
    use_ema_warmup: bool = False


@dataclass
class TrainConfig:
    max_steps: int = 30000  # optimizer steps
    batch_size: int = 1  # per device
    gradient_accumulation_steps: int = 1
    mixed_precision: str = "auto"  # auto (bf16 on GPU, no on CPU), bf16, fp16, no
    checkpoint_every: int = 1000
    checkpoints_total_limit: int | None = 3
    log_every: int = 10
    ema: EMAConfig = field(default_factory=EMAConfig)


@dataclass
class ValidationConfig:
    every: int = 1000  # 0: never
    num_clips: int = 4  # held-out clips generated each time
    num_inference_steps: int = 50
    seed: int = 0
    save_videos: bool = True
    fps: int = 5


@dataclass
class Config:
    output_dir: str = "outputs/orv-train"
    seed: int = 42
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    text: TextConfig = field(default_factory=TextConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    tracker: str = "tensorboard"  # "tensorboard" or "none"

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CHOICES = {
    "model.trainable": ("all", "orv"),
    "data.conditions_source": ("occupancy", "episode"),
    "data.condition_encoding": (None, "engine", "orv-official"),
    "train.mixed_precision": ("auto", "no", "bf16", "fp16"),
    "tracker": ("tensorboard", "none"),
}
CONDITION_KINDS = ("depth", "semantics")


def config_from_dict(values: dict, overrides=(), base_dir: str | Path | None = None, check_paths: bool = True) -> Config:
    """Build and check a :class:`Config`. Relative paths stay relative to the working directory."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"the config must be a mapping of keys, got {type(values).__name__}")
    config = build_dataclass(Config, apply_overrides(values, overrides))
    validate(config, check_paths=check_paths)
    return config


def load_config(path: str | Path, overrides=(), check_paths: bool = True) -> Config:
    return config_from_dict(read_yaml_mapping(path), overrides, check_paths=check_paths)


# ---------------------------------------------------------------- checks


def _positive(config: Config, *keys: str, allow_zero: bool = False) -> None:
    for key in keys:
        value = _get(config, key)
        if value is None:
            continue
        if value < 0 or (value == 0 and not allow_zero):
            raise ConfigError(f"{key}: must be {'>= 0' if allow_zero else '> 0'}, got {value}")


def _get(config, dotted: str):
    node = config
    for part in dotted.split("."):
        node = getattr(node, part)
    return node


def _exists(key: str, value: str | None, what: str) -> None:
    if value is None or value == "":
        raise ConfigError(f"{key}: required ({what})")
    if not Path(value).expanduser().exists():
        raise ConfigError(f"{key}: path {value} does not exist ({what})")


def validate(config: Config, check_paths: bool = True) -> None:
    """Value and path checks that the types alone do not catch."""
    from orv_engine.data.clips import PRESETS, ClipConfig

    for key, allowed in CHOICES.items():
        if _get(config, key) not in allowed:
            raise ConfigError(f"{key}: must be one of {', '.join(map(str, allowed))}, got {_get(config, key)!r}")
    for kind in config.model.condition_kinds:
        if kind not in CONDITION_KINDS:
            raise ConfigError(f"model.condition_kinds: unknown kind {kind!r} (known: {', '.join(CONDITION_KINDS)})")
    if config.data.preset not in PRESETS:
        raise ConfigError(f"data.preset: unknown preset {config.data.preset!r} (known: {', '.join(PRESETS)})")
    clip_fields = {f.name for f in dataclasses.fields(ClipConfig)}
    for key in config.data.clip:
        if key not in clip_fields:
            raise ConfigError(f"data.clip.{key}: unknown key (known here: {', '.join(sorted(clip_fields))})")
    try:
        dataclasses.replace(PRESETS[config.data.preset], **config.data.clip)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"data.clip: {e}") from None
    _positive(config, "train.max_steps", "train.batch_size", "train.gradient_accumulation_steps",
              "train.checkpoint_every", "train.log_every", "optim.learning_rate", "validation.num_clips",
              "validation.num_inference_steps", "validation.fps", "optim.lr_num_cycles", "data.max_clips",
              "train.checkpoints_total_limit")
    _positive(config, "validation.every", "optim.lr_warmup_steps", "data.first_frame_variants", "optim.weight_decay", "optim.max_grad_norm",
              "data.num_workers", allow_zero=True)
    for key in ("loss.image_dropout", "loss.null_action_prob", "train.ema.decay"):
        if not 0.0 <= _get(config, key) <= 1.0:
            raise ConfigError(f"{key}: must be in [0, 1], got {_get(config, key)}")
    if len(config.optim.betas) != 2 or not all(0 <= b < 1 for b in config.optim.betas):
        raise ConfigError(f"optim.betas: must be two numbers in [0, 1), got {config.optim.betas}")
    if config.data.first_frame_variants and not config.data.latents_dir:
        raise ConfigError("data.first_frame_variants: only applies with data.latents_dir (pre-encoded latents)")
    from diffusers.optimization import SchedulerType

    names = [s.value for s in SchedulerType]
    if config.optim.lr_scheduler not in names:
        raise ConfigError(f"optim.lr_scheduler: unknown {config.optim.lr_scheduler!r} (known: {', '.join(names)})")
    if config.tracker == "tensorboard":
        import importlib.util

        if importlib.util.find_spec("tensorboard") is None and importlib.util.find_spec("tensorboardX") is None:
            raise ConfigError("tracker: 'tensorboard' needs the tensorboard package (pip install tensorboard), "
                              "or set tracker: none")
    if not check_paths:
        return
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

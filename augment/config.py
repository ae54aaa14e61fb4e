"""The ``orv-augment`` configuration: one YAML file, checked whole before any work starts.

Every key has a type and a default here; an unknown key or a wrong type fails at once
naming the dotted key (``orv_engine.config_validation``); paths that must exist are
checked by :func:`check_inputs` before a model is loaded. ``orv-augment --write-config``
prints the defaults with these comments' meaning in ``docs/augment.md``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from orv_engine.config_validation import ConfigError, apply_overrides, build_dataclass, read_yaml_mapping

# Appearance prompts for new first frames (paper Sec. 9 / 10.3.1: new surfaces, lighting and
# backgrounds for the same geometry). Variant k of an episode uses prompts[k % len(prompts)].
DEFAULT_PROMPTS = [
    "a light oak wooden table top, soft daylight from a window, white wall behind",
    "a dark walnut table with a green cloth, warm evening lamp light, brick wall background",
    "a white laminate kitchen counter, bright overhead fluorescent light, tiled backsplash",
    "a grey concrete work bench, cool bluish light, cluttered lab shelves behind",
    "a marble countertop, natural sunlight with soft shadows, beige cabinets behind",
]


@dataclass
class SourceConfig:
    path: str = ""  # a local RLDS/TFDS dataset folder (.../NAME/VERSION)
    dataset: str | None = None  # schema kind (bridge, droid, rt1, orv_tabletop); None: from the TFDS name
    split: str = "train"
    camera: str | None = None  # None: the schema's main camera
    max_episodes: int | None = None  # the first N episodes in reading order
    max_steps: int | None = None  # cut longer episodes to their first N steps (cost control)


@dataclass
class ControlNetConfig:
    path: str = ""  # a diffusers FluxControlNetModel folder (e.g. XLabs' depth ControlNet, diffusers format)
    condition: str = "depth"  # which rendered map it reads: depth | semantics
    scale: float = 0.7  # controlnet_conditioning_scale


@dataclass
class FirstFramesConfig:
    flux: str = ""  # a FLUX.1-dev pipeline folder (transformer/, vae/, text_encoder(_2)/, tokenizer(_2)/, scheduler/)
    controlnets: list[ControlNetConfig] = field(default_factory=lambda: [ControlNetConfig()])
    variants_per_episode: int = 3  # paper Sec. 10.3.1: three appearances per source video
    prompts: list[str] = field(default_factory=lambda: list(DEFAULT_PROMPTS))
    prompt_template: str = "{appearance}; a robot arm on the table, photo"  # also knows {instruction}
    height: int | None = None  # FLUX resolution; None: the rollout's (then resized to it anyway)
    width: int | None = None
    num_inference_steps: int = 28
    guidance_scale: float = 3.5  # FLUX.1-dev's distilled guidance
    max_sequence_length: int = 512


@dataclass
class RolloutConfig:
    model: str = ""  # an ORV pipeline folder (ORVPipeline.save_pretrained layout), or CogVideoX-2B's with ``transformer``
    # An ORV transformer folder to use instead of the pipeline folder's: e.g. the official ORV
    # weights (converted on load) with ``model`` a CogVideoX-2B folder for T5, VAE and scheduler.
    transformer: str | None = None
    height: int = 320  # Bridge preset (paper Table 9)
    width: int = 480
    chunk_frames: int = 16  # frames per generated chunk (4k); chunks chain on their last frame
    # None: what the world model's checkpoint records (transformer.preprocessing: 50 DPM steps
    # and no text CFG for the official ORV weights and this project's own)
    num_inference_steps: int | None = None
    guidance_scale: float | None = None  # text CFG (1.0 = off)
    action_guidance_scale: float = 1.0  # action CFG (1.0 = off)
    fps: int = 5  # of the saved mp4 (BridgeV2 is recorded at 5 Hz)


@dataclass
class ScoreConfig:
    enabled: bool = True
    checks_only: bool = False  # cheap checks only, no VLM: captions come from the source instruction
    filter: dict[str, Any] = field(default_factory=dict)  # an orv-filter config (see docs/filtering.md)


@dataclass
class ExportConfig:
    enabled: bool = True
    name: str = "orv_bridge"
    version: str = "1.0.0"
    image_size: list[int] = field(default_factory=lambda: [256, 256])
    val_fraction: float = 0.0


@dataclass
class MergeConfig:
    bridge: str | None = None  # the BridgeV2 TFDS folder; None: no merge stage
    synthetic_fraction: float = 0.25  # paper Sec. 10.3.2: ~25% ORV data
    physical: bool = False  # also write one merged dataset (else: mixture weights + shared statistics)


@dataclass
class RayConfig:
    address: str | None = None  # "auto" for a running cluster; None: start a local one
    num_actors: int | None = None  # None: one per GPU of the cluster (or 1 on CPU)
    num_gpus_per_actor: float = 1.0  # 0 on CPU-only clusters
    num_cpus_per_actor: float = 1.0


@dataclass
class AugmentConfig:
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "bfloat16"  # the models' dtype on GPU (CPU always runs float32)
    source: SourceConfig = field(default_factory=SourceConfig)
    first_frames: FirstFramesConfig = field(default_factory=FirstFramesConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    score: ScoreConfig = field(default_factory=ScoreConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    merge: MergeConfig = field(default_factory=MergeConfig)
    ray: RayConfig = field(default_factory=RayConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path, comments: bool = False) -> Path:
        """Write as YAML; with ``comments`` every key carries its explanation from this module."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = commented_yaml(self) if comments else yaml.safe_dump(self.to_dict(), sort_keys=False, width=110)
        path.write_text(text)
        return path

    def filter_config(self):
        """The scoring stage's :class:`filtering.config.FilterConfig` (checked)."""
        from filtering.config import FilterConfig  # noqa: PLC0415

        try:
            return FilterConfig.from_dict(self.score.filter)
        except (ValueError, TypeError) as err:
            raise ConfigError(f"score.filter: {err}") from None


CHOICES = {"device": None, "dtype": ("bfloat16", "float16", "float32")}
CONDITIONS = ("depth", "semantics")


def validate(config: AugmentConfig) -> None:
    """Value checks the types alone do not catch (paths are checked by :func:`check_inputs`)."""
    if config.dtype not in CHOICES["dtype"]:
        raise ConfigError(f"dtype: expected one of {', '.join(CHOICES['dtype'])}, got {config.dtype!r}")
    if not (config.device in ("auto", "cpu", "cuda") or config.device.startswith("cuda:")):
        raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {config.device!r}")
    ff, ro = config.first_frames, config.rollout
    if ff.variants_per_episode < 1:
        raise ConfigError(f"first_frames.variants_per_episode: must be >= 1, got {ff.variants_per_episode}")
    if not ff.prompts:
        raise ConfigError("first_frames.prompts: give at least one appearance prompt")
    if not ff.controlnets:
        raise ConfigError("first_frames.controlnets: give at least one ControlNet")
    for i, cn in enumerate(ff.controlnets):
        if cn.condition not in CONDITIONS:
            raise ConfigError(f"first_frames.controlnets[{i}].condition: expected depth or semantics, got {cn.condition!r}")
    try:
        ff.prompt_template.format(appearance="", instruction="")
    except (KeyError, IndexError) as err:
        raise ConfigError(f"first_frames.prompt_template: unknown field {err} (use {{appearance}}, {{instruction}})") from None
    if ro.chunk_frames < 4 or ro.chunk_frames % 4:
        raise ConfigError(f"rollout.chunk_frames: must be a positive multiple of 4 (4k frames: the VAE takes 4k+1), "
                          f"got {ro.chunk_frames}")
    for key in ("height", "width", "num_inference_steps", "fps"):
        if getattr(ro, key) is not None and getattr(ro, key) < 1:
            raise ConfigError(f"rollout.{key}: must be >= 1, got {getattr(ro, key)}")
    for key in ("max_episodes", "max_steps"):
        value = getattr(config.source, key)
        if value is not None and value < 1:
            raise ConfigError(f"source.{key}: must be >= 1 (or null), got {value}")
    if len(config.export.image_size) != 2:
        raise ConfigError(f"export.image_size: expected [height, width], got {config.export.image_size}")
    if not 0 < config.merge.synthetic_fraction < 1:
        raise ConfigError(f"merge.synthetic_fraction: must be in (0, 1), got {config.merge.synthetic_fraction}")
    if config.score.enabled:
        filter_config = config.filter_config()
        if not config.score.checks_only and not filter_config.model:
            raise ConfigError("score.filter.model: required for VLM scoring (a local Qwen2.5-VL folder or the served "
                              "name), or set score.checks_only: true")


def config_from_dict(values: dict | None, overrides=()) -> AugmentConfig:
    config = build_dataclass(AugmentConfig, apply_overrides(values or {}, overrides))
    validate(config)
    return config


def load_config(path, overrides=()) -> AugmentConfig:
    return config_from_dict(read_yaml_mapping(path), overrides)


def _need(key: str, value: str | None, what: str, problems: list[str]) -> None:
    if not value:
        problems.append(f"{key}: required ({what})")
    elif not Path(value).expanduser().exists():
        problems.append(f"{key}: {value} does not exist ({what})")


def check_inputs(config: AugmentConfig, stages) -> None:
    """Every checkpoint and dataset the given stages read must exist: fail before any work."""
    problems: list[str] = []
    stages = set(stages)
    if "sources" in stages:
        _need("source.path", config.source.path, "the source RLDS dataset", problems)
    if "first_frames" in stages:
        _need("first_frames.flux", config.first_frames.flux, "a FLUX.1-dev pipeline folder", problems)
        for i, cn in enumerate(config.first_frames.controlnets):
            _need(f"first_frames.controlnets[{i}].path", cn.path, "a FluxControlNetModel folder", problems)
    if "rollouts" in stages:
        _need("rollout.model", config.rollout.model, "an ORV pipeline folder", problems)
    if "scores" in stages and config.score.enabled and not config.score.checks_only:
        fc = config.filter_config()
        if fc.backend in ("vllm", "transformers"):
            _need("score.filter.model", fc.model, f"a local VLM folder for the {fc.backend} backend", problems)
    if "merge" in stages and config.merge.bridge:
        _need("merge.bridge", config.merge.bridge, "the BridgeV2 TFDS folder", problems)
    if problems:
        raise ConfigError("missing inputs, nothing was started:\n  " + "\n  ".join(problems))


def _field_comments() -> dict[tuple[str, str], str]:
    """``(class name, field) -> comment`` from the ``# ...`` after each field in this file."""
    import inspect  # noqa: PLC0415
    import re  # noqa: PLC0415
    import sys  # noqa: PLC0415

    out, current = {}, None
    for line in inspect.getsource(sys.modules[__name__]).splitlines():
        if m := re.match(r"class (\w+)", line):
            current = m.group(1)
        elif current and (m := re.match(r"    (\w+): [^#]*#\s*(.+)$", line)):
            out[(current, m.group(1))] = m.group(2).strip()
    return out


def commented_yaml(config: AugmentConfig) -> str:
    """The config as YAML with each key's comment (what ``orv-augment --write-config`` prints)."""
    comments = _field_comments()
    lines = ["# orv-augment config: every key with its default. Unknown keys and wrong types are refused.",
             "# Run: orv-augment run --config THIS.yaml --run-dir RUN (docs/augment.md)"]

    def emit(obj, indent: int) -> None:
        for f in dataclasses.fields(obj):
            value = getattr(obj, f.name)
            note = comments.get((type(obj).__name__, f.name))
            pad = "  " * indent
            if dataclasses.is_dataclass(value):
                lines.append(f"{pad}{f.name}:" + (f"  # {note}" if note else ""))
                emit(value, indent + 1)
                continue
            if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
                value = [dataclasses.asdict(v) for v in value]
            text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
            text = text[:-4].rstrip() if text.endswith("\n...") else text.removesuffix("...").strip()
            lines.append(f"{pad}{f.name}: {text}" + (f"  # {note}" if note else ""))

    emit(config, 0)
    return "\n".join(lines) + "\n"

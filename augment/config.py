"""The ``orv-augment`` configuration: one YAML file, checked whole before any work starts.

Every key has a type, a default and its explanation (``field(metadata={"help": ...})``)
here; reading, overrides and type checks are :mod:`orv_engine.config_validation`'s (an unknown
key or a wrong type fails at once naming the dotted key), each section checks its values in
``__post_init__``, :func:`check_required` the values the defaults leave empty, and
:func:`check_inputs` the paths a stage reads, before a model is loaded.
``orv-augment --write-config`` writes the defaults with every explanation.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from augment.first_frames.controlnets import controlnet_config, controlnet_set_problem, flux_axes_dims_rope
from filtering.config import FilterConfig
from orv_engine import config_validation
from orv_engine.config_validation import ConfigError, check_choices, check_range, option
from orv_engine.weight_files import CheckpointError, check_weight_files

# Appearance prompts for new first frames (paper Sec. 9 / 10.3.1: new surfaces, lighting and
# backgrounds for the same geometry). Variant k of an episode uses prompts[k % len(prompts)].
DEFAULT_PROMPTS = [
    "a light oak wooden table top, soft daylight from a window, white wall behind",
    "a dark walnut table with a green cloth, warm evening lamp light, brick wall background",
    "a white laminate kitchen counter, bright overhead fluorescent light, tiled backsplash",
    "a grey concrete work bench, cool bluish light, cluttered lab shelves behind",
    "a marble countertop, natural sunlight with soft shadows, beige cabinets behind",
]
HEADER = ("orv-augment config: every key with its default. Unknown keys and wrong types are refused.",
          "Run: orv-augment run --config THIS.yaml --run-dir RUN (docs/augment.md)")


@dataclass
class SourceConfig:
    path: str = option("", help="a local RLDS/TFDS dataset folder (.../NAME/VERSION)")
    dataset: str | None = option(None, help="schema kind (bridge, droid, rt1, orv_tabletop); null: from the "
                                            "TFDS name")
    split: str = option("train", help="the TFDS split read")
    camera: str | None = option(None, help="null: the schema's main camera")
    max_episodes: int | None = option(None, help="the first N episodes in reading order")
    max_steps: int | None = option(None, help="cut longer episodes to their first N steps (cost control)")
    occupancy: str | None = option(None, help="an occupancy store (orv-occupancy) of this dataset: the conditions "
                                              "are rendered from it (RGB-only datasets: BridgeV2, RT-1); null: from "
                                              "the episodes' own depth and cameras")

    def __post_init__(self):
        check_range(self, "max_episodes", "max_steps", low=1, low_open=False)


@dataclass
class ControlNetConfig:
    path: str = option("", help="a diffusers FluxControlNetModel folder, or one of XLabs' released single-file "
                                "ControlNets (e.g. flux-controlnet-depth-v3.safetensors, converted on load; "
                                "orv-convert xlabs-controlnet writes the folder once)")
    condition: Literal["depth", "semantics"] = option("depth", help="which rendered map it reads: depth | "
                                                                    "semantics")
    scale: float = option(0.7, help="controlnet_conditioning_scale")

    def __post_init__(self):
        check_choices(self)


@dataclass
class FirstFramesConfig:
    flux: str = option("", help="a FLUX.1-dev pipeline folder (transformer/, vae/, text_encoder(_2)/, "
                                "tokenizer(_2)/, scheduler/)")
    controlnets: list[ControlNetConfig] = option(factory=lambda: [ControlNetConfig()],
                                                 help="one or more ControlNets (several: FluxMultiControlNetModel)")
    variants_per_episode: int = option(3, help="paper Sec. 10.3.1: three appearances per source video")
    replay: bool = option(True, help="also roll each episode out from its own real first frame (unit KEY__replay, "
                                     "not painted) under the same actions and maps: ground truth vs rollout, "
                                     "PSNR/SSIM in the scores and the report (exported only with export.replay)")
    prompts: list[str] = option(factory=lambda: list(DEFAULT_PROMPTS),
                                help="appearance prompts: variant k of an episode uses prompts[k % len(prompts)] "
                                     "(paper Sec. 9 / 10.3.1: new surfaces, lighting and backgrounds)")
    prompt_template: str = option("{appearance}; a robot arm on the table, photo", help="also knows {instruction}")
    height: int | None = option(None, help="FLUX resolution; null: the rollout's (then resized to it anyway)")
    width: int | None = option(None, help="FLUX resolution; null: the rollout's")
    num_inference_steps: int = option(28, help="FLUX sampler steps")
    guidance_scale: float = option(3.5, help="FLUX.1-dev's distilled guidance")
    max_sequence_length: int = option(512, help="T5 tokens of the FLUX prompt")

    def __post_init__(self):
        check_range(self, "variants_per_episode", low=1, low_open=False)
        if not self.prompts:
            raise ConfigError("prompts: give at least one appearance prompt")
        if not self.controlnets:
            raise ConfigError("controlnets: give at least one ControlNet")
        try:
            self.prompt_template.format(appearance="", instruction="")
        except (KeyError, IndexError) as err:
            raise ConfigError(f"prompt_template: unknown field {err} (use {{appearance}}, {{instruction}})") from None


@dataclass
class RolloutConfig:
    model: str = option("", help="an ORV pipeline folder (ORVPipeline.save_pretrained layout), or CogVideoX-2B's "
                                 "with transformer")
    transformer: str | None = option(
        None, help="an ORV transformer folder to use instead of the pipeline folder's: e.g. the official ORV "
                   "weights (converted on load) with model a CogVideoX-2B folder for T5, VAE and scheduler")
    height: int = option(320, help="Bridge preset (paper Table 9)")
    width: int = option(480, help="Bridge preset (paper Table 9)")
    chunk_frames: int = option(16, help="frames per generated chunk (4k); chunks chain on their last frame")
    preset: Literal["paper", "fast"] = option(
        "paper", help="paper: the checkpoint's sampler (50 DPM steps); fast: 12 DPM steps, 4x less transformer "
                      "compute at no measured quality loss (docs/fast_rollouts.md); num_inference_steps overrides "
                      "the preset's steps")
    batch_units: int = option(4, help="units (variants of one episode) rolled out together per forward when "
                                      "their shapes agree; 1: one at a time")
    num_inference_steps: int | None = option(
        None, help="null: the preset's (paper: what the world model's checkpoint records, "
                   "transformer.preprocessing: 50 DPM steps and no text CFG for the official ORV weights and this "
                   "project's own)")
    guidance_scale: float | None = option(None, help="text CFG (1.0 = off); null: the checkpoint's")
    action_guidance_scale: float = option(1.0, help="action CFG (1.0 = off)")
    fps: int = option(5, help="of the saved mp4 (BridgeV2 is recorded at 5 Hz)")

    def __post_init__(self):
        if self.chunk_frames < 4 or self.chunk_frames % 4:
            raise ConfigError(f"chunk_frames: must be a positive multiple of 4 (4k frames: the VAE takes 4k+1), "
                              f"got {self.chunk_frames}")
        check_range(self, "height", "width", "num_inference_steps", "fps", "batch_units", low=1, low_open=False)
        check_choices(self)


@dataclass
class ScoreConfig:
    enabled: bool = option(True, help="score the rollouts (cheap checks, then the VLM)")
    checks_only: bool = option(False, help="cheap checks only, no VLM: captions come from the source instruction")
    filter: dict[str, Any] = option(factory=dict, help="an orv-filter config (see docs/filtering.md)")

    def __post_init__(self):
        if self.enabled:
            self.filter_config()

    def filter_config(self) -> FilterConfig:
        """The scoring stage's :class:`filtering.config.FilterConfig` (checked)."""
        try:
            return FilterConfig.from_dict(self.filter)
        except ConfigError as err:
            raise ConfigError(f"filter.{err}") from None


@dataclass
class ExportConfig:
    enabled: bool = option(True, help="write the kept rollouts as an RLDS dataset in BridgeV2's schema")
    name: str = option("orv_bridge", help="the TFDS name of the export")
    version: str = option("1.0.0", help="the TFDS version of the export")
    image_size: list[int] = option(factory=lambda: [256, 256], help="[height, width] of the exported frames")
    val_fraction: float = option(0.0, help="share of the episodes written to the val split")
    replay: bool = option(False, help="also export the replay rollouts (first_frames.replay) the filter keeps; "
                                      "false: they are evaluation only (same appearance as the real episode, "
                                      "which the mixture already has) and stay out of the selection")

    def __post_init__(self):
        if len(self.image_size) != 2:
            raise ConfigError(f"image_size: expected [height, width], got {self.image_size}")


@dataclass
class MergeConfig:
    bridge: str | None = option(None, help="the BridgeV2 TFDS folder; null: no merge stage")
    synthetic_fraction: float = option(0.25, help="paper Sec. 10.3.2: ~25% ORV data")
    physical: bool = option(False, help="also write one merged dataset (else: mixture weights + shared statistics)")

    def __post_init__(self):
        check_range(self, "synthetic_fraction", high=1, high_open=True)


@dataclass
class RayConfig:
    address: str | None = option(None, help="auto for a running cluster; null: start a local one")
    num_actors: int | None = option(None, help="null: one per GPU of the cluster (or 1 on CPU)")
    num_gpus_per_actor: float = option(1.0, help="0 on CPU-only clusters")
    num_cpus_per_actor: float = option(1.0, help="CPUs reserved per actor")


@dataclass
class AugmentConfig:
    seed: int = option(0, help="seed of the prompts, FLUX and ORV noise (per unit, so reruns are the same)")
    device: str = option("auto", help="auto | cpu | cuda | cuda:N")
    dtype: Literal["bfloat16", "float16", "float32"] = option("bfloat16", help="the models' dtype on GPU (CPU "
                                                                               "always runs float32)")
    source: SourceConfig = option(factory=SourceConfig, help="the episodes to augment")
    first_frames: FirstFramesConfig = option(factory=FirstFramesConfig, help="new first frames: FLUX + ControlNet")
    rollout: RolloutConfig = option(factory=RolloutConfig, help="ORV rollouts under the episode's actions")
    score: ScoreConfig = option(factory=ScoreConfig, help="cheap checks + VLM captions and scores")
    export: ExportConfig = option(factory=ExportConfig, help="kept rollouts -> RLDS")
    merge: MergeConfig = option(factory=MergeConfig, help="the mixture with BridgeV2")
    ray: RayConfig = option(factory=RayConfig, help="Ray actors for first frames and rollouts (--ray)")

    def __post_init__(self):
        check_choices(self)
        if not (self.device in ("auto", "cpu", "cuda") or self.device.startswith("cuda:")):
            raise ConfigError(f"device: expected auto, cpu, cuda or cuda:N, got {self.device!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path, comments: bool = False) -> Path:
        """Write as YAML; with ``comments`` every key carries its explanation."""
        return config_validation.write_config(self, path, comments, HEADER)

    def filter_config(self) -> FilterConfig:
        """The scoring stage's :class:`filtering.config.FilterConfig` (checked)."""
        try:
            return self.score.filter_config()
        except ConfigError as err:
            raise ConfigError(f"score.{err}") from None


def check_required(config: AugmentConfig) -> None:
    """The values a run needs that the defaults leave empty (checked at load)."""
    if config.score.enabled and not config.score.checks_only and not config.filter_config().model:
        raise ConfigError("score.filter.model: required for VLM scoring (a local Qwen2.5-VL folder or the served "
                          "name), or set score.checks_only: true")


def config_from_dict(values: dict | None, overrides=()) -> AugmentConfig:
    return config_validation.config_from_dict(AugmentConfig, values, overrides, check_required)


def load_config(path, overrides=()) -> AugmentConfig:
    return config_validation.load_config(AugmentConfig, path, overrides, check_required)


def _need(key: str, value: str | None, what: str, problems: list[str]) -> None:
    if not value:
        problems.append(f"{key}: required ({what})")
    elif not Path(value).expanduser().exists():
        problems.append(f"{key}: {value} does not exist ({what})")
    else:
        try:
            check_weight_files(value)
        except CheckpointError as err:
            problems.append(f"{key}: {err}")


def _check_controlnets(first_frames: FirstFramesConfig, problems: list[str]) -> None:
    """Each path a loadable ControlNet (header/config only), the set one that runs together."""
    axes_dims_rope = flux_axes_dims_rope(first_frames.flux)
    configs, names = [], []
    for i, cn in enumerate(first_frames.controlnets):
        key = f"first_frames.controlnets[{i}].path"
        _need(key, cn.path, "a FluxControlNetModel folder or an XLabs ControlNet .safetensors file", problems)
        if not cn.path or not Path(cn.path).expanduser().exists():
            continue
        try:
            configs.append(controlnet_config(cn.path, axes_dims_rope))
            names.append(f"first_frames.controlnets[{i}] ({cn.path})")
        except CheckpointError as err:
            problems.append(f"{key}: {err}")
    if len(configs) == len(first_frames.controlnets):
        problem = controlnet_set_problem(configs, names)
        if problem:
            problems.append(f"first_frames.controlnets: {problem}")


def check_inputs(config: AugmentConfig, stages) -> None:
    """Every checkpoint and dataset the given stages read must exist: fail before any work."""
    problems: list[str] = []
    stages = set(stages)
    if "sources" in stages:
        _need("source.path", config.source.path, "the source RLDS dataset", problems)
        if config.source.occupancy and not (Path(config.source.occupancy) / "store.json").is_file():
            problems.append(f"source.occupancy: {config.source.occupancy} is not an occupancy store (no store.json; "
                            "orv-occupancy run --store writes one)")
    if "first_frames" in stages:
        _need("first_frames.flux", config.first_frames.flux, "a FLUX.1-dev pipeline folder", problems)
        _check_controlnets(config.first_frames, problems)
    if "rollouts" in stages:
        _need("rollout.model", config.rollout.model, "an ORV pipeline folder", problems)
        if config.rollout.transformer:
            _need("rollout.transformer", config.rollout.transformer, "an ORV transformer folder", problems)
    if "scores" in stages and config.score.enabled and not config.score.checks_only:
        fc = config.filter_config()
        if fc.backend in ("vllm", "transformers"):
            _need("score.filter.model", fc.model, f"a local VLM folder for the {fc.backend} backend", problems)
    if "merge" in stages and config.merge.bridge:
        _need("merge.bridge", config.merge.bridge, "the BridgeV2 TFDS folder", problems)
    if problems:
        raise ConfigError("missing or unusable inputs, nothing was started:\n  " + "\n  ".join(problems))

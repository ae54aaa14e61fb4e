"""``orv-augment demo`` / ``make demo``: the whole loop on the embedded dataset.

The world model: the small ORV trained here (``orv_engine/pretrained/small_orv``,
:mod:`orv_engine.small`) when its weights are present, else a tiny random-weight ORV pipeline
written in the real on-disk format (``OUT/models/orv``); another ``ORVPipeline`` folder can be
named (``orv-augment demo --world-model PATH``, ``run_demo(world_model=...)``). A trained
model rolls out at the size, chunk length and sampler steps its checkpoint records
(:func:`world_model_settings`). The painter: the small FLUX + XLabs-style ControlNets
(depth, semantics) trained here (``orv_engine/pretrained/small_painter``,
:mod:`orv_engine.small.painter`) when its weights are present, else a tiny random-weight FLUX
and two ControlNets in their real formats (``OUT/models``).

Writes a config pointing at the models and the embedded ManiSkill3 ``orv_tabletop`` episodes
(``OUT/demo.yaml``) and runs every stage into ``OUT/run``. Each episode also gets its
``replay`` unit (its real first frame rolled out, :mod:`augment.replay`), so the report
compares ground truth, replay and painted variants. Scoring runs the cheap checks only (a
random VLM would caption nonsense; two thresholds are relaxed since the models are small or
random, see :func:`demo_config`); a real run points ``score.filter.model`` at
Qwen2.5-VL. Rerunning resumes (another world model or setting starts the run over).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import yaml

from augment.config import config_from_dict
from augment.runner import AugmentRun
from orv_engine.config_validation import ConfigError
from orv_engine.models.loading import read_transformer_config
from orv_engine.models.transformer_orv_mv import ORVMultiViewTransformer3DModel
from orv_engine.preprocessing import ORVPreprocessing
from orv_engine.small import SMALL_ORV_DIR, small_orv_available
from orv_engine.small.painter import (DEFAULT_SCALES, MAX_SEQUENCE_LENGTH, NUM_INFERENCE_STEPS, PROMPT_TEMPLATE,
                                      SMALL_PAINTER_DIR, appearance_prompts, painter_paths, small_painter_available)
from orv_engine.testing.tiny_flux import build_tiny_flux, build_tiny_xlabs_controlnet
from orv_engine.testing.tiny_orv import save_tiny_orv_pipeline

DEMO_DATASET = Path(__file__).resolve().parents[1] / "orv_engine" / "demo_data" / "orv_tabletop" / "1.0.0"
TINY_ROLLOUT = {"height": 64, "width": 64, "chunk_frames": 8, "num_inference_steps": 4}
TINY_MAX_STEPS = 24
TRAINED_CHUNKS = 2  # a trained model rolls out two chained chunks per episode: 2 * chunk_frames - 1 steps


@dataclass(frozen=True)
class WorldModel:
    """The demo's ORV: ``path`` None for the tiny random one (written into ``OUT/models/orv``)."""

    path: Path | None
    description: str


@dataclass(frozen=True)
class Painter:
    """The demo's first-frame painter: ``root`` None for the tiny random one (``OUT/models``)."""

    root: Path | None
    description: str


def resolve_painter() -> Painter:
    """The shipped small painter if present, else the tiny random one."""
    if small_painter_available():
        return Painter(SMALL_PAINTER_DIR, f"the small FLUX + depth/semantics ControlNets trained here "
                                          f"({SMALL_PAINTER_DIR})")
    return Painter(None, f"a tiny random-weight FLUX + ControlNets (no trained weights at {SMALL_PAINTER_DIR}): "
                         "the painted first frames are noise")


def first_frames_config(models: Path, variants: int, replay: bool, painter: Painter | None = None) -> dict:
    """``first_frames`` of the demo config: the trained painter's paths, scales, steps, T5 length
    and new appearance prompts in its vocabulary (``orv_engine.small.painter``), or the tiny
    random one's under ``models`` (the product's default prompts)."""
    if painter is not None and painter.root is not None:
        paths = painter_paths(painter.root)
        return {"flux": str(paths["flux"]),
                "controlnets": [{"path": str(paths[k]), "condition": k, "scale": DEFAULT_SCALES[k]}
                                for k in ("depth", "semantics")],
                "variants_per_episode": variants, "num_inference_steps": NUM_INFERENCE_STEPS,
                "max_sequence_length": MAX_SEQUENCE_LENGTH, "replay": replay,
                "prompts": appearance_prompts(max(variants, 1)), "prompt_template": PROMPT_TEMPLATE}
    return {"flux": str(models / "flux"),
            "controlnets": [{"path": str(models / "controlnet-depth"), "condition": "depth", "scale": 0.7},
                            {"path": str(models / "controlnet-semantics"), "condition": "semantics", "scale": 0.5}],
            "variants_per_episode": variants, "num_inference_steps": 4, "max_sequence_length": 128,
            "replay": replay}


def resolve_world_model(world_model: str | Path | None = None) -> WorldModel:
    """A given folder, else the shipped small ORV if present, else the tiny random one."""
    if world_model is not None:
        path = Path(world_model).expanduser().resolve()
        if not (path / "model_index.json").is_file():
            raise ConfigError(f"--world-model {world_model}: not an ORVPipeline folder (no model_index.json)")
        return WorldModel(path, f"the ORV pipeline at {path}")
    if small_orv_available():
        return WorldModel(SMALL_ORV_DIR, f"the small ORV trained here ({SMALL_ORV_DIR}, variant (c): actions + "
                                         "occupancy depth/semantics)")
    return WorldModel(None, f"a tiny random-weight ORV (no trained weights at {SMALL_ORV_DIR}): the rollouts are "
                            "noise-like")


def world_model_settings(folder: str | Path) -> dict:
    """``rollout`` settings a pipeline folder's checkpoint implies: its training size and clip
    length (``transformer.config.preprocessing``; without one: the sample size times the
    VAE's scale and the sample frames) and its sampler steps (the checkpoint's).

    ``chunk_frames`` is the clip's frames minus one: a checkpoint trained on ``4k + 1``-frame
    clips (17) generates ``4k`` frames (16) per chunk from ``4k`` actions; the VAE sees the
    ``4k + 1``-th (:mod:`orv_engine.pipelines.long_horizon` chains chunks on their last frame).
    """
    folder = Path(folder)
    config, _, _ = read_transformer_config(folder / "transformer", ORVMultiViewTransformer3DModel, {})
    pre = ORVPreprocessing.from_dict(config.get("preprocessing"))  # what the pipeline samples with
    if config.get("preprocessing"):
        height, width, frames = pre.height, pre.width, pre.num_frames
    else:
        vae = json.loads((folder / "vae" / "config.json").read_text())
        scale = 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1)
        height, width = config["sample_height"] * scale, config["sample_width"] * scale
        frames = config["sample_frames"]
    if (frames - 1) % 4 or frames < 5:
        raise ConfigError(f"{folder}: {frames}-frame clips are not 4k + 1 frames; cannot derive chunk_frames")
    return {"height": int(height), "width": int(width), "chunk_frames": int(frames - 1),
            "num_inference_steps": pre.num_inference_steps}


def demo_config(models: Path, episodes: int, variants: int, world_model: str | Path | None = None,
                num_inference_steps: int | None = None, replay: bool = True, painter: Painter | None = None) -> dict:
    """The demo's config. ``world_model`` None: the tiny random ORV at ``models/orv`` (64x64,
    8-frame chunks, 4 steps, 24 episode steps); a folder: its own settings
    (:func:`world_model_settings`) over two chunks. ``num_inference_steps`` overrides either
    (the rollout's). ``painter``: a trained one (:func:`resolve_painter`); None: the tiny one."""
    if world_model is None:
        rollout = {"model": str(models / "orv"), **TINY_ROLLOUT}
        max_steps = TINY_MAX_STEPS
    else:
        rollout = {"model": str(world_model), **world_model_settings(world_model)}
        max_steps = TRAINED_CHUNKS * rollout["chunk_frames"] - (TRAINED_CHUNKS - 1)
    if num_inference_steps is not None:
        rollout["num_inference_steps"] = num_inference_steps
    size = [rollout["height"], rollout["width"]]
    return {
        "device": "cpu",
        "source": {"path": str(DEMO_DATASET), "split": "train", "max_episodes": episodes, "max_steps": max_steps},
        "first_frames": first_frames_config(models, variants, replay, painter),
        "rollout": rollout,
        # Without trained weights the painter and ORV are random (noise frames, rollouts that do
        # not follow the conditions); with them they are 64x64 models trained in an hour on a CPU.
        # The thresholds for full-size models (flicker <= 12, occupancy agreement >= 0.7) would drop
        # most clips; the demo relaxes those two to show the whole loop, the report still shows
        # the measured values.
        "score": {"checks_only": True, "filter": {"backend": "transformers", "checks": {
            "flicker_max": 50.0, "occupancy_min_agreement": 0.0}}},
        "export": {"name": "orv_tabletop_aug", "image_size": size},
    }


def write_demo_models(models: Path, orv: bool = True) -> Path:
    """The tiny random painter (FLUX + two ControlNets) and, with ``orv``, the tiny ORV."""
    models = Path(models)
    if not (models / "controlnet-semantics" / "config.json").exists():
        build_tiny_flux(models / "flux")
        build_tiny_xlabs_controlnet(models / "controlnet-depth", seed=1)
        build_tiny_xlabs_controlnet(models / "controlnet-semantics", seed=2)
    if orv and not (models / "orv" / "model_index.json").exists():
        save_tiny_orv_pipeline(models / "orv", sample_size=64)
    return models


def run_demo(out: Path, episodes: int = 4, variants: int = 2, progress: bool = True,
             world_model: str | Path | None = None, num_inference_steps: int | None = None, log=print) -> dict:
    """Run the demo into ``out``; ``world_model``: an ORVPipeline folder to use instead of the
    default choice (:func:`resolve_world_model`); ``num_inference_steps``: override the steps."""
    out = Path(out)
    choice = resolve_world_model(world_model)
    painter = resolve_painter()
    models = write_demo_models(out / "models", orv=choice.path is None).resolve()
    values = demo_config(models, episodes, variants, choice.path, num_inference_steps, painter=painter)
    log(f"painter: {painter.description}")
    ro = values["rollout"]
    log(f"world model: {choice.description}; rollouts at {ro['height']}x{ro['width']}, {ro['chunk_frames']}-frame "
        f"chunks, {ro['num_inference_steps']} sampling steps, {values['source']['max_steps']} episode steps")
    out.mkdir(parents=True, exist_ok=True)
    (out / "demo.yaml").write_text(yaml.safe_dump(values, sort_keys=False))
    config = config_from_dict(values)
    try:
        runner = AugmentRun(config, out / "run", progress=progress, log=log)
    except ConfigError:  # a demo run of an older demo config: start it over (a user's run is never deleted)
        shutil.rmtree(out / "run")
        runner = AugmentRun(config, out / "run", progress=progress, log=log)
    summary = runner.run()
    summary["world_model"] = choice.description
    summary["painter"] = painter.description
    return summary

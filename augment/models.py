"""The models of the per-unit stages, built from an :class:`augment.config.AugmentConfig`.

One place for how the config becomes a :class:`augment.first_frames.FirstFramePainter`
(FLUX + ControlNets, the ``first_frames`` stage) or a :class:`augment.rollout.RolloutGenerator`
(the ORV pipeline, the ``rollouts`` stage): :class:`augment.runner.AugmentRun` loads them
lazily, each Ray actor of :mod:`augment.ray_runner` loads the one of its stage.
"""

from __future__ import annotations

from augment.config import AugmentConfig
from augment.first_frames import FirstFramePainter
from augment.rollout import RolloutGenerator, resolve_dtype
from orv_engine.device import resolve_device


def _device_and_dtype(config: AugmentConfig):
    device = resolve_device(config.device)
    return device, resolve_dtype(config.dtype, device)


def make_painter(config: AugmentConfig) -> FirstFramePainter:
    """The ``first_frames`` section's FLUX ControlNet pipeline on the config's device and dtype."""
    ff = config.first_frames
    device, dtype = _device_and_dtype(config)
    return FirstFramePainter(ff.flux, ff.controlnets, device, dtype, ff.num_inference_steps, ff.guidance_scale,
                             ff.max_sequence_length)


def make_generator(config: AugmentConfig) -> RolloutGenerator:
    """The ``rollout`` section's ORV pipeline on the config's device and dtype."""
    ro = config.rollout
    device, dtype = _device_and_dtype(config)
    return RolloutGenerator(ro.model, device, dtype, ro.chunk_frames, ro.num_inference_steps, ro.guidance_scale,
                            ro.action_guidance_scale, ro.transformer, preset=ro.preset)


def painter_ids(config: AugmentConfig) -> dict:
    """The first-frame models a rollout records, read from the config (without loading the painter)."""
    ff = config.first_frames
    return {"flux": ff.flux, "controlnets": [cn.path for cn in ff.controlnets]}

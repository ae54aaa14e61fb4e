"""Rollout presets of :class:`~orv_engine.pipelines.ORVPipeline`: sampler, steps and a diffusers cache hook.

Why presets: rollouts are the data engine's main cost (issue [fast-rollouts]); a preset is one
name for a measured trade-off, applied by :func:`apply_rollout_preset` (or
``ORVPipeline.from_pretrained(..., preset="fast")``, ``rollout.preset`` in orv-augment's config).

- ``paper``: the checkpoint's own sampler (``transformer.preprocessing``: CogVideoX DPM, 50
  trailing steps for the official weights and this project's), no cache: the paper's settings.
- ``fast``: the same CogVideoX DPM sampler, 12 steps, no cache hook: 4.17x less transformer
  compute than ``paper`` and no quality loss against ground truth on 50 of the small ORV's
  held-out clips, the closest of the 12-step samplers to the reference's own rollouts
  (``benchmarks/rollout_speed.py``, docs/fast_rollouts.md).

Schedulers: CogVideoX's DPM and DDIM come from the checkpoint's scheduler config. diffusers'
multistep solvers (``UniPCMultistepScheduler``, ``DPMSolverMultistepScheduler``) take
v-prediction and trailing spacing but not CogVideoX's ``snr_shift_scale`` (SD3's SNR shift,
applied to ``alphas_cumprod`` before the zero-terminal-SNR rescale), so built from the config
alone they would sample another noise schedule than the model was trained on. They are given
CogVideoX's final ``alphas_cumprod`` as ``trained_betas`` instead (:func:`cogvideox_betas`;
hand-written because diffusers has no such option), the last one clamped to 2**-24 as
diffusers' own zero-SNR rescale does so the first sigma stays finite.

Caches (``CacheMixin.enable_cache`` on the transformer): ORV's blocks run through
:func:`orv_engine.models.action_adaln.orv_block_forward`, which calls each block's
``attn1``/``ff`` modules but never ``block.forward``: the hooks that wrap whole blocks
(FirstBlockCache, MagCache, SeaCache) are registered but never fire, so they save nothing;
the attention-level ones (Pyramid Attention Broadcast, FasterCache, TaylorSeer) do fire.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from diffusers import (
    CogVideoXDDIMScheduler,
    CogVideoXDPMScheduler,
    DPMSolverMultistepScheduler,
    FasterCacheConfig,
    FirstBlockCacheConfig,
    MagCacheConfig,
    PyramidAttentionBroadcastConfig,
    TaylorSeerCacheConfig,
    UniPCMultistepScheduler,
)

SCHEDULERS = ("cogvideox_dpm", "cogvideox_ddim", "unipc", "dpmpp_2m")
CACHES = ("pab", "fastercache", "taylorseer", "first_block_cache", "magcache")


def cogvideox_betas(config) -> list[float]:
    """Per-step betas whose cumulative product is a CogVideoX scheduler's ``alphas_cumprod``
    (SNR shift and zero-terminal-SNR rescale included), for diffusers' multistep solvers."""
    reference = CogVideoXDDIMScheduler.from_config(config)
    alphas_cumprod = reference.alphas_cumprod.double().clone()
    alphas_cumprod[-1] = max(float(alphas_cumprod[-1]), 2.0 ** -24)
    previous = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
    return (1.0 - alphas_cumprod / previous).tolist()


def make_scheduler(name: str, config):
    """A scheduler of kind ``name`` (:data:`SCHEDULERS`) for a CogVideoX scheduler ``config``."""
    common = dict(prediction_type=config.get("prediction_type", "v_prediction"), timestep_spacing="trailing")
    if name == "cogvideox_dpm":
        return CogVideoXDPMScheduler.from_config(config, timestep_spacing=config.get("timestep_spacing", "trailing"))
    if name == "cogvideox_ddim":
        return CogVideoXDDIMScheduler.from_config(config, timestep_spacing=config.get("timestep_spacing", "trailing"))
    betas = cogvideox_betas(config)
    if name == "unipc":
        return UniPCMultistepScheduler(num_train_timesteps=len(betas), trained_betas=betas, solver_order=2,
                                       final_sigmas_type="zero", **common)
    if name == "dpmpp_2m":
        return DPMSolverMultistepScheduler(num_train_timesteps=len(betas), trained_betas=betas, solver_order=2,
                                           algorithm_type="dpmsolver++", final_sigmas_type="zero", **common)
    raise KeyError(f"unknown scheduler {name!r}; known: {', '.join(SCHEDULERS)}")


def cache_config(name: str, knob, pipe):
    """The diffusers cache config of kind ``name`` (:data:`CACHES`) with its main knob:

    - ``pab``: spatial-attention block skip range (recompute attention every ``knob`` steps
      inside the timestep range (100, 800), else reuse);
    - ``fastercache``: the same skip range for attention (no unconditional-branch skipping:
      ORV's guidance branches are cond-first, the opposite of what FasterCache assumes, so
      ``is_guidance_distilled=True`` keeps it out of the batch layout);
    - ``taylorseer``: cache interval (attention and feed-forward computed every ``knob`` steps after
      3 warm-up steps, Taylor-predicted (order 1) between);
    - ``first_block_cache``: the residual-change threshold; ``magcache``: the threshold (block level).
    """
    clock = lambda: pipe.current_timestep  # noqa: E731 - the hooks' timestep callback
    if name == "pab":
        return PyramidAttentionBroadcastConfig(spatial_attention_block_skip_range=int(knob),
                                               spatial_attention_timestep_skip_range=(100, 800),
                                               current_timestep_callback=clock)
    if name == "fastercache":
        return FasterCacheConfig(spatial_attention_block_skip_range=int(knob),
                                 spatial_attention_timestep_skip_range=(-1, 681), current_timestep_callback=clock,
                                 attention_weight_callback=lambda _: 0.3, is_guidance_distilled=True,
                                 tensor_format="BFCHW")
    if name == "taylorseer":
        # its default patterns ("^transformer_blocks.*attn", re.fullmatch) miss CogVideoX's "attn1": name them
        return TaylorSeerCacheConfig(cache_interval=int(knob), disable_cache_before_step=3, max_order=1,
                                     taylor_factors_dtype=pipe.transformer.dtype,
                                     cache_identifiers=[r"transformer_blocks\.\d+\.(attn1|ff)"])
    if name == "first_block_cache":
        return FirstBlockCacheConfig(threshold=float(knob))
    if name == "magcache":
        steps = getattr(pipe, "_preset_steps", None) or pipe.transformer.preprocessing.num_inference_steps
        return MagCacheConfig(threshold=float(knob), num_inference_steps=steps, mag_ratios=[1.0] * steps)
    raise KeyError(f"unknown cache {name!r}; known: {', '.join(CACHES)}")


@dataclass(frozen=True)
class RolloutPreset:
    """How a rollout is sampled. ``None`` fields keep the checkpoint's settings."""

    name: str
    scheduler: str | None = None  # one of SCHEDULERS; None: the checkpoint's (preprocessing.scheduler)
    num_inference_steps: int | None = None  # None: the checkpoint's (50 for the paper's)
    cache: str | None = None  # one of CACHES; None: no cache hook
    cache_knob: float | int | None = None
    notes: dict = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict:
        return asdict(self)


# The measured figures behind ``fast`` are in docs/fast_rollouts.md (benchmarks/rollout_speed.py).
PRESETS = {
    "paper": RolloutPreset("paper"),
    "fast": RolloutPreset("fast", scheduler="cogvideox_dpm", num_inference_steps=12),
}


def resolve_preset(preset: str | RolloutPreset) -> RolloutPreset:
    if isinstance(preset, RolloutPreset):
        return preset
    if preset not in PRESETS:
        raise KeyError(f"unknown rollout preset {preset!r}; known: {', '.join(PRESETS)}")
    return PRESETS[preset]


def apply_rollout_preset(pipe, preset: str | RolloutPreset) -> RolloutPreset:
    """Set ``pipe``'s scheduler, default steps and cache hook to ``preset`` (undoing a previous one)."""
    preset = resolve_preset(preset)
    if getattr(pipe.transformer, "_cache_config", None) is not None:
        pipe.transformer.disable_cache()
    base = getattr(pipe, "_base_scheduler", None)  # the checkpoint's, kept so presets can be switched back
    if base is None:
        pipe.use_checkpoint_scheduler()
        pipe._base_scheduler = base = pipe.scheduler
    pipe.scheduler = base if preset.scheduler is None else make_scheduler(preset.scheduler, base.config)
    pipe._preset_steps = preset.num_inference_steps
    if preset.cache is not None:
        pipe.transformer.enable_cache(cache_config(preset.cache, preset.cache_knob, pipe))
    pipe.rollout_preset = preset
    return preset

"""Projected H100 seconds of one augmented clip at real scale, from counted FLOPs (issue [fast-rollouts]).

Stages and what is counted (``torch.utils.flop_counter.FlopCounterMode``: 2 per multiply-add
over matmuls, convolutions and attention; element-wise work is not counted), each model built
from its released architecture on the ``meta`` device (no weights, no compute):

- ``rollout``: the ORV-2B transformer (``orv_engine.models.configs.ORV_2B``, the official
  stage-2 architecture, as ``benchmarks/orv_real_size.py`` builds it) on one 17-frame chunk at
  the configured size (Bridge: 320x480 -> 5 x 40 x 60 latents, 3000 vision tokens), batch 1,
  times the preset's transformer evaluations (steps x guidance branches), times the chunks an
  episode of ``source.max_steps`` frames needs (one when unset); plus CogVideoX-2B's VAE
  (``AutoencoderKLCogVideoX`` [128, 256, 256, 512]) encoding the first frame and the condition
  videos and decoding the chunk. ``paper`` = 50 DPM steps; ``fast`` = the ``fast`` preset
  (:data:`orv_engine.pipelines.presets.PRESETS`).
- ``painter``: FLUX.1-dev's transformer (19 double + 38 single blocks of 3072) at the
  configured first-frame size for ``first_frames.num_inference_steps`` steps (guidance
  distilled: one pass a step), each ControlNet of the config (its own config when the file is
  there, else XLabs' depth v3 layout: 2 double blocks) on every step, T5-XXL on 512 tokens and
  CLIP-L once, FLUX's VAE decode once;
- ``scoring``: Qwen2.5-VL-7B, counted as ``benchmarks/occupancy_projection.py`` does: the vision
  tower on ``filter.frames_per_clip`` frames at the rollout size (per pair of frames, Qwen's
  temporal patch; counted per 2-frame group, so the 4 full-attention blocks across groups are
  a lower bound), the language model on the visual tokens + the prompt (tokens ~ characters / 4)
  + the answer budget, for the caption and for the score.

Seconds = FLOPs / (utilisation x 989 TFLOP/s, H100 SXM dense bf16); utilisation 0.40 by default,
assumed, not measured (nothing here runs on a GPU). The paper reports ~19 GPU-s per 17-frame
320x480 rollout on H100 (:data:`PAPER_ROLLOUT_GPU_SECONDS`).

Counts are cached per architecture and size in this process (``functools.lru_cache``) and in
``~/.cache/orv_engine/gpu_cost.json`` (``ORV_GPU_COST_CACHE`` moves it), so a run's manifest
entry costs a dictionary lookup after the first count (~1 min on 2 cores, mostly the Qwen
vision tower, which runs on CPU at depth 1-2).
"""

from __future__ import annotations

import functools
import json
import math
import os
from pathlib import Path

import torch
from diffusers import AutoencoderKL, AutoencoderKLCogVideoX, FluxControlNetModel, FluxTransformer2DModel
from torch.utils.flop_counter import FlopCounterMode
from transformers import (CLIPTextConfig, CLIPTextModel, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, T5Config,
                          T5EncoderModel)
from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

from augment.first_frames.controlnets import controlnet_config
from orv_engine.models import ORVTransformer3DModel
from orv_engine.weight_files import CheckpointError
from orv_engine.models.configs import ORV_2B
from orv_engine.pipelines.presets import PRESETS, resolve_preset

H100_BF16_DENSE = 989e12  # FLOP/s, H100 SXM dense bf16 (as benchmarks/occupancy_projection.py)
DEFAULT_UTILISATION = 0.40
PAPER_ROLLOUT_GPU_SECONDS = 19.0  # paper: ~19 GPU-s per 17-frame 320x480 sample on H100, 50 DPM steps
PAPER_STEPS = 50
CHUNK_FRAMES = 16  # ORV-2B generates 16 new frames (+ the given one) per chunk
COGVIDEOX_VAE = dict(block_out_channels=[128, 256, 256, 512], latent_channels=16, temporal_compression_ratio=4,
                     down_block_types=["CogVideoXDownBlock3D"] * 4, up_block_types=["CogVideoXUpBlock3D"] * 4,
                     layers_per_block=3, norm_num_groups=32, sample_height=480, sample_width=720)
FLUX_DEV = dict(patch_size=1, in_channels=64, num_layers=19, num_single_layers=38, attention_head_dim=128,
                num_attention_heads=24, joint_attention_dim=4096, pooled_projection_dim=768, guidance_embeds=True,
                axes_dims_rope=[16, 56, 56])
XLABS_DEPTH_V3 = dict(FLUX_DEV, num_layers=2, num_single_layers=0)
T5_XXL = dict(d_model=4096, d_ff=10240, d_kv=64, num_heads=64, num_layers=24, vocab_size=32128,
              feed_forward_proj="gated-gelu", is_encoder_decoder=False)
CLIP_L = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              max_position_embeddings=77, vocab_size=49408)
FLUX_VAE = dict(in_channels=3, out_channels=3, latent_channels=16, block_out_channels=[128, 256, 512, 512],
                down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
                layers_per_block=2, use_quant_conv=False, use_post_quant_conv=False)
T5_TOKENS = 512


def _count(forward) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        forward()
    return int(counter.get_total_flops())


def _cache_file() -> Path:
    return Path(os.environ.get("ORV_GPU_COST_CACHE", Path.home() / ".cache" / "orv_engine" / "gpu_cost.json"))


# Counts of the default configuration (Bridge 320x480 rollouts, first frames and VLM frames; 8 VLM
# frames, the default prompts), made by the functions below with torch 2.x's FlopCounterMode and
# checked against a fresh count by tests/test_fast_rollouts.py: a run with the defaults never counts.
KNOWN_COUNTS = {
    "orv_2b_step_flops(320, 480, 17)": 11022483673088,
    "cogvideox_vae_flops(320, 480, 17, 2)": 97984433356800,
    "flux_step_flops(320, 480, 19, 38, False)": 15242004529152,
    "flux_step_flops(320, 480, 2, 0, True)": 570631913472,
    "flux_text_and_vae_flops(320, 480)": 6323301715968,
    "qwen_flops(320, 480, 8, 84, 48)": [3845385420800, 11847677771776],
    "qwen_flops(320, 480, 8, 346, 192)": [3845385420800, 17656167825408],
}


def _disk_cached(fn):
    """:data:`KNOWN_COUNTS`, then ``lru_cache`` in the process plus a JSON file across processes,
    keyed by the call's arguments; counted only when none has it."""
    @functools.lru_cache(maxsize=None)
    def wrapper(*args):
        key = f"{fn.__name__}{args}"
        if key in KNOWN_COUNTS:
            return KNOWN_COUNTS[key]
        path = _cache_file()
        try:
            cache = json.loads(path.read_text())
        except (OSError, ValueError):
            cache = {}
        if key in cache:
            return cache[key]
        value = fn(*args)
        cache[key] = value
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps(cache, indent=1))
            tmp.replace(path)
        except OSError:
            pass  # a read-only home: the in-process cache still holds it
        return value
    wrapper.uncached = fn  # the count itself, for the test that checks KNOWN_COUNTS
    return wrapper


# ------------------------------------------------------------------ rollout: ORV-2B + CogVideoX VAE

@_disk_cached
def orv_2b_step_flops(height: int = 320, width: int = 480, frames: int = 17) -> int:
    """One ORV-2B transformer evaluation (batch 1) on a chunk of ``frames`` frames, on meta."""
    latent_frames = (frames - 1) // 4 + 1
    h, w = height // 8, width // 8
    config = dict(ORV_2B, sample_height=h, sample_width=w, sample_frames=frames)
    kinds = len(config["condition_kinds"])
    with torch.device("meta"):
        model = ORVTransformer3DModel.from_config(config).eval()
        inputs = dict(hidden_states=torch.empty(1, latent_frames, config["in_channels"], h, w),
                      encoder_hidden_states=torch.empty(1, config["max_text_seq_length"], config["text_embed_dim"]),
                      timestep=torch.full((1,), 500),
                      actions=torch.empty(1, config["action_chunk"] * latent_frames, config["action_dim"]),
                      condition_latents=torch.empty(1, latent_frames, config["out_channels"] * kinds, h, w))
    return _count(lambda: model(**inputs))


@_disk_cached
def cogvideox_vae_flops(height: int = 320, width: int = 480, frames: int = 17, condition_videos: int = 2) -> int:
    """CogVideoX-2B's VAE per chunk: encode the first frame and the condition videos, decode the chunk."""
    with torch.device("meta"):
        vae = AutoencoderKLCogVideoX(**COGVIDEOX_VAE).eval()
        vae.use_framewise_encoding = vae.use_framewise_decoding = False
    latent_frames = (frames - 1) // 4 + 1
    encode_video = _count(lambda: vae.encode(torch.empty(1, 3, frames, height, width, device="meta")))
    encode_first = _count(lambda: vae.encode(torch.empty(1, 3, 1, height, width, device="meta")))
    decode = _count(lambda: vae.decode(torch.empty(1, 16, latent_frames, height // 8, width // 8, device="meta")))
    return encode_first + condition_videos * encode_video + decode


def rollout_evaluations(preset, action_guidance_scale: float = 1.0, guidance_scale: float | None = None) -> int:
    """Transformer evaluations per chunk: steps x guidance branches."""
    preset = resolve_preset(preset)
    steps = preset.num_inference_steps or PAPER_STEPS
    branches = 1 + (action_guidance_scale != 1.0) + (guidance_scale not in (None, 1.0))
    return steps * branches


def projected_rollout_seconds(preset="paper", utilisation: float = DEFAULT_UTILISATION, height: int = 320,
                              width: int = 480, chunks: int = 1, action_guidance_scale: float = 1.0,
                              guidance_scale: float | None = None, frames: int = 17) -> dict:
    """H100 seconds of a rollout of ``chunks`` chunks of ``frames`` frames of ORV-2B at ``height x width``."""
    preset = resolve_preset(preset)
    evaluations = rollout_evaluations(preset, action_guidance_scale, guidance_scale)
    step = orv_2b_step_flops(height, width, frames)
    cache_factor = preset.notes.get("measured_cache_compute_fraction", 1.0)  # a cache hook's saving, measured small
    transformer = chunks * evaluations * step * cache_factor
    vae = chunks * cogvideox_vae_flops(height, width, frames, len(ORV_2B["condition_kinds"]))
    rate = utilisation * H100_BF16_DENSE
    # The paper's ~19 GPU-s for the same 50-step rollout is ~12x the FLOP time at 40 %: its pipeline
    # sustained ~3.5 % of the bf16 peak. "paper_calibrated_seconds" scales the paper's figure by
    # this rollout's FLOPs over the paper's (50 steps, no guidance, one chunk at this size).
    paper_flops = (PAPER_STEPS * orv_2b_step_flops(height, width, 17)
                   + cogvideox_vae_flops(height, width, 17, len(ORV_2B["condition_kinds"])))
    total = transformer + vae
    return {"preset": preset.name, "evaluations_per_chunk": evaluations, "chunks": chunks,
            "flops": {"transformer_step": step, "transformer": transformer, "vae": vae, "total": total},
            "seconds": total / rate, "transformer_seconds": transformer / rate, "utilisation": utilisation,
            "paper_calibrated_seconds": PAPER_ROLLOUT_GPU_SECONDS * total / paper_flops,
            "paper_implied_utilisation": paper_flops / PAPER_ROLLOUT_GPU_SECONDS / H100_BF16_DENSE}


# ------------------------------------------------------------------ painter: FLUX.1-dev + ControlNets

@_disk_cached
def flux_step_flops(height: int, width: int, double: int = 19, single: int = 38, controlnet: bool = False) -> int:
    """One FLUX transformer (or FluxControlNetModel of ``double``/``single`` blocks) evaluation."""
    tokens = (height // 16) * (width // 16)
    config = dict(FLUX_DEV, num_layers=double, num_single_layers=single)
    with torch.device("meta"):
        model = (FluxControlNetModel(**config) if controlnet else FluxTransformer2DModel(**config)).eval()
        x = dict(hidden_states=torch.empty(1, tokens, 64), encoder_hidden_states=torch.empty(1, T5_TOKENS, 4096),
                 pooled_projections=torch.empty(1, 768), timestep=torch.full((1,), 0.5), guidance=torch.full((1,), 3.5),
                 img_ids=torch.zeros(tokens, 3), txt_ids=torch.zeros(T5_TOKENS, 3))
        if controlnet:
            x["controlnet_cond"] = torch.empty(1, tokens, 64)
    return _count(lambda: model(**x))


@_disk_cached
def flux_text_and_vae_flops(height: int, width: int) -> int:
    """T5-XXL on 512 tokens + CLIP-L on 77, and FLUX's VAE decoding one image: once per first frame."""
    with torch.device("meta"):
        t5 = T5EncoderModel(T5Config(**T5_XXL)).eval()
        clip = CLIPTextModel(CLIPTextConfig(**CLIP_L)).eval()
        vae = AutoencoderKL(**FLUX_VAE).eval()
    ids = torch.zeros(1, T5_TOKENS, dtype=torch.long, device="meta")
    clip_ids = torch.zeros(1, 77, dtype=torch.long, device="meta")
    return (_count(lambda: t5(input_ids=ids)) + _count(lambda: clip(input_ids=clip_ids))
            + _count(lambda: vae.decode(torch.empty(1, 16, height // 8, width // 8, device="meta"))))


def _controlnet_blocks(path: str) -> tuple[int, int]:
    """(double, single) blocks of a configured ControlNet; XLabs' depth v3 layout when unreadable."""
    try:
        config = controlnet_config(path) if path and Path(path).expanduser().exists() else {}
    except CheckpointError:
        config = {}
    return int(config.get("num_layers", XLABS_DEPTH_V3["num_layers"])), int(config.get("num_single_layers", 0))


def projected_painter_seconds(first_frames, height: int, width: int, utilisation: float = DEFAULT_UTILISATION) -> dict:
    h, w = (first_frames.height or height), (first_frames.width or width)
    h, w = h + (-h) % 16, w + (-w) % 16
    steps = first_frames.num_inference_steps
    base = flux_step_flops(h, w, 19, 38, False)
    nets = [flux_step_flops(h, w, *_controlnet_blocks(cn.path), True) for cn in first_frames.controlnets]
    once = flux_text_and_vae_flops(h, w)
    total = steps * (base + sum(nets)) + once
    return {"height": h, "width": w, "steps": steps, "controlnets": len(nets),
            "flops": {"transformer_step": base, "controlnet_steps": nets, "text_and_vae": once, "total": total},
            "seconds": total / (utilisation * H100_BF16_DENSE)}


# ------------------------------------------------------------------ scoring: Qwen2.5-VL-7B
# The counters of benchmarks/occupancy_projection.py (same method and constants), here because library
# code does not import ``benchmarks`` (docs/architecture.md, layering); that benchmark may import these.

QWEN_PATCH, QWEN_MERGE = 14, 2
QWEN_TEXT = dict(hidden_size=3584, num_hidden_layers=28, intermediate_size=18944, vocab_size=152064,
                 num_attention_heads=28, num_key_value_heads=4)
QWEN_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                   patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                   fullatt_block_indexes=[7, 15, 23, 31])


def qwen_grid(height: int, width: int) -> tuple[int, int]:
    """Qwen2.5-VL's patch grid of one image (sides rounded to multiples of 28, the default pixel range)."""
    unit = QWEN_PATCH * QWEN_MERGE
    return max(unit, round(height / unit) * unit) // QWEN_PATCH, max(unit, round(width / unit) * unit) // QWEN_PATCH


def qwen_vision_flops(vision: dict, grid: tuple[int, int]) -> int:
    """The vision tower on one image (or 2-frame group): counted on CPU at depth 1 (full and windowed
    attention) and 2 (full) -- its window indices are data-dependent, so it cannot run on meta --
    and summed block by block to ``vision["depth"]`` blocks (every block is the same module)."""
    gh, gw = grid
    thw = torch.tensor([[1, gh, gw]])
    pixels = torch.randn(gh * gw, 3 * vision["temporal_patch_size"] * vision["patch_size"] ** 2)

    def run(depth: int, full: list[int]) -> int:
        config = Qwen2_5_VLConfig(vision_config=dict(vision, depth=depth, fullatt_block_indexes=full)).vision_config
        config._attn_implementation = "sdpa"
        torch.manual_seed(0)
        model = Qwen2_5_VisionTransformerPretrainedModel(config).eval()
        return _count(lambda: model(pixels, grid_thw=thw))

    one_full, two_full, one_window = run(1, [0]), run(2, [0, 1]), run(1, [])
    full_block = two_full - one_full
    base = one_full - full_block  # patch embedding + merger
    window_block = one_window - base
    n_full = len([i for i in vision["fullatt_block_indexes"] if i < vision["depth"]])
    return base + n_full * full_block + (vision["depth"] - n_full) * window_block


def qwen_text_flops(text: dict, prompt_tokens: int, answer_tokens: int) -> int:
    """The language model over ``prompt + answer`` tokens (a prefill's matmuls and ``answer_tokens``
    cached decode steps), ``lm_head`` on the answer positions, on meta."""
    config = Qwen2_5_VLConfig(text_config=dict(text), vision_config=dict(QWEN_VISION, depth=1))
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    length = prompt_tokens + answer_tokens
    embeds = torch.empty(1, length, text["hidden_size"], device="meta")
    positions = torch.zeros(3, 1, length, dtype=torch.long, device="meta")

    def forward():
        hidden = model.model.language_model(inputs_embeds=embeds, position_ids=positions, use_cache=False)
        model.lm_head(hidden.last_hidden_state[:, -answer_tokens:])

    return _count(forward)


@_disk_cached
def qwen_flops(height: int, width: int, frames: int, prompt_tokens: int, answer_tokens: int) -> list[int]:
    """[vision tower, language model] FLOPs of one Qwen2.5-VL-7B request on ``frames`` frames."""
    grid = qwen_grid(height, width)
    groups = max(1, math.ceil(frames / QWEN_VISION["temporal_patch_size"]))  # 2 frames per temporal patch
    vision = groups * qwen_vision_flops(QWEN_VISION, grid)
    visual_tokens = groups * grid[0] * grid[1] // QWEN_MERGE ** 2
    text = qwen_text_flops(QWEN_TEXT, visual_tokens + prompt_tokens, answer_tokens)
    return [vision, text]


def projected_scoring_seconds(filter_config, height: int, width: int, utilisation: float = DEFAULT_UTILISATION) -> dict:
    fc = filter_config
    h, w = fc.frame_height or height, fc.frame_width or width
    requests = []
    if fc.caption:
        requests.append(("caption", len(fc.prompts.caption) // 4 + 20, fc.sampling.max_tokens_caption))
    if fc.score:
        requests.append(("score", len(fc.prompts.scoring_head) // 4 + 20, fc.sampling.max_tokens_score))
    flops = {name: sum(qwen_flops(h, w, fc.frames_per_clip, prompt, answer)) for name, prompt, answer in requests}
    total = sum(flops.values())
    return {"frames": fc.frames_per_clip, "height": h, "width": w, "flops": {**flops, "total": total},
            "seconds": total / (utilisation * H100_BF16_DENSE),
            "note": "decode steps are memory-bound on a GPU: the FLOP time is optimistic for the answers"}


# ------------------------------------------------------------------ one augmented clip

def projected_clip_cost(config, utilisation: float = DEFAULT_UTILISATION) -> dict:
    """Projected H100 seconds per augmented clip for ``config`` (an :class:`augment.config.AugmentConfig`):
    {"rollout", "painter", "scoring", "total", "detail": {...}} (what ``run.json`` records)."""
    ro = config.rollout
    chunks = 1
    if config.source.max_steps:
        chunks = max(1, math.ceil((config.source.max_steps - 1) / (ro.chunk_frames - 1)))
    preset = getattr(ro, "preset", "paper")
    rollout = projected_rollout_seconds(preset, utilisation, ro.height, ro.width, chunks, ro.action_guidance_scale,
                                        ro.guidance_scale, ro.chunk_frames + 1)
    stages = {"rollout": rollout["seconds"]}
    detail = {"rollout": rollout}
    painter = projected_painter_seconds(config.first_frames, ro.height, ro.width, utilisation)
    stages["painter"], detail["painter"] = painter["seconds"], painter
    if config.score.enabled and not config.score.checks_only:
        scoring = projected_scoring_seconds(config.filter_config(), ro.height, ro.width, utilisation)
        stages["scoring"], detail["scoring"] = scoring["seconds"], scoring
    return {**{k: round(v, 3) for k, v in stages.items()}, "total": round(sum(stages.values()), 3),
            "utilisation": utilisation, "peak_flops": H100_BF16_DENSE, "preset": preset,
            "paper_rollout_seconds": PAPER_ROLLOUT_GPU_SECONDS, "detail": detail}


__all__ = ["PRESETS", "projected_clip_cost", "projected_rollout_seconds", "projected_painter_seconds",
           "projected_scoring_seconds", "PAPER_ROLLOUT_GPU_SECONDS", "DEFAULT_UTILISATION"]

"""The GPU cost of ``orv-occupancy`` projected for the released models on one H100 from counted
FLOPs (the ``projection_h100`` part of ``benchmarks/occupancy_store.py``).

``torch.utils.flop_counter.FlopCounterMode`` counts the FLOPs
(2 per multiply-add; matmuls, convolutions, attention; element-wise work is not counted) of
one forward of each real-size model, built from its released config on the ``meta`` device
(no weights, no compute) where that works:

- Depth Pro: ``DepthProConfig(use_fov_model=True)``, the released model, 1536x1536 input
  (every frame is resized to it), per frame;
- SAM3 video: the detector's and tracker's shared vision backbone (``Sam3Config()``, ViT
  1008x1008) per frame. The detector heads and the tracker cannot run on ``meta``
  (data-dependent ``.item()``), so they are **not counted**: the instances figure is a lower
  bound (said in the notes);
- RAFT (torchvision, 12 flow updates) small and large per frame pair at the consistency size
  (128 on the short side: 128x171 for 480x640, padded to 128x176) and at 480x640;
- Qwen2.5-VL-7B for the listing: the language model (hidden 3584, 28 layers, intermediate
  18944, vocab 152064) on ``meta`` over the prompt (one 480x640 keyframe = 34x46 patches ->
  391 visual tokens, plus a stated number of text tokens) and 16 answer tokens (``lm_head``
  only on the 16 generated positions); the vision tower (32 layers of 1280) cannot run on
  ``meta`` (its window indices are data-dependent), so it is counted on CPU at depth 1 and 2
  (full and windowed attention) and extrapolated block by block to its 32 layers (4 with full
  attention, 28 windowed) -- every block is the same module, so this is a count, not a fit.

A count that fails is recorded as its error string, never replaced by a number. Seconds =
FLOPs / (utilisation x peak); **utilisation** is the fraction of the H100 SXM's dense bf16
peak (989 TFLOP/s) a stage is assumed to sustain (default 0.40: large batched matmuls reach
more, the small RAFT convolutions and the 16 decode steps -- memory-bound, one token at a
time -- reach less; nothing is measured on a GPU). A BridgeV2 episode is taken as 38 frames at
480x640 with 3 keyframes listed; consistency scores ``min(frames, 16) - 1`` pairs with RAFT
small. The voxel stage and the consistency stage's rendering are CPU work and are not in the
GPU projection.

"""

from __future__ import annotations

import sys
import time

import torch

# the Qwen2.5-VL-7B counters are the loop's own (its per-clip GPU cost projection)
from augment.gpu_cost import QWEN_MERGE, QWEN_TEXT, QWEN_VISION, qwen_grid, qwen_text_flops, qwen_vision_flops

H100_BF16_DENSE = 989e12  # FLOP/s, H100 SXM dense bf16 (no sparsity)
# the projected BridgeV2 episode
EPISODE_FRAMES, FRAME_HW, KEYFRAMES = 38, (480, 640), 3
CONSISTENCY_SIZE, CONSISTENCY_MAX_FRAMES, RAFT_VARIANT, RAFT_UPDATES = 128, 16, "small", 12
ANSWER_TOKENS = 16
PROMPT_TEXT_TOKENS = 40  # assumption: chat template + the 19-word listing prompt + vision markers


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ counted: FLOPs of the real models

def count_flops(forward) -> int:
    """FLOPs (2 per multiply-add) ``forward()`` runs, counted by ``FlopCounterMode``."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter, torch.no_grad():
        forward()
    return int(counter.get_total_flops())


def depth_pro_flops(config=None, size: int | None = None) -> int:
    """One Depth Pro forward (with the FOV head), on ``meta``; default: the released config."""
    from transformers import DepthProConfig, DepthProForDepthEstimation

    config = config or DepthProConfig(use_fov_model=True)
    if size is None:  # the processor's square input: patch size x 1 / smallest scale ratio
        size = round(config.patch_size / min(config.scaled_images_ratios))
    with torch.device("meta"):
        model = DepthProForDepthEstimation(config).eval()
    pixels = torch.empty(1, 3, size, size, device="meta")
    return count_flops(lambda: model(pixel_values=pixels))


def raft_flops(variant: str, height: int, width: int, updates: int = RAFT_UPDATES) -> int:
    """One RAFT flow (a frame pair) at ``height x width`` padded to multiples of 8, on ``meta``."""
    from torchvision.models.optical_flow import raft_large, raft_small

    height, width = height + (-height) % 8, width + (-width) % 8
    with torch.device("meta"):
        model = {"small": raft_small, "large": raft_large}[variant](weights=None).eval()
    frame = torch.empty(1, 3, height, width, device="meta")
    return count_flops(lambda: model(frame, frame, num_flow_updates=updates))


def sam3_vision_flops(config=None) -> int:
    """SAM3's vision backbone (ViT + FPN) on one frame, on ``meta``; default: the released config."""
    from transformers import Sam3Config, Sam3Model

    config = config or Sam3Config()
    size = config.vision_config.backbone_config.image_size
    with torch.device("meta"):
        model = Sam3Model(config).eval()
    pixels = torch.empty(1, 3, size, size, device="meta")
    return count_flops(lambda: model.vision_encoder(pixel_values=pixels))


def _attempt(flops: dict, errors: dict, name: str, fn, *args) -> None:
    start = time.perf_counter()
    try:
        flops[name] = fn(*args)
        log(f"  {name}: {flops[name] / 1e9:,.1f} GFLOP ({time.perf_counter() - start:.0f} s to count)")
    except Exception as error:  # noqa: BLE001 - recorded, never replaced by a number
        flops[name] = f"{type(error).__name__}: {error}"
        errors[name] = flops[name]
        log(f"  {name}: count failed: {flops[name]}")


def project_h100(utilisation: float, text_prompts: int = 3) -> dict:
    """Counted FLOPs of the real models and the projected H100 seconds per BridgeV2 episode."""
    height, width = FRAME_HW
    scale = CONSISTENCY_SIZE / min(height, width)
    ch, cw = max(CONSISTENCY_SIZE, round(height * scale)), max(CONSISTENCY_SIZE, round(width * scale))
    grid = qwen_grid(height, width)
    visual_tokens = grid[0] * grid[1] // QWEN_MERGE ** 2
    prompt_tokens = visual_tokens + PROMPT_TEXT_TOKENS
    flops: dict = {}
    errors: dict = {}
    log("counting FLOPs of the real-size models (meta device) ...")
    _attempt(flops, errors, "depth_pro_1536", depth_pro_flops)
    _attempt(flops, errors, "sam3_vision_backbone_1008", sam3_vision_flops)
    for variant in ("small", "large"):
        _attempt(flops, errors, f"raft_{variant}_{ch}x{cw}_pair", raft_flops, variant, ch, cw)
        _attempt(flops, errors, f"raft_{variant}_{height}x{width}_pair", raft_flops, variant, height, width)
    _attempt(flops, errors, f"qwen2_5_vl_7b_vision_{height}x{width}", qwen_vision_flops, QWEN_VISION, grid)
    _attempt(flops, errors, f"qwen2_5_vl_7b_text_{prompt_tokens}+{ANSWER_TOKENS}_tokens", qwen_text_flops,
             QWEN_TEXT, prompt_tokens, ANSWER_TOKENS)
    rate = utilisation * H100_BF16_DENSE
    pairs = min(EPISODE_FRAMES, CONSISTENCY_MAX_FRAMES) - 1
    per_frame = {"depth": ("depth_pro_1536", EPISODE_FRAMES),
                 "instances": ("sam3_vision_backbone_1008", EPISODE_FRAMES),
                 "consistency": (f"raft_{RAFT_VARIANT}_{ch}x{cw}_pair", pairs)}
    seconds: dict = {}
    for stage, (name, count) in per_frame.items():
        if isinstance(flops.get(name), int):
            seconds[stage] = count * flops[name] / rate
    vision, text = (flops.get(f"qwen2_5_vl_7b_vision_{height}x{width}"),
                    flops.get(f"qwen2_5_vl_7b_text_{prompt_tokens}+{ANSWER_TOKENS}_tokens"))
    if isinstance(vision, int) and isinstance(text, int):
        seconds["listing"] = KEYFRAMES * (vision + text) / rate
    notes = [
        f"utilisation {utilisation:.0%} of {H100_BF16_DENSE / 1e12:.0f} TFLOP/s (H100 SXM dense bf16): assumed, "
        "not measured",
        f"episode: {EPISODE_FRAMES} frames at {height}x{width}, {KEYFRAMES} keyframes listed, {pairs} RAFT "
        f"{RAFT_VARIANT} pairs at {ch}x{cw} ({RAFT_UPDATES} updates)",
        "depth: Depth Pro with its FOV head at 1536x1536 per frame (counted on meta)",
        "instances: LOWER BOUND - SAM3's vision backbone once per frame only (counted on meta); the detector "
        f"heads ({text_prompts} text prompts here) and the tracker's memory attention / mask decoder per object "
        "are not counted (their forward calls .item() and cannot run on meta)",
        f"listing: Qwen2.5-VL-7B per keyframe: vision tower on {grid[0]}x{grid[1]} patches (counted on CPU at "
        f"depth 1-2, summed per block to 32), language model on {visual_tokens} visual + {PROMPT_TEXT_TOKENS} "
        f"text tokens (text count assumed) + {ANSWER_TOKENS} answer tokens (counted on meta); the decode steps "
        "are memory-bound on a GPU, so the FLOP time is optimistic for them",
        "voxels and the consistency stage's rendering run on CPU: not in the GPU projection",
        "FLOPs: FlopCounterMode (2 per multiply-add over matmul, convolution and attention ops)",
    ]
    if errors:
        notes.append(f"counts that failed (error strings in flops_per_frame): {', '.join(errors)}")
    complete = all(stage in seconds for stage in ("depth", "instances", "consistency", "listing"))
    return {"utilisation": utilisation, "peak_flops": H100_BF16_DENSE, "flops_per_frame": flops,
            "seconds_per_episode": seconds,
            "total_seconds_per_episode": sum(seconds.values()) if complete else None,
            "episode": {"frames": EPISODE_FRAMES, "height": height, "width": width, "keyframes": KEYFRAMES,
                        "raft_pairs": pairs, "listing_prompt_tokens": prompt_tokens,
                        "listing_answer_tokens": ANSWER_TOKENS},
            "notes": notes}

"""The cost of ``orv-occupancy``: measured on this CPU with tiny models, and projected for the
real models on one H100 from counted FLOPs.

**Measured (cpu_tiny).** Tiny random-weight models in the real on-disk formats
(``orv_engine.testing``: Depth Pro, SAM3 video; torchvision RAFT small with random weights for
the consistency stage) run the real ``OccupancyJob`` on the first N real BridgeV2 episodes
(``../shared/data/bridge_debug``: 64x64, 10 steps each) with ``sam3_video`` (score threshold
0), a fixed ``labels.names`` and the consistency stage on (``max_error`` huge: nothing
flagged). The figures are the store manifest's own per-stage wall times (``seconds``: depth,
instances, voxels, consistency; ``total_seconds``), averaged per episode -- wall clock, so on
a shared machine they include waiting (the job's process CPU time is printed beside them) --
and the bytes of
``STORE/episodes/KEY`` per episode and per frame. The VLM listing stage (``ObjectLister``,
transformers backend, 3 keyframes) is timed separately with the tiny Qwen2.5-VL of
``tests/filtering_models.py`` (skipped, with the reason printed, when that cannot be
imported). Tiny models: these seconds are the pipeline's own overhead plus toy networks,
not what real models cost.

**Projected (projection_h100).** ``torch.utils.flop_counter.FlopCounterMode`` counts the FLOPs
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

    python -m benchmarks.occupancy_store [--episodes 4] [--json PATH] [--skip-real-flops]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import orv_engine  # noqa: F401  (its torch-before-TensorFlow import order)
import torch

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data" / "bridge_debug" / "bridge_dataset" / "1.0.0"
LABELS = ["robot", "pot", "spoon"]  # the fixed label set (labels.names): one SAM3 text prompt each
H100_BF16_DENSE = 989e12  # FLOP/s, H100 SXM dense bf16 (no sparsity)
# the projected BridgeV2 episode
EPISODE_FRAMES, FRAME_HW, KEYFRAMES = 38, (480, 640), 3
CONSISTENCY_SIZE, CONSISTENCY_MAX_FRAMES, RAFT_VARIANT, RAFT_UPDATES = 128, 16, "small", 12
ANSWER_TOKENS = 16
PROMPT_TEXT_TOKENS = 40  # assumption: chat template + the 19-word listing prompt + vision markers
QWEN_PATCH, QWEN_MERGE = 14, 2
QWEN_TEXT = dict(hidden_size=3584, num_hidden_layers=28, intermediate_size=18944, vocab_size=152064,
                 num_attention_heads=28, num_key_value_heads=4)
QWEN_VISION = dict(depth=32, hidden_size=1280, intermediate_size=3420, num_heads=16, out_hidden_size=3584,
                   patch_size=14, spatial_merge_size=2, temporal_patch_size=2, window_size=112,
                   fullatt_block_indexes=[7, 15, 23, 31])
STAGES = ("depth", "instances", "voxels", "consistency")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ measured: tiny models on CPU

def build_models(folder: Path) -> dict:
    """Tiny Depth Pro, SAM3 video, random RAFT small (state_dict) and, if importable, the tiny
    Qwen2.5-VL; ``models["vlm"]`` is then its folder, else ``models["vlm_skipped"]`` says why."""
    from torchvision.models.optical_flow import raft_small

    from orv_engine.testing.tiny_depth import build_tiny_depth_pro
    from orv_engine.testing.tiny_segmenters import build_tiny_sam3_video

    folder = Path(folder)
    models = {"depth_pro": build_tiny_depth_pro(folder / "depth_pro"), "sam3": build_tiny_sam3_video(folder / "sam3")}
    torch.manual_seed(0)
    models["raft"] = folder / "raft_small.pt"
    torch.save(raft_small(weights=None).state_dict(), models["raft"])
    try:
        sys.path.insert(0, str(PROJECT_ROOT / "tests"))
        from filtering_models import build_tiny_qwen2_5_vl

        models["vlm"] = build_tiny_qwen2_5_vl(folder / "qwen2_5_vl")
    except Exception as error:  # noqa: BLE001 - any failure only skips the listing timing
        models["vlm_skipped"] = f"tiny Qwen2.5-VL not built ({type(error).__name__}: {error})"
    return models


def job_values(data: Path, models: dict, episodes: int) -> dict:
    return {"dataset": {"path": str(data), "max_episodes": episodes},
            "depth": {"kind": "depth_pro", "model_path": str(models["depth_pro"])},
            "segmenter": {"kind": "sam3_video", "model_path": str(models["sam3"]), "score_threshold": 0.0},
            "labels": {"names": list(LABELS)},
            "consistency": {"raft_weights": str(models["raft"]), "raft_variant": "small", "max_error": 1e9}}


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def time_listing(job, models: dict, episodes: int) -> tuple[float | None, str | None]:
    """Mean seconds per episode of ``ObjectLister`` (transformers backend, tiny VLM, 3
    keyframes), one episode per call; the model load is not timed."""
    if "vlm" not in models:
        return None, models.get("vlm_skipped")
    from filtering.backends import make_backend
    from filtering.config import FilterConfig
    from orv_engine.occupancy.from_rgb.object_labels import ObjectLister

    lister = ObjectLister(make_backend(FilterConfig(backend="transformers", model=str(models["vlm"]))),
                          keyframes=KEYFRAMES)
    frames = {key: episode.frames[job.camera] for key, episode, _ in job._episodes(set()) if episode is not None}
    frames = dict(list(frames.items())[:episodes])
    if not frames:
        return None, "no episode read for the listing"
    seconds = []
    for key, video in frames.items():
        start = time.perf_counter()
        lister.list_objects({key: video})
        seconds.append(time.perf_counter() - start)
    return sum(seconds) / len(seconds), None


def run_cpu_tiny(data: Path, episodes: int, work: Path) -> dict:
    from orv_engine.occupancy.store.config import job_config_from_dict
    from orv_engine.occupancy.store.job import OccupancyJob
    from orv_engine.occupancy.store.store import DONE, FLAGGED, OccupancyStore

    log("building the tiny models ...")
    models = build_models(work / "models")
    log(f"orv-occupancy on the first {episodes} Bridge episodes ...")
    config = job_config_from_dict(job_values(data, models, episodes))
    job = OccupancyJob(config, work / "store", progress=False, log=log)
    start, cpu_start = time.perf_counter(), time.process_time()
    job.run(report=False)
    wall, cpu_time = time.perf_counter() - start, time.process_time() - cpu_start
    store = OccupancyStore(work / "store")
    records = store.records()
    done = {k: r for k, r in records.items() if r.get("status") in (DONE, FLAGGED)}
    if not done:
        reasons = "; ".join(f"{k}: {r.get('reason')}" for k, r in records.items())
        raise RuntimeError(f"no episode was built ({reasons or 'nothing read'})")
    n = len(done)
    seconds = {stage: sum(r["seconds"].get(stage, 0.0) for r in done.values()) / n for stage in STAGES}
    sizes = [folder_bytes(store.episode_dir(k)) for k in done]
    frames = sum(r["steps"] for r in done.values())
    log("timing the VLM listing ...")
    listing, skipped = time_listing(job, models, episodes)
    if skipped:
        print(f"VLM listing not timed: {skipped}")
    return {"episodes": n, "episodes_skipped": len(records) - n, "frames_per_episode": frames / n,
            "image_size": list(store.read_episode(next(iter(done)), include_flagged=True).image_size),
            "seconds_per_episode": seconds,
            "total_seconds_per_episode": sum(r["total_seconds"] for r in done.values()) / n,
            "job_wall_seconds": wall, "job_cpu_seconds": cpu_time,
            "vlm_listing_seconds_per_episode": listing, "vlm_listing_skipped": skipped,
            "store_bytes_per_episode": sum(sizes) / n, "store_bytes_per_frame": sum(sizes) / frames}


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


def qwen_grid(height: int, width: int) -> tuple[int, int]:
    """Qwen2.5-VL's patch grid of one image (sides rounded to multiples of 28, the default pixel range)."""
    unit = QWEN_PATCH * QWEN_MERGE
    return max(unit, round(height / unit) * unit) // QWEN_PATCH, max(unit, round(width / unit) * unit) // QWEN_PATCH


def qwen_vision_flops(vision: dict, grid: tuple[int, int]) -> int:
    """The Qwen2.5-VL vision tower on one image, counted on CPU at depth 1 (full and windowed
    attention) and depth 2 (full) and summed block by block to ``vision["depth"]`` blocks."""
    from transformers import Qwen2_5_VLConfig
    from transformers.models.qwen2_5_vl.modeling_qwen2_5_vl import Qwen2_5_VisionTransformerPretrainedModel

    gh, gw = grid
    thw = torch.tensor([[1, gh, gw]])
    pixels = torch.randn(gh * gw, 3 * vision["temporal_patch_size"] * vision["patch_size"] ** 2)

    def run(depth: int, full: list[int]) -> int:
        config = Qwen2_5_VLConfig(vision_config=dict(vision, depth=depth, fullatt_block_indexes=full)).vision_config
        config._attn_implementation = "sdpa"
        torch.manual_seed(0)
        model = Qwen2_5_VisionTransformerPretrainedModel(config).eval()
        return count_flops(lambda: model(pixels, grid_thw=thw))

    one_full, two_full, one_window = run(1, [0]), run(2, [0, 1]), run(1, [])
    full_block = two_full - one_full
    base = one_full - full_block  # patch embedding + merger
    window_block = one_window - base
    n_full = len([i for i in vision["fullatt_block_indexes"] if i < vision["depth"]])
    return base + n_full * full_block + (vision["depth"] - n_full) * window_block


def qwen_text_flops(text: dict, prompt_tokens: int, answer_tokens: int) -> int:
    """The Qwen2.5-VL language model over ``prompt + answer`` tokens (the same matmuls as a
    prefill and ``answer_tokens`` cached decode steps), ``lm_head`` on the answer positions, on ``meta``."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    config = Qwen2_5_VLConfig(text_config=dict(text), vision_config=dict(QWEN_VISION, depth=1))
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config).eval()
    length = prompt_tokens + answer_tokens
    embeds = torch.empty(1, length, text["hidden_size"], device="meta")
    positions = torch.zeros(3, 1, length, dtype=torch.long, device="meta")

    def forward():
        hidden = model.model.language_model(inputs_embeds=embeds, position_ids=positions, use_cache=False)
        model.lm_head(hidden.last_hidden_state[:, -answer_tokens:])

    return count_flops(forward)


def _attempt(flops: dict, errors: dict, name: str, fn, *args) -> None:
    start = time.perf_counter()
    try:
        flops[name] = fn(*args)
        log(f"  {name}: {flops[name] / 1e9:,.1f} GFLOP ({time.perf_counter() - start:.0f} s to count)")
    except Exception as error:  # noqa: BLE001 - recorded, never replaced by a number
        flops[name] = f"{type(error).__name__}: {error}"
        errors[name] = flops[name]
        log(f"  {name}: count failed: {flops[name]}")


def project_h100(utilisation: float) -> dict:
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
        f"heads ({len(LABELS)} text prompts here) and the tracker's memory attention / mask decoder per object "
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


# ------------------------------------------------------------------ report

def machine() -> dict:
    return {"platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None}


def table(result: dict) -> str:
    cpu = result["cpu_tiny"]
    lines = [f"orv-occupancy, tiny models on CPU: {cpu['episodes']} Bridge episodes "
             f"({cpu['frames_per_episode']:.0f} frames at {cpu['image_size'][0]}x{cpu['image_size'][1]})",
             f"{'stage':14s} {'s/episode':>10s}"]
    for stage, value in cpu["seconds_per_episode"].items():
        lines.append(f"{stage:14s} {value:10.3f}")
    lines.append(f"{'total':14s} {cpu['total_seconds_per_episode']:10.3f}")
    lines.append(f"(the whole job: {cpu['job_wall_seconds']:.1f} s wall, {cpu['job_cpu_seconds']:.1f} s of this "
                 "process's CPU time: wall >> CPU means the machine was busy)")
    listing = cpu["vlm_listing_seconds_per_episode"]
    lines.append(f"{'vlm listing':14s} " + (f"{listing:10.3f}" if listing is not None else
                                            f"{'-':>10s}  ({cpu['vlm_listing_skipped']})"))
    lines.append(f"store: {cpu['store_bytes_per_episode'] / 1024:.1f} KiB/episode, "
                 f"{cpu['store_bytes_per_frame'] / 1024:.2f} KiB/frame")
    proj = result.get("projection_h100")
    if proj:
        ep = proj["episode"]
        lines += ["", f"projection, one H100 at {proj['utilisation']:.0%} of dense bf16 peak: a BridgeV2 episode "
                      f"({ep['frames']} frames at {ep['height']}x{ep['width']}, {ep['keyframes']} keyframes)",
                  f"{'model':44s} {'GFLOP':>12s}"]
        for name, value in proj["flops_per_frame"].items():
            lines.append(f"{name:44s} " + (f"{value / 1e9:12,.1f}" if isinstance(value, int) else f"failed: {value}"))
        lines.append(f"{'stage':14s} {'GPU s/episode':>14s}")
        for stage, value in proj["seconds_per_episode"].items():
            lines.append(f"{stage:14s} {value:14.4f}")
        total = proj["total_seconds_per_episode"]
        lines.append(f"{'total':14s} " + (f"{total:14.4f}" if total is not None else f"{'incomplete':>14s}"))
        lines += [f"  - {note}" for note in proj["notes"]]
    lines.append(f"\n{result['seconds']:.0f} s")
    return "\n".join(lines)


def run(args) -> dict:
    start = time.time()
    data = Path(args.data)
    if not (data / "dataset_info.json").is_file():
        raise FileNotFoundError(f"the Bridge debug episodes are not at {data} (--data)")
    with tempfile.TemporaryDirectory(prefix="occupancy_store_bench_") as work:
        cpu = run_cpu_tiny(data, args.episodes, Path(work))
    result = {"cpu_tiny": cpu}
    if not args.skip_real_flops:
        result["projection_h100"] = project_h100(args.utilisation)
    result["machine"] = machine()
    result["seconds"] = time.time() - start
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=4, help="the first N Bridge episodes")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the Bridge debug dataset (bridge_dataset/1.0.0)")
    p.add_argument("--utilisation", type=float, default=0.40, help="fraction of the H100's dense bf16 peak")
    p.add_argument("--skip-real-flops", action="store_true", help="no FLOP count of the real-size models")
    p.add_argument("--json", metavar="PATH", help="write the figures to this JSON file")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.episodes < 1 or not 0 < args.utilisation <= 1:
        print("error: --episodes must be at least 1 and --utilisation in (0, 1]", file=sys.stderr)
        return 2
    try:
        result = run(args)
    except (FileNotFoundError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table(result))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

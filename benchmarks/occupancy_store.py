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

**Projected (projection_h100)**: ``benchmarks/occupancy_projection.py`` counts the FLOPs of
the released models and projects H100 seconds per BridgeV2 episode.

    python -m benchmarks.occupancy_store [--episodes 4] [--json PATH] [--skip-real-flops]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import orv_engine  # noqa: F401  (its torch-before-TensorFlow import order)
import torch

from benchmarks.figures import write_figures
from benchmarks.occupancy_projection import KEYFRAMES, project_h100

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data" / "bridge_debug" / "bridge_dataset" / "1.0.0"
LABELS = ["robot", "pot", "spoon"]  # the fixed label set (labels.names): one SAM3 text prompt each
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
        result["projection_h100"] = project_h100(args.utilisation, text_prompts=len(LABELS))
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
        write_figures(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

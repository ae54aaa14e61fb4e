"""Speed of the CPU Occ2GS renderers (frames per second = one view of one occupancy frame).

Scene: a tabletop occupancy on the 1 mm canonical grid (table, back and side walls, boxes),
randomly thinned to 10K / 100K / 500K occupied voxels (kept in grid order, as the occupancy
module stores them), seen by an over-the-shoulder camera
at 256x256 and 320x480 with the BridgeV2 scale preset. The naive dense reference (every
Gaussian against every pixel, same footprint and alpha rules) runs on 10K Gaussians for
the speed-up ratio (at 128x128: it evaluates every Gaussian-pixel pair). Target from issue 4: >= 30 frames/s for 100K Gaussians at 320x480 on 2
cores.

Renderers: "tiled" = the torch renderer (``project`` + ``rasterize``), "numba" = the compiled
backend (``project_numba`` + ``rasterize_numba``, the whole per-frame pipeline), "dense" = the
reference. ``--threads`` sets both torch's and numba's thread count; numba's one-time JIT
compile (or cache load) is timed separately and excluded from frames/s.

Columns: frames/s and ms/frame are means over the runs (wall clock), "best ms" the fastest
single frame (the closest to an unloaded machine), "cpu ms/frame" the process CPU time per frame
(summed over threads) and "proj cpu ms" its projection part (cull, project, depth sort). The
machine's load average is printed first: the CPU is shared, and a busy neighbour makes the
parallel parts wait (with more than one thread the projection and binning run in parallel
too; on a busy machine ``--threads 1`` can be faster), so compare wall times only between
runs at similar load.

    python -m benchmarks.occ2gs_benchmark [--threads 2] [--min-seconds 3] [--skip-torch] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import torch

from orv_engine.occupancy import render_numba
from orv_engine.occupancy.cameras import look_at, pinhole
from orv_engine.occupancy.projection import SplatSettings, project
from orv_engine.occupancy.render_dense import rasterize_dense
from orv_engine.occupancy.render_occ2gs import rasterize

VOXEL = 0.001
SIZES = ((256, 256), (320, 480))
DENSE_SIZE = (128, 128)  # the dense reference compares at this size (it is that slow)
COUNTS = (10_000, 100_000, 500_000)


def tabletop_voxels() -> np.ndarray:
    """Voxel centres of the surfaces of a 0.4-unit tabletop scene (about 560K voxels)."""
    axis = (np.arange(400) + 0.5) * VOXEL - 0.2
    a, b = np.meshgrid(axis, axis, indexing="ij")
    a, b = a.ravel(), b.ravel()
    zero = np.full_like(a, -0.2 + 0.5 * VOXEL)
    surfaces = [
        np.stack([a, b, zero], 1),  # table
        np.stack([a, -zero, b], 1),  # back wall
        np.stack([zero, a, b], 1),  # side wall
    ]
    rng = np.random.default_rng(0)
    for _ in range(6):  # boxes standing on the table
        lo = rng.uniform(-0.15, 0.05, 3)
        lo[2] = -0.2
        size = rng.uniform(0.03, 0.09, 3)
        steps = [np.arange(int(s / VOXEL)) * VOXEL for s in size]
        for fixed in range(3):
            u, v = [steps[i] for i in range(3) if i != fixed]
            uu, vv = np.meshgrid(u, v, indexing="ij")
            for side in (0.0, size[fixed]):
                face = np.zeros((uu.size, 3))
                free = [i for i in range(3) if i != fixed]
                face[:, free[0]], face[:, free[1]] = uu.ravel(), vv.ravel()
                face[:, fixed] = side
                surfaces.append(lo + face)
    voxels = np.unique(np.floor(np.concatenate(surfaces) / VOXEL).astype(np.int64), axis=0)
    return (voxels + 0.5) * VOXEL


def camera(height: int, width: int):
    focal = 0.5 * width / np.tan(np.radians(30))  # 60 degree horizontal field of view
    K = pinhole(focal, focal, (width - 1) / 2, (height - 1) / 2)
    pose = look_at([0.0, -0.55, 0.15], [0.0, 0.0, -0.1], up=(0, 0, 1))
    return torch.tensor(K), torch.tensor(pose)


def time_renders(render, min_seconds: float, max_runs: int = 50) -> tuple[float, float, float]:
    """(frames per wall-clock second, CPU seconds per frame, best wall seconds of one frame) after
    one warm-up render.

    CPU time and the best frame are reported too because on a shared machine the mean wall
    time depends on the load; with one thread, CPU seconds per frame is the renderer's own cost."""
    render()  # warm-up
    runs, start, cpu_start, best = 0, time.perf_counter(), time.process_time(), float("inf")
    while runs < max_runs and (runs < 2 or time.perf_counter() - start < min_seconds):
        frame_start = time.perf_counter()
        render()
        best = min(best, time.perf_counter() - frame_start)
        runs += 1
    return runs / (time.perf_counter() - start), (time.process_time() - cpu_start) / runs, best


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--skip-dense", action="store_true")
    parser.add_argument("--skip-torch", action="store_true", help="numba (and dense) rows only")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    use_numba = render_numba.numba_available()
    if use_numba:
        render_numba.numba.set_num_threads(min(args.threads, render_numba.numba.config.NUMBA_NUM_THREADS))
        start = time.perf_counter()  # one-time JIT compile (or load from numba's cache)
        K, pose = camera(*DENSE_SIZE)
        render_numba.render_numba(np.zeros((1, 3), np.float32), np.zeros(1, np.int64), K, pose, *DENSE_SIZE,
                                  VOXEL, SplatSettings())
        compile_seconds = time.perf_counter() - start
    all_voxels = tabletop_voxels()
    rng = np.random.default_rng(1)
    settings = SplatSettings()
    results = []
    print(f"scene: {all_voxels.shape[0]} surface voxels; torch threads: {torch.get_num_threads()}; "
          f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores (other processes slow the wall times)")
    if use_numba:
        print(f"numba {render_numba.numba.__version__}: threads {render_numba.numba.get_num_threads()}, "
              f"layer {render_numba.numba.threading_layer()}, JIT compile/cache load {compile_seconds:.2f} s (excluded)")
    else:
        print("numba not installed: numba rows skipped")
    print(f"{'gaussians':>9} {'size':>8} {'renderer':>8} {'frames/s':>9} {'ms/frame':>9} {'best ms':>8} "
          f"{'cpu ms/frame':>12} {'proj cpu ms':>11} {'fragments':>10} {'coverage':>8}")
    for count in COUNTS:
        # thinned at random, kept in grid order (as the occupancy module stores voxels)
        means = torch.tensor(all_voxels[np.sort(rng.choice(all_voxels.shape[0], count, replace=False))], dtype=torch.float32)
        labels = torch.tensor(rng.integers(0, 51, count))
        sizes = SIZES + ((DENSE_SIZE,) if count == COUNTS[0] and not args.skip_dense else ())
        for height, width in sizes:
            K, pose = camera(height, width)
            renderers = [] if args.skip_torch else [("tiled", project, rasterize)]
            if use_numba:
                renderers.append(("numba", render_numba.project_numba, render_numba.rasterize_numba))
            if (height, width) == DENSE_SIZE:
                renderers.append(("dense", project, lambda p, l, h, w, s: rasterize_dense(p, l, h, w, s, chunk=128)))
            for name, projector, raster in renderers:
                state = {"project_cpu": 0.0, "renders": 0}

                def render():
                    cpu_start = time.process_time()
                    projected = projector(means, K, pose, height, width, VOXEL, settings)
                    state["project_cpu"] += time.process_time() - cpu_start
                    state["renders"] += 1
                    state["view"] = raster(projected, labels, height, width, settings)
                    state["projected"] = projected

                fast = name != "dense"
                fps, cpu, best = time_renders(render, args.min_seconds if fast else 0.0, max_runs=50 if fast else 1)
                project_cpu = state["project_cpu"] / state["renders"]
                radius = torch.as_tensor(state["projected"].radius).long()
                fragments = int(((2 * radius + 1) ** 2).sum())
                coverage = float(state["view"].valid.float().mean())
                row = dict(gaussians=count, height=height, width=width, renderer=name, fps=fps,
                           ms_per_frame=1000 / fps, best_ms_per_frame=1000 * best, cpu_ms_per_frame=1000 * cpu,
                           project_cpu_ms_per_frame=1000 * project_cpu, footprint_pixels=fragments, coverage=coverage)
                results.append(row)
                print(f"{count:>9} {height:>3}x{width:<4} {name:>8} {fps:>9.2f} {1000 / fps:>9.1f} {1000 * best:>8.1f} "
                      f"{1000 * cpu:>12.1f} {1000 * project_cpu:>11.1f} {fragments:>10} {coverage:>8.2f}", flush=True)
    for height, width in (DENSE_SIZE,):
        pair = {r["renderer"]: r for r in results if r["gaussians"] == COUNTS[0] and (r["height"], r["width"]) == (height, width)}
        for name in ("tiled", "numba"):
            if "dense" in pair and name in pair:
                print(f"speed-up of {name} over the dense reference, {COUNTS[0]} Gaussians at {height}x{width}: "
                      f"{pair[name]['fps'] / pair['dense']['fps']:.1f}x wall, "
                      f"{pair['dense']['cpu_ms_per_frame'] / pair[name]['cpu_ms_per_frame']:.1f}x CPU time")
    for count in COUNTS:
        for height, width in SIZES:
            pair = {r["renderer"]: r for r in results if r["gaussians"] == count and (r["height"], r["width"]) == (height, width)}
            if "tiled" in pair and "numba" in pair:
                print(f"numba vs torch, {count} Gaussians at {height}x{width}: {pair['numba']['fps'] / pair['tiled']['fps']:.1f}x wall, "
                      f"{pair['tiled']['cpu_ms_per_frame'] / pair['numba']['cpu_ms_per_frame']:.1f}x CPU time")
    for name in ("tiled", "numba"):
        target = [r for r in results if r["gaussians"] == 100_000 and r["width"] == 480 and r["renderer"] == name]
        if target:
            fps = target[0]["fps"]
            verdict = "met" if fps >= 30 else f"{30 / fps:.1f}x short"
            print(f"target 30 frames/s for 100K at 320x480 ({name}): measured {fps:.2f} frames/s "
                  f"(best frame {target[0]['best_ms_per_frame']:.1f} ms = {1000 / target[0]['best_ms_per_frame']:.1f} "
                  f"frames/s), {target[0]['cpu_ms_per_frame']:.1f} CPU ms/frame ({verdict})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return results


if __name__ == "__main__":
    main()

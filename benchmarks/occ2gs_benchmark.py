"""Speed of the CPU Occ2GS renderer (frames per second = one view of one occupancy frame).

Scene: a tabletop occupancy on the 1 mm canonical grid (table, back and side walls, boxes),
randomly thinned to 10K / 100K / 500K occupied voxels, seen by an over-the-shoulder camera
at 256x256 and 320x480 with the BridgeV2 scale preset. The naive dense reference (every
Gaussian against every pixel, same footprint and alpha rules) runs on 10K Gaussians for
the speed-up ratio (at 128x128: it evaluates every Gaussian-pixel pair). Target from issue 4: >= 30 frames/s for 100K Gaussians at 320x480 on 2
cores.

    python -m benchmarks.occ2gs_benchmark [--threads 2] [--min-seconds 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

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


def time_renders(render, min_seconds: float, max_runs: int = 50) -> tuple[float, float]:
    """(frames per wall-clock second, CPU seconds per frame) after one warm-up render.

    CPU time is reported too because on a shared machine wall time depends on the load;
    with one thread, CPU seconds per frame is the renderer's own cost."""
    render()  # warm-up
    runs, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while runs < max_runs and (runs < 2 or time.perf_counter() - start < min_seconds):
        render()
        runs += 1
    return runs / (time.perf_counter() - start), (time.process_time() - cpu_start) / runs


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--skip-dense", action="store_true")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    all_voxels = tabletop_voxels()
    rng = np.random.default_rng(1)
    settings = SplatSettings()
    results = []
    print(f"scene: {all_voxels.shape[0]} surface voxels; torch threads: {torch.get_num_threads()}")
    print(f"{'gaussians':>9} {'size':>8} {'renderer':>8} {'frames/s':>9} {'ms/frame':>9} {'cpu ms/frame':>12} {'fragments':>10} {'coverage':>8}")
    for count in COUNTS:
        means = torch.tensor(all_voxels[rng.choice(all_voxels.shape[0], count, replace=False)], dtype=torch.float32)
        labels = torch.tensor(rng.integers(0, 51, count))
        sizes = SIZES + ((DENSE_SIZE,) if count == COUNTS[0] and not args.skip_dense else ())
        for height, width in sizes:
            K, pose = camera(height, width)
            renderers = [("tiled", rasterize)]
            if (height, width) == DENSE_SIZE:
                renderers.append(("dense", lambda p, l, h, w, s: rasterize_dense(p, l, h, w, s, chunk=128)))
            for name, raster in renderers:
                state = {}

                def render():
                    projected = project(means, K, pose, height, width, VOXEL, settings)
                    state["view"] = raster(projected, labels, height, width, settings)
                    state["projected"] = projected

                fps, cpu = time_renders(render, args.min_seconds if name == "tiled" else 0.0,
                                        max_runs=50 if name == "tiled" else 1)
                radius = state["projected"].radius.float()
                fragments = int(((2 * radius + 1) ** 2).sum())
                coverage = float(state["view"].valid.float().mean())
                row = dict(gaussians=count, height=height, width=width, renderer=name, fps=fps,
                           ms_per_frame=1000 / fps, cpu_ms_per_frame=1000 * cpu,
                           footprint_pixels=fragments, coverage=coverage)
                results.append(row)
                print(f"{count:>9} {height:>3}x{width:<4} {name:>8} {fps:>9.2f} {1000 / fps:>9.1f} {1000 * cpu:>12.1f} {fragments:>10} {coverage:>8.2f}", flush=True)
    for height, width in (DENSE_SIZE,):
        pair = {r["renderer"]: r["fps"] for r in results if r["gaussians"] == COUNTS[0] and (r["height"], r["width"]) == (height, width)}
        if "dense" in pair:
            print(f"speed-up over dense reference, {COUNTS[0]} Gaussians at {height}x{width}: {pair['tiled'] / pair['dense']:.1f}x")
    target = [r for r in results if r["gaussians"] == 100_000 and r["width"] == 480 and r["renderer"] == "tiled"]
    if target:
        fps = target[0]["fps"]
        verdict = "met" if fps >= 30 else f"{30 / fps:.1f}x short"
        print(f"target 30 frames/s for 100K at 320x480: measured {fps:.2f} ({verdict})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1)
    return results


if __name__ == "__main__":
    main()

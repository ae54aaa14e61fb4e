"""Clips per second for each video metric on this machine (CPU unless --device says so).

    python -m benchmarks.metrics_benchmark [--frames 16] [--size 256] [--device cpu]

Networks are random-weight copies of the real architectures (benchmarks.metrics.stand_ins)
saved and loaded in the real formats: speed does not depend on the weights, so the
figures hold for the real files. Each figure times the metric's own work on clips already
in memory (decoding is timed separately) after one warm-up call; FID and FVD figures are
feature extraction, the part that grows with the split; the Fréchet distance itself is a
one-off cost per table, timed at the real feature sizes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.metrics import stand_ins
from benchmarks.metrics.fid import InceptionFeatures
from benchmarks.metrics.frechet import frechet_distance, frechet_distance_of_features, gaussian_stats
from benchmarks.metrics.fvd import I3DFeatures
from benchmarks.metrics.lpips import LPIPSFrames
from orv_engine.data.clip_files import read_clip, write_clip
from orv_engine.evaluation import psnr_ssim


def _clips(n: int, frames: int, size: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.empty((n, frames, size, size, 3), np.uint8)
    for i in range(n):
        f = rng.uniform(0.02, 0.1, 3)
        for t in range(frames):
            out[i, t] = np.stack([127 + 120 * np.sin(f[c] * (x + 2 * t) + f[c] * y + i) for c in range(3)], -1)
    return out


def _rate(fn, n_clips: int, repeats: int = 1) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return n_clips * repeats / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--clips", type=int, default=4, help="clips per timed call of the cheap metrics")
    args = parser.parse_args(argv)
    n, t, s = args.clips, args.frames, args.size
    gen, gt = _clips(n, t, s, 0), _clips(n, t, s, 1)
    rows = []
    print(f"clips of {t} frames at {s}x{s}, device {args.device}, torch threads {torch.get_num_threads()}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for i in range(n):
            write_clip(tmp / f"c{i}.mp4", gen[i])
        rows.append(("decode mp4 (FFmpeg)", _rate(lambda: [read_clip(tmp / f"c{i}.mp4") for i in range(n)], n)))

        rows.append(("PSNR", _rate(lambda: [psnr_ssim.psnr_frames(g, r, args.device) for g, r in zip(gen, gt)], n)))
        rows.append(("SSIM", _rate(lambda: [psnr_ssim.ssim_frames(g, r, args.device) for g, r in zip(gen, gt)], n)))

        lpips = LPIPSFrames(stand_ins.save_alexnet(tmp / "alexnet.pth"), "alex", args.device)
        rows.append(("LPIPS (alex)", _rate(lambda: [lpips(g, r) for g, r in zip(gen[:2], gt[:2])], 2)))

        inception = InceptionFeatures(stand_ins.save_fid_inception(tmp / "inception.pth"), args.device)
        rows.append(("FID features (InceptionV3, 299x299, both sides)",
                     _rate(lambda: (inception(gen[0]), inception(gt[0])), 1)))

        i3d = I3DFeatures(stand_ins.save_i3d_torchscript(tmp / "i3d.pt", frames=t), "styleganv", args.device)
        rows.append((f"FVD@{t} features (I3D TorchScript, 224x224, both sides)",
                     _rate(lambda: (i3d(gen[:1]), i3d(gt[:1])), 1)))

    print(f"\n{'metric':<58} {'clips/s':>9} {'s/clip':>8}")
    for name, rate in rows:
        print(f"{name:<58} {rate:9.3f} {1 / rate:8.3f}")

    rng = np.random.default_rng(0)
    print("\nFréchet distance, once per table:")
    for dim, samples in ((400, 2048), (2048, 4096), (2048, 512)):
        a, b = rng.normal(size=(samples, dim)), rng.normal(size=(samples, dim))
        start = time.perf_counter()
        if samples > dim:
            frechet_distance(*gaussian_stats(a), *gaussian_stats(b))
            route = "scipy sqrtm"
        else:
            frechet_distance_of_features(a, b)
            route = "low-rank (nuclear norm)"
        print(f"  {dim}-d features, {samples} samples per side ({route}): {time.perf_counter() - start:.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Score a folder of generated clips against a folder of ground truth: the paper's Table 1.

    python -m benchmarks.metrics.table1 GENERATED_DIR GT_DIR \\
        --inception pt_inception-2015-12-05-6726825d.pth --i3d i3d_torchscript.pt \\
        --fvd-lengths 8 16 --out results/bridge_orv

prints a markdown table with PSNR, SSIM, FID and FVD (plus FVD at each clip length asked
for, and LPIPS when its backbone weights are given) and writes it to ``--out`` as
``table1.csv``, ``table1.json`` (with the settings and notes) and ``table1.md``, with the
per-clip PSNR/SSIM/LPIPS in ``per_clip.csv``.

Clips pair by name (see ``orv_engine.data.clip_files``); every pair is checked (names, frame counts, sizes)
before any network runs. Clips stream through one pair at a time, so the split need not
fit in memory; the networks see batches of ``--batch-size`` frames (FID) and
``batch-size // length`` clips (FVD). What the numbers mean: docs/metrics.md.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

from benchmarks.metrics.features import FeatureBank
from benchmarks.metrics.fid import InceptionFeatures
from benchmarks.metrics.frechet import frechet_distance_of_features
from benchmarks.metrics.fvd import I3DFeatures
from benchmarks.metrics.lpips import LPIPSFrames
from orv_engine.console import add_verbose_argument, quiet
from orv_engine.data import clip_files
from orv_engine.device import resolve_device
from orv_engine.evaluation import psnr_ssim

HIGHER_IS_BETTER = {"PSNR": True, "SSIM": True}


def evaluate(
    generated_dir: str | Path,
    ground_truth_dir: str | Path,
    *,
    inception: str | Path | None = None,
    i3d: str | Path | None = None,
    i3d_variant: str = "styleganv",
    fvd_lengths: tuple[int, ...] = (16,),
    lpips_backbone: str | Path | None = None,
    lpips_net: str = "alex",
    device: str = "auto",
    batch_size: int = 64,
    skip_first_frames: int = 0,
    method: str | None = None,
    log=None,
) -> dict:
    """Compute every metric for the paired folders; returns the JSON-ready result."""
    log = log or (lambda message: None)
    dev = resolve_device(device)
    pairs = clip_files.pair_clips(generated_dir, ground_truth_dir)
    shapes = clip_files.check_pairs(pairs)
    n_frames = sorted({s[0] for s in shapes})
    sizes = sorted({(s[1], s[2]) for s in shapes})
    if skip_first_frames >= n_frames[0]:
        raise ValueError(f"--skip-first-frames {skip_first_frames} leaves no frame in {n_frames[0]}-frame clips")
    log(f"{len(pairs)} clip pairs, {'/'.join(map(str, n_frames))} frames, device {dev}")

    notes: list[str] = []
    fid_banks = None
    if inception is not None:
        extractor = InceptionFeatures(inception, dev)
        fid_banks = (FeatureBank(extractor, batch_size), FeatureBank(extractor, batch_size))
    else:
        notes.append("FID not computed: no --inception weights given")

    fvd_banks: dict[int, tuple[FeatureBank, FeatureBank]] = {}
    fvd_ddof = 0
    if i3d is not None:
        extractor3d = I3DFeatures(i3d, i3d_variant, dev)
        fvd_ddof = extractor3d.ddof
        for length in sorted(set(fvd_lengths)):
            if length > n_frames[0]:
                notes.append(f"FVD@{length} not computed: the shortest clips have {n_frames[0]} frames")
                continue
            per_batch = max(1, batch_size // length)
            fvd_banks[length] = (FeatureBank(extractor3d, per_batch), FeatureBank(extractor3d, per_batch))
    else:
        notes.append("FVD not computed: no --i3d weights given")

    lpips_fn = None
    if lpips_backbone is not None:
        lpips_fn = LPIPSFrames(lpips_backbone, lpips_net, dev, batch_size=batch_size)

    per_clip = []
    failed_lengths: dict[int, str] = {}
    for i, pair in enumerate(pairs):
        gen, gt = clip_files.read_pair(pair)
        g, t = gen[skip_first_frames:], gt[skip_first_frames:]
        psnr = psnr_ssim.psnr_frames(g, t, dev)
        ssim = psnr_ssim.ssim_frames(g, t, dev)
        clip_psnr, identical = psnr_ssim.finite_mean(psnr)
        row = {
            "name": pair.name,
            "frames": int(len(g)),
            "psnr": clip_psnr,
            "ssim": float(ssim.mean()),
            "identical_frames": identical,
        }
        if lpips_fn is not None:
            row["lpips"] = float(lpips_fn(g, t).mean())
        per_clip.append(row)
        if fid_banks is not None:
            fid_banks[0].add(g)
            fid_banks[1].add(t)
        for length, (bank_gen, bank_gt) in fvd_banks.items():
            if length in failed_lengths:
                continue
            try:
                bank_gen.add(gen[None, :length])
                bank_gt.add(gt[None, :length])
            except ValueError as error:  # ClipTooShortError: this length cannot be scored
                failed_lengths[length] = str(error)
        if (i + 1) % max(1, len(pairs) // 10) == 0 or i + 1 == len(pairs):
            log(f"scored {i + 1}/{len(pairs)} clips")

    metrics: dict[str, float | None] = {}
    metrics["PSNR"], _ = psnr_ssim.finite_mean([r["psnr"] for r in per_clip])
    metrics["SSIM"] = float(np.mean([r["ssim"] for r in per_clip]))
    metrics["LPIPS"] = float(np.mean([r["lpips"] for r in per_clip])) if lpips_fn is not None else None
    identical_frames = sum(r["identical_frames"] for r in per_clip)
    identical_clips = sum(1 for r in per_clip if math.isinf(r["psnr"]))
    if identical_frames:
        notes.append(
            f"{identical_frames} frame(s) identical to ground truth (PSNR inf) left out of the PSNR mean"
            + (f"; {identical_clips} clip(s) entirely identical" if identical_clips else "")
        )

    metrics["FID"] = None
    if fid_banks is not None:
        try:
            metrics["FID"] = frechet_distance_of_features(fid_banks[0].features(), fid_banks[1].features(), ddof=1)
        except ValueError as error:
            notes.append(f"FID not computed: {error}")
    fvd_by_length: dict[int, float | None] = {}
    for length, (bank_gen, bank_gt) in fvd_banks.items():
        value = None
        if length in failed_lengths:
            notes.append(f"FVD@{length} not computed: {failed_lengths[length]}")
        else:
            try:
                value = frechet_distance_of_features(bank_gen.features(), bank_gt.features(), ddof=fvd_ddof)
            except ValueError as error:
                notes.append(f"FVD@{length} not computed: {error}")
        fvd_by_length[length] = value
    metrics["FVD"] = fvd_by_length[max(fvd_by_length)] if fvd_by_length else None
    for length in sorted(fvd_by_length):
        metrics[f"FVD@{length}"] = fvd_by_length[length]

    return {
        "method": method or Path(generated_dir).name,
        "generated_dir": str(generated_dir),
        "ground_truth_dir": str(ground_truth_dir),
        "clips": len(pairs),
        "frames_per_clip": n_frames,
        "frame_sizes_hw": [list(s) for s in sizes],
        "metrics": metrics,
        "psnr_identical_frames": identical_frames,
        "psnr_identical_clips": identical_clips,
        "notes": notes,
        "settings": {
            "device": str(dev),
            "skip_first_frames": skip_first_frames,
            "psnr": "per frame on RGB uint8 (data range 255); mean over finite frames, then over clips",
            "ssim": "per frame, RGB, gaussian sigma 1.5 (11 taps), K1 0.01, K2 0.03, data range 255, "
            "population covariance = skimage structural_similarity(gaussian_weights=True, "
            "use_sample_covariance=False); mean over frames, then clips",
            "lpips": f"lpips v0.1 {lpips_net}, backbone {lpips_backbone}" if lpips_fn is not None else None,
            "fid": f"pytorch-fid InceptionV3 pool3 (2048-d), all frames, unbiased covariance; weights {inception}"
            if inception is not None else None,
            "fvd": f"I3D {i3d_variant} logits (400-d), first L frames of each clip, 224x224, [-1, 1], "
            f"covariance ddof={fvd_ddof}; weights {i3d}; FVD = FVD@{max(fvd_by_length)}"
            if fvd_by_length else None,
        },
        "per_clip": per_clip,
    }


def _columns(result: dict) -> list[str]:
    metrics = result["metrics"]
    cols = ["PSNR", "SSIM"]
    if metrics.get("LPIPS") is not None:
        cols.append("LPIPS")
    cols += ["FID", "FVD"]
    cols += sorted((k for k in metrics if k.startswith("FVD@")), key=lambda k: int(k[4:]))
    return cols


def _fmt(value: float | None) -> str:
    if value is None:
        return "–"
    if math.isinf(value):
        return "inf"
    return f"{value:.3f}"


def markdown(result: dict) -> str:
    cols = _columns(result)
    arrows = ["↑" if HIGHER_IS_BETTER.get(c, False) else "↓" for c in cols]
    lines = [
        "| Method | " + " | ".join(c + a for c, a in zip(cols, arrows)) + " |",
        "|---|" + "---|" * len(cols),
        f"| {result['method']} | " + " | ".join(_fmt(result["metrics"][c]) for c in cols) + " |",
    ]
    lines.append("")
    lines.append(
        f"{result['clips']} clips, {'/'.join(map(str, result['frames_per_clip']))} frames each"
        + (f", first {result['settings']['skip_first_frames']} frame(s) skipped for PSNR/SSIM/LPIPS/FID"
           if result["settings"]["skip_first_frames"] else "")
        + "."
    )
    lines += [f"- {note}" for note in result["notes"]]
    return "\n".join(lines) + "\n"


def _json_safe(value):
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_outputs(result: dict, out_dir: str | Path) -> dict[str, Path]:
    """Write table1.csv / table1.json / table1.md / per_clip.csv into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / name for name in ("table1.csv", "table1.json", "table1.md", "per_clip.csv")}
    cols = _columns(result)
    with open(paths["table1.csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["method", "clips"] + cols)
        writer.writerow([result["method"], result["clips"]] + [
            "" if result["metrics"][c] is None else repr(float(result["metrics"][c])) for c in cols])
    paths["table1.json"].write_text(json.dumps(_json_safe(result), indent=2, allow_nan=False) + "\n")
    paths["table1.md"].write_text(markdown(result))
    keys = list(result["per_clip"][0].keys())
    with open(paths["per_clip.csv"], "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(result["per_clip"])
    return paths


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orv-metrics",
        description="PSNR, SSIM, FID and FVD (the paper's Table 1) of generated clips against ground truth.",
    )
    p.add_argument("generated_dir", help="folder of generated clips (.mp4/.gif/.npy or folders of PNG frames)")
    p.add_argument("ground_truth_dir", help="folder of ground-truth clips with the same names")
    p.add_argument("--inception", help="pytorch-fid FID Inception weights (pt_inception-2015-12-05-6726825d.pth); "
                                       "FID is skipped without it")
    p.add_argument("--i3d", help="I3D weights: StyleGAN-V's i3d_torchscript.pt (or VideoGPT's "
                                 "i3d_pretrained_400.pt with --i3d-variant videogpt); FVD is skipped without it")
    p.add_argument("--i3d-variant", choices=("styleganv", "videogpt"), default="styleganv")
    p.add_argument("--fvd-lengths", type=int, nargs="+", default=[16], metavar="L",
                   help="clip lengths to report FVD at (first L frames of each clip); FVD column = the largest")
    p.add_argument("--lpips-backbone", help="torchvision ImageNet weights of the LPIPS backbone "
                                            "(alexnet-owt-7be5be79.pth for --lpips-net alex); LPIPS is skipped without it")
    p.add_argument("--lpips-net", choices=("alex", "vgg", "squeeze"), default="alex")
    p.add_argument("--skip-first-frames", type=int, default=0, metavar="K",
                   help="leave the first K frames (e.g. the given observation) out of PSNR/SSIM/LPIPS/FID")
    p.add_argument("--device", default="auto", help="auto (first CUDA GPU, else CPU), cpu, cuda, cuda:1, ...")
    p.add_argument("--batch-size", type=int, default=64, help="frames per network batch (FVD: this // length clips)")
    p.add_argument("--method", help="row label (default: the generated folder's name)")
    p.add_argument("--out", help="folder to write table1.csv/.json/.md and per_clip.csv into")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    return add_verbose_argument(p)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet(args.verbose)  # before any model is loaded
    log = (lambda message: None) if args.quiet else (lambda message: print(message, file=sys.stderr, flush=True))
    try:
        result = evaluate(
            args.generated_dir, args.ground_truth_dir,
            inception=args.inception, i3d=args.i3d, i3d_variant=args.i3d_variant,
            fvd_lengths=tuple(args.fvd_lengths), lpips_backbone=args.lpips_backbone, lpips_net=args.lpips_net,
            device=args.device, batch_size=args.batch_size, skip_first_frames=args.skip_first_frames,
            method=args.method, log=log,
        )
    except (clip_files.ClipPairError, FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(markdown(result), end="")
    if args.out:
        paths = write_outputs(result, args.out)
        log("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

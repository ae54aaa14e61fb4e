"""The small ORV's ablation (paper Sec. 4.4 / Table 7 in miniature): PSNR / SSIM of its four
variants on held-out simulated WidowX clips, and the coarse/fine condition swap.

Variants (``orv_engine.small.VARIANTS``, same budget and seeds): (a) ``no_actions`` (null
action token), (b) ``actions``, (c) ``actions_occupancy`` (+ depth and semantics rendered from
the 4D occupancy: "coarse"), (d) ``actions_fine`` (+ the simulator's own depth and
segmentation: "fine"). Swap: (c) evaluated on fine maps (``coarse_on_fine``) and (d) on
coarse maps (``fine_on_coarse``), each with its PSNR drop against its own maps. And (b) run
with the null action token (``null_token.actions``): how much of (b)'s lead over (a) its
actions carry; the repository ships (b) and (c) only, so this is the CI test's stand-in for (a).
Variants missing from ``--weights`` are left out of the table (and said so). Two reference
rows frame the numbers: ``copy_first_frame`` (every frame is the given one: what a model that
learnt no motion scores) and ``vae_reconstruction`` (the clips through the VAE alone: the
ceiling of any rollout it decodes).

Clips: the first ``--clips`` of the dataset's ``val`` split in file order, cut as training
cuts them (``configs/small``: preset ``sim``, 17 real frames at 64x64, a clip every 8 steps)
with both kinds of maps, cached in ``--heldout`` (``orv_engine.small.heldout``; redone when
the dataset or clip settings differ). Scores: the generated frames 1..16 of each rollout
against ground truth (``orv_engine.small.evaluate``), one seeded generator per clip.

    python -m benchmarks.small_ablation --json outputs/small/ablation.json --sheets docs/figures/small_orv
    python -m benchmarks.small_ablation --clips 20 --steps 10      # a quicker look

Weights: ``orv_engine/pretrained/small_orv`` (``orv_engine.small``); data:
``outputs/small/data/orv_tabletop/1.0.0`` (``orv-sim generate ...``, see the error message).
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import torch

from benchmarks.figures import write_figures
from orv_engine.data.rlds_reader import resolve_dataset_dir
from orv_engine.small import SMALL_ORV_DIR, VARIANTS, present_variants, small_orv_available
from orv_engine.small.evaluate import (
    copy_first_frame,
    evaluate_pipeline,
    evaluate_variant,
    load_variant_pipeline,
    vae_reconstruction,
    write_contact_sheet,
)
from orv_engine.small.heldout import (
    MAKE_DATA_HINT,
    MAPS_VERSION,
    SMALL_CLIP,
    SMALL_PRESET,
    auto_renderer,
    extract_heldout_clips,
    heldout_clip_config,
    load_heldout,
    read_metadata,
    save_heldout,
)

DEFAULT_DATA = Path("outputs/small/data/orv_tabletop/1.0.0")
DEFAULT_HELDOUT = Path("outputs/small/heldout_val.npz")
SWAPS = {  # name: (variant, the other condition source)
    "coarse_on_fine": ("actions_occupancy", "episode"),
    "fine_on_coarse": ("actions_fine", "occupancy"),
}
MAKE_WEIGHTS_HINT = ("make them with\n  python -m orv_engine.small.reproduce --ship\n(make reproduce-small; "
                     "the unshipped copy it assembles is outputs/small/shipped, usable with --weights)")


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def heldout_clips(data: Path, cache: Path, count: int, split: str = "val"):
    """The first ``count`` clips of ``split``, from ``cache`` when it was made from the same
    dataset and clip settings (and holds enough of them), else extracted and cached."""
    expected = {"dataset": str(Path(data).expanduser().resolve()), "split": split, "maps_version": MAPS_VERSION,
                "clip_config": heldout_clip_config(SMALL_PRESET, SMALL_CLIP).to_dict()}
    if cache.is_file():
        metadata = read_metadata(cache)
        info = metadata.get("info", {})
        same = all(info.get(k) == v for k, v in expected.items() if k != "clip_config") and \
            metadata.get("clip_config") == expected["clip_config"]
        enough = len(metadata["clips"]) >= count or info.get("complete", False)
        if same and enough:
            log(f"held-out clips: {cache} (cached)")
            return load_heldout(cache)[:count]
        log(f"held-out clips: {cache} was made from other data, settings or fewer clips; extracting again")
    try:
        resolve_dataset_dir(data)
    except ValueError:
        raise FileNotFoundError(f"no dataset at {data}: make it with\n  {MAKE_DATA_HINT}") from None
    log(f"held-out clips: cutting {count} {split} clips of {data} and rendering their maps ...")
    clips = extract_heldout_clips(data, split, count)
    save_heldout(cache, clips, info={**{k: v for k, v in expected.items() if k != "clip_config"},
                                     "complete": len(clips) < count, "renderer": auto_renderer()})
    log(f"held-out clips: {len(clips)} cached in {cache}")
    return clips


def release(pipe) -> None:
    del pipe
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run(args) -> dict:
    start = time.time()
    weights = Path(args.weights)
    present = present_variants(weights)
    if not small_orv_available(weights, variants=()) or not present:
        raise FileNotFoundError(f"the small ORV weights are not at {weights}: {MAKE_WEIGHTS_HINT}")
    missing = [name for name in VARIANTS if name not in present]
    if missing:
        log(f"not in {weights}, left out: {', '.join(missing)} (all four: --weights outputs/small/shipped)")
    clips = heldout_clips(Path(args.data), Path(args.heldout), args.clips, args.split)
    common = dict(num_inference_steps=args.steps, seed=args.seed, batch_size=args.batch_size,
                  keep_videos=bool(args.sheets))
    results, swaps, null_token = {}, {}, {}
    reference = {"copy_first_frame": copy_first_frame(clips)}
    for name in present:
        t = time.time()
        pipe = load_variant_pipeline(weights, name, args.device, args.dtype)
        if "vae_reconstruction" not in reference:
            reference["vae_reconstruction"] = vae_reconstruction(pipe, clips, args.batch_size)
            log(f"VAE reconstruction: PSNR {reference['vae_reconstruction'].psnr:.2f}; copying the first frame: "
                f"{reference['copy_first_frame'].psnr:.2f}")
        results[name] = evaluate_variant(weights, name, clips, pipeline=pipe, **common)
        log(f"{name}: PSNR {results[name].psnr:.2f} SSIM {results[name].ssim:.4f} ({time.time() - t:.0f} s)")
        for swap, (variant, source) in SWAPS.items():
            if variant == name:
                swaps[swap] = evaluate_variant(weights, name, clips, source, pipeline=pipe, **common)
                log(f"{swap}: PSNR {swaps[swap].psnr:.2f} SSIM {swaps[swap].ssim:.4f}")
        if name == "actions":
            null_token[name] = evaluate_pipeline(pipe, clips, uses_actions=False, name=f"{name}_null_token",
                                                 **common)
            log(f"{name} with the null action token: PSNR {null_token[name].psnr:.2f}")
        release(pipe)
    if args.sheets:
        sheets = Path(args.sheets)
        for name, result in [*results.items(), *swaps.items()]:
            write_contact_sheet(result, clips, sheets / f"{name}.png", max_clips=args.sheet_clips)
        log(f"contact sheets in {sheets}")
    first = next(iter(results.values()))
    return {
        "variants": {name: {"psnr": r.psnr, "ssim": r.ssim} for name, r in results.items()},
        "null_token": {name: {"psnr": r.psnr, "ssim": r.ssim} for name, r in null_token.items()},
        "reference": {name: {"psnr": r.psnr, "ssim": r.ssim} for name, r in reference.items()},
        "swap": {swap: {"psnr": r.psnr, "ssim": r.ssim, "psnr_drop": results[SWAPS[swap][0]].psnr - r.psnr}
                 for swap, r in swaps.items()},
        "clips": len(clips),
        "settings": {
            "weights": str(weights), "data": str(args.data), "heldout": str(args.heldout), "split": args.split,
            "clip": {"preset": SMALL_PRESET, **clips[0].config.to_dict()},
            "steps": {name: r.num_inference_steps for name, r in results.items()},
            "seed": args.seed, "batch_size": args.batch_size, "device": args.device, "dtype": args.dtype,
            "scored_frames": list(first.scored_frames),
        },
        "seconds": time.time() - start,
    }


def table(result: dict) -> str:
    letters = {name: v.letter for name, v in VARIANTS.items()}
    maps = {name: {"occupancy": "coarse", "episode": "fine", None: "-"}[v.conditions] for name, v in VARIANTS.items()}
    lines = [f"small ORV ablation: {result['clips']} held-out clips, frames "
             f"{result['settings']['scored_frames'][0]}..{result['settings']['scored_frames'][1]} scored",
             "", f"{'variant':24s} {'maps':7s} {'PSNR':>7s} {'SSIM':>7s}"]
    for name, r in result["variants"].items():
        lines.append(f"({letters[name]}) {name:20s} {maps[name]:7s} {r['psnr']:7.2f} {r['ssim']:7.4f}")
    for name, r in result.get("reference", {}).items():
        lines.append(f"    {name:20s} {'-':7s} {r['psnr']:7.2f} {r['ssim']:7.4f}")
    for name, r in result.get("null_token", {}).items():
        lines.append(f"({letters[name]}) {name + ' + null token':20s} {maps[name]:7s} {r['psnr']:7.2f} {r['ssim']:7.4f}")
    lines += ["", f"{'swap (Table 7)':24s} {'maps':7s} {'PSNR':>7s} {'SSIM':>7s} {'PSNR drop':>10s}"]
    for swap, r in result["swap"].items():
        variant, source = SWAPS[swap]
        label = f"({letters[variant]}) {variant}"
        lines.append(f"{label:24s} {'fine' if source == 'episode' else 'coarse':7s} {r['psnr']:7.2f} "
                     f"{r['ssim']:7.4f} {r['psnr_drop']:10.2f}")
    lines.append(f"\n{result['seconds']:.0f} s")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--weights", default=str(SMALL_ORV_DIR), help="the small ORV folder (default: the shipped one)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="the simulated RLDS dataset (orv_tabletop/1.0.0)")
    p.add_argument("--heldout", default=str(DEFAULT_HELDOUT), help="cache of the held-out clips (.npz)")
    p.add_argument("--split", default="val")
    p.add_argument("--clips", type=int, default=100, help="first N clips of the split")
    p.add_argument("--steps", type=int, default=None, help="sampling steps (default: each checkpoint's own)")
    p.add_argument("--seed", type=int, default=0, help="clip i is sampled with seed + i")
    p.add_argument("--batch-size", type=int, default=8, help="clips per pipeline call")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
                   help="auto: bfloat16 on GPU, float32 on CPU")
    p.add_argument("--json", metavar="PATH", help="write the figures to this JSON file")
    p.add_argument("--sheets", metavar="DIR", help="write a contact sheet PNG per variant (and swap) here")
    p.add_argument("--sheet-clips", type=int, default=4, help="clips per contact sheet")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.clips < 1:
        print("error: --clips must be at least 1", file=sys.stderr)
        return 2
    try:
        result = run(args)
    except (FileNotFoundError, ValueError, KeyError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(table(result))
    if args.json:
        write_figures(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Table 1's protocol end to end: generate a held-out split with ORV, then score it.

    python -m benchmarks.metrics.generation_eval CHECKPOINT_DIR DATA_DIR --preset bridge \\
        --split val --out results/bridge_val [--conditions COND_DIR] \\
        --inception pt_inception-2015-12-05-6726825d.pth --i3d i3d_torchscript.pt

For every clip of the split (``orv_engine.data.ClipDataset``, no shuffling, in file
order) the world model gets the clip's first frame, its per-frame actions (and condition
maps, when given) and generates the clip's frames: with the paper's presets 16 frames,
i.e. 15 predicted from one observation. Generated and ground-truth clips are written as
lossless ``.npy`` under ``OUT/generated`` and ``OUT/ground_truth`` with the same names, then
scored by ``table1`` into ``OUT/metrics``: the same folders and numbers the folder
command gives, so a run can be re-scored later without generating again.

Condition maps (the "Occ. + Action" rows) come from ``--conditions``: one ``NAME.npz`` per
clip holding an array per condition kind of the transformer (``depth``, ``semantics``),
``(F, H, W)`` or ``(F, H, W, 3)`` at the clip's size, as rendered by
``orv_engine.occupancy``. Without it, clips that carry their own ``Clip.conditions`` use
those, others are generated from actions alone (the "Action-conditioned" rows).

Each clip gets its own generator seeded ``seed + clip index``, so results do not depend on
the batch size.
"""

from __future__ import annotations

import argparse
import gc
import json
import re
import sys
from pathlib import Path

import numpy as np
import torch

from benchmarks.metrics import table1
from orv_engine.console import add_verbose_argument, quiet
from orv_engine.data.clip_dataset import ClipDataset
from orv_engine.data.clip_files import write_clip
from orv_engine.data.clips import clip_config
from orv_engine.device import resolve_device
from orv_engine.pipelines import ORVPipeline


def clip_name(clip, index: int) -> str:
    """``<index>_<episode>_<camera>_<start>``, safe as a file name and unique per clip."""
    raw = f"{index:05d}_{clip.episode_id}_{clip.camera}_{clip.start:05d}"
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", raw)


def held_out_clips(data_dir, preset: str, split: str = "val", max_clips: int | None = None,
                   camera: str | None = None, dataset: str | None = None, preprocessing=None):
    """The split's clips in a fixed order (first ``max_clips`` of them), their actions in the
    checkpoint's action convention (``preprocessing``, an ``ORVPreprocessing``)."""
    overrides = {"camera": camera} if camera else {}
    if preprocessing is not None and preprocessing.action_convention != "dataset":
        overrides.update(action_convention=preprocessing.action_convention, action_scale=preprocessing.action_scale)
    clips = ClipDataset(data_dir, clip_config(preset, **overrides), dataset=dataset, split=split,
                        shuffle=False, rank=0, world_size=1, as_clips=True)
    for i, clip in enumerate(clips):
        if max_clips is not None and i >= max_clips:
            return
        yield clip


def frame_actions(clip, action_chunk: int = 4) -> np.ndarray:
    """Per-frame actions (one per generated frame) from the clip's chunk-aligned actions: every
    row after the reference chunk (4k of them for a 4k+1-frame clip)."""
    actions = clip.actions[action_chunk:]
    if not clip.action_mask[action_chunk:].all():
        raise ValueError(
            f"clip {clip.episode_id}@{clip.start}: {int((~clip.action_mask[action_chunk:]).sum())} padded action rows "
            f"for {clip.num_real_frames} frames"
        )
    return actions


def _conditions(clip, name: str, conditions_dir: Path | None, kinds: list[str]) -> dict | None:
    if not kinds:
        return None
    if conditions_dir is not None:
        path = conditions_dir / f"{name}.npz"
        if not path.is_file():
            raise FileNotFoundError(f"no condition maps for clip {name!r}: expected {path} with arrays {kinds}")
        with np.load(path) as maps:
            missing = [k for k in kinds if k not in maps.files]
            if missing:
                raise ValueError(f"{path} lacks condition kinds {missing} (has {maps.files})")
            return {k: maps[k] for k in kinds}
    if clip.conditions and all(k in clip.conditions for k in kinds):
        return {k: np.asarray(clip.conditions[k])[: clip.num_real_frames] for k in kinds}
    return None


def generate(pipe, clips, out_dir, *, steps: int | None = None, seed: int = 0, batch_size: int = 1,
             guidance_scale: float | None = None, action_guidance_scale: float = 1.0, prompt: str = "auto",
             conditions_dir: str | Path | None = None, log=None) -> tuple[Path, Path, list[str]]:
    """Generate every clip; write ``generated/NAME.npy`` and ``ground_truth/NAME.npy``."""
    log = log or (lambda message: None)
    out = Path(out_dir)
    gen_dir, gt_dir = out / "generated", out / "ground_truth"
    gen_dir.mkdir(parents=True, exist_ok=True)
    gt_dir.mkdir(parents=True, exist_ok=True)
    conditions_dir = Path(conditions_dir) if conditions_dir is not None else None
    kinds = list(getattr(pipe.transformer, "condition_kinds", []) or [])
    pre = pipe.transformer.preprocessing  # "auto" prompt: what the checkpoint was trained with
    prompt_of = {"instruction": lambda c: c.instruction, "empty": lambda c: "",
                 "auto": lambda c: pre.prompt_for(c.instruction)}[prompt]
    generator_device = "cpu"  # CPU generators: the same noise on every machine
    names: list[str] = []

    def run(batch):
        items = [(clip, name) for clip, name in batch]
        conds = [_conditions(c, n, conditions_dir, kinds) for c, n in items]
        if any(c is None for c in conds) and not all(c is None for c in conds):
            raise ValueError("some clips of a batch have condition maps and others not: use --batch-size 1")
        stacked = None if conds[0] is None else {k: np.stack([c[k] for c in conds]) for k in kinds}
        first = np.stack([c.frames[0] for c, _ in items])
        height, width = first.shape[1:3]
        result = pipe(
            image=first,
            actions=np.stack([frame_actions(c) for c, _ in items]),
            conditions=stacked,
            prompt=[prompt_of(c) for c, _ in items],
            height=height, width=width,
            num_inference_steps=steps, guidance_scale=guidance_scale,
            action_guidance_scale=action_guidance_scale,
            generator=[torch.Generator(generator_device).manual_seed(seed + len(names) + i) for i in range(len(items))],
            output_type="np",
        ).frames
        for (clip, name), video in zip(items, np.asarray(result)):
            frames = np.clip(np.rint(video * 255.0), 0, 255).astype(np.uint8)
            write_clip(gen_dir / f"{name}.npy", frames)
            write_clip(gt_dir / f"{name}.npy", clip.frames[: len(frames)])  # the frames the actions drive
            names.append(name)
        log(f"generated {len(names)} clips")

    batch = []
    for index, clip in enumerate(clips):
        batch.append((clip, clip_name(clip, index)))
        if len(batch) == batch_size:
            run(batch)
            batch = []
    if batch:
        run(batch)
    if not names:
        raise ValueError("the split has no clips (episodes shorter than one clip, or an empty split)")
    return gen_dir, gt_dir, names


def load_pipeline(checkpoint: str | Path, device: str = "auto", dtype: str = "auto", transformer=None):
    dev = resolve_device(device)
    if dtype == "auto":
        dtype = "bfloat16" if dev.type == "cuda" else "float32"
    extra = {} if transformer is None else {"transformer": str(transformer)}
    pipe = ORVPipeline.from_pretrained(str(checkpoint), dtype=getattr(torch, dtype), **extra)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(dev)


def _release_gpu_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="orv-eval",
        description="Generate a held-out split with an ORV checkpoint and score it (the paper's Table 1).",
    )
    p.add_argument("checkpoint", help="ORV pipeline folder (diffusers format), or a CogVideoX-2B folder with --transformer")
    p.add_argument("--transformer", help="an ORV transformer folder to use instead of the checkpoint's (e.g. the "
                   "official ORV weights, converted on load)")
    p.add_argument("data", help="local TFDS/RLDS dataset folder")
    p.add_argument("--preset", default="bridge", help="clip preset of orv_engine.data.clips (bridge, droid, rt1, ...)")
    p.add_argument("--split", default="val")
    p.add_argument("--dataset", help="schema kind (bridge, droid, rt1); default from the dataset name")
    p.add_argument("--camera", help="camera to evaluate (default: the preset's / the first one)")
    p.add_argument("--max-clips", type=int, help="first N clips of the split")
    p.add_argument("--conditions", help="folder of NAME.npz condition maps (Occ. + Action rows)")
    p.add_argument("--steps", type=int, default=None, help="default: the checkpoint's (50)")
    p.add_argument("--guidance-scale", type=float, default=None, help="default: the checkpoint's (1.0)")
    p.add_argument("--action-guidance-scale", type=float, default=1.0)
    p.add_argument("--prompt", choices=("auto", "instruction", "empty"), default="auto",
                   help="auto: what the checkpoint was trained with (empty for the official weights)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gen-batch-size", type=int, default=1, help="clips per pipeline call")
    p.add_argument("--dtype", choices=("auto", "float32", "bfloat16", "float16"), default="auto",
                   help="auto: bfloat16 on GPU, float32 on CPU")
    p.add_argument("--out", required=True, help="run folder: generated/, ground_truth/, metrics/")
    # scoring, as in table1
    p.add_argument("--inception")
    p.add_argument("--i3d")
    p.add_argument("--i3d-variant", choices=("styleganv", "videogpt"), default="styleganv")
    p.add_argument("--fvd-lengths", type=int, nargs="+", default=[16], metavar="L")
    p.add_argument("--lpips-backbone")
    p.add_argument("--lpips-net", choices=("alex", "vgg", "squeeze"), default="alex")
    p.add_argument("--skip-first-frames", type=int, default=0, metavar="K")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=64, help="frames per metric-network batch")
    p.add_argument("--method", help="row label (default: the checkpoint folder's name)")
    p.add_argument("--quiet", action="store_true")
    return add_verbose_argument(p)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet(args.verbose)  # before any model is loaded
    log = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))
    try:
        pipe = load_pipeline(args.checkpoint, args.device, args.dtype, args.transformer)
        clips = held_out_clips(args.data, args.preset, args.split, args.max_clips, args.camera, args.dataset,
                               pipe.transformer.preprocessing)
        gen_dir, gt_dir, names = generate(
            pipe, clips, args.out, steps=args.steps, seed=args.seed, batch_size=args.gen_batch_size,
            guidance_scale=args.guidance_scale, action_guidance_scale=args.action_guidance_scale,
            prompt=args.prompt, conditions_dir=args.conditions, log=log,
        )
        del pipe  # free the GPU for the metric networks
        _release_gpu_memory()
        result = table1.evaluate(
            gen_dir, gt_dir, inception=args.inception, i3d=args.i3d, i3d_variant=args.i3d_variant,
            fvd_lengths=tuple(args.fvd_lengths), lpips_backbone=args.lpips_backbone, lpips_net=args.lpips_net,
            device=args.device, batch_size=args.batch_size, skip_first_frames=args.skip_first_frames,
            method=args.method or Path(args.checkpoint).name, log=log,
        )
    except (FileNotFoundError, ValueError, KeyError, TypeError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result["generation"] = {
        "checkpoint": str(args.checkpoint), "transformer": args.transformer, "data": str(args.data), "preset": args.preset, "split": args.split,
        "clips": len(names), "steps": args.steps, "seed": args.seed, "guidance_scale": args.guidance_scale,
        "action_guidance_scale": args.action_guidance_scale, "prompt": args.prompt,
        "conditions": str(args.conditions) if args.conditions else None,
    }
    print(table1.markdown(result), end="")
    table1.write_outputs(result, Path(args.out) / "metrics")
    (Path(args.out) / "metrics" / "generation.json").write_text(json.dumps(result["generation"], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

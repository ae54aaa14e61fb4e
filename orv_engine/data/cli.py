"""``orv-data``: look at an RLDS dataset and the clips ORV would train on.

    orv-data info  PATH
    orv-data clips PATH --preset bridge --split train --out outputs/clips
    orv-data clips orv_engine/demo_data/orv_tabletop --preset sim --conditions
    orv-data view  PATH --episode 0 --out outputs/view/episode0.rrd     (Rerun; or --spawn / --serve)
    orv-data view  RUN --unit UNIT_ID --out outputs/view/unit.rrd

``clips`` reads the episodes, cuts clips with a Table 9 preset (``--preset``, overridable
with ``--frames/--height/--width/--stride/--interval``), prints a summary and a report of
skipped episodes, and writes ``contact_sheet.png`` and ``summary.json`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from orv_engine.data.clips import PRESETS, cut_clips
from orv_engine.data.contact_sheet import contact_sheet
from orv_engine.data.errors import DatasetError, SkipReport
from orv_engine.console import add_verbose_argument, quiet
from orv_engine.data.rlds_reader import RLDSReader
from orv_engine.occupancy import clip_condition_maps
from orv_engine.viewer import rerun_view


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orv-data", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="print the dataset's schema, splits and cameras")
    info.add_argument("path", help="local TFDS folder, e.g. ~/tfds/bridge_dataset/1.0.0")
    info.add_argument("--dataset", help="schema: bridge, droid or rt1 (default: from the tfds name)")

    clips = sub.add_parser("clips", help="cut clips, print a summary, write a contact sheet")
    clips.add_argument("path", help="local TFDS folder, e.g. ~/tfds/bridge_dataset/1.0.0")
    clips.add_argument("--dataset", help="schema: bridge, droid or rt1 (default: from the tfds name)")
    clips.add_argument("--split", default="train", help="split to read (default: train)")
    clips.add_argument("--preset", default="bridge", choices=sorted(PRESETS),
                       help="clip settings of the paper's Table 9 (default: bridge)")
    clips.add_argument("--camera", help="image key to cut clips from (default: the main camera)")
    clips.add_argument("--frames", type=int, help="real frames per clip (with the placeholder, 4k+1 frames go to the VAE)")
    clips.add_argument("--height", type=int, help="sample height")
    clips.add_argument("--width", type=int, help="sample width")
    clips.add_argument("--stride", type=int, help="frame stride Δf1")
    clips.add_argument("--interval", type=int, help="clip interval Δf2 for this split")
    clips.add_argument("--max-episodes", type=int, default=None, help="stop after this many episodes")
    clips.add_argument("--sheet-rows", type=int, default=8, help="clips shown in the contact sheet")
    clips.add_argument("--conditions", action="store_true",
                       help="for episodes with depth and cameras (simulation): build their 4D occupancy and "
                            "render depth/semantic condition maps of the contact-sheet clips")
    clips.add_argument("--strict", action="store_true", help="fail on the first bad episode instead of skipping it")
    clips.add_argument("--out", default="outputs/clips", help="output folder (default: outputs/clips)")

    view = sub.add_parser("view", help="log an episode (or a run's unit) to Rerun: a .rrd file or a live viewer")
    view.add_argument("path", help="local TFDS folder (with --episode) or an orv-augment run folder (with --unit)")
    what = view.add_mutually_exclusive_group(required=True)
    what.add_argument("--episode", type=int, help="episode index in the split (0-based, file order)")
    what.add_argument("--unit", help="a unit of the run: the name of its folder RUN/rollouts/UNIT")
    view.add_argument("--dataset", help="schema: bridge, droid or rt1 (default: from the tfds name)")
    view.add_argument("--split", default="train", help="split to read (default: train)")
    view.add_argument("--occupancy", metavar="STORE", help="an orv-occupancy store: the episode's voxels, camera "
                                                           "and rendered depth/semantics come from it")
    view.add_argument("--voxels", choices=rerun_view.VOXEL_KINDS, default="points",
                      help="draw voxels as points (default, light) or boxes")
    sink = view.add_mutually_exclusive_group()
    sink.add_argument("--out", help="write a .rrd file (default: outputs/view/episode-N.rrd or unit-ID.rrd)")
    sink.add_argument("--spawn", action="store_true", help="stream to a Rerun viewer started here")
    sink.add_argument("--serve", action="store_true", help="serve over gRPC for a viewer to connect to (Ctrl-C ends)")
    return add_verbose_argument(parser)  # on each subcommand too: add subcommands above


def _config(args):
    config = PRESETS[args.preset]
    overrides = {
        "num_frames": args.frames, "height": args.height, "width": args.width,
        "frame_stride": args.stride, "camera": args.camera,
    }
    if args.interval is not None:
        overrides["clip_interval" if args.split == "train" else "val_clip_interval"] = args.interval
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


def cmd_info(args) -> int:
    reader = RLDSReader(args.path, dataset=args.dataset)
    info = reader.builder.info
    print(f"dataset  {info.name} {info.version} at {reader.path}")
    print(f"schema   {reader.schema.kind}  (cameras in schema: {', '.join(reader.schema.cameras)})")
    for name, split in info.splits.items():
        print(f"split    {name}: {split.num_examples} episodes in {split.num_shards} file(s)")
    print(f"images   {', '.join(f'{k} {v}' for k, v in reader._declared_shape.items())}")
    return 0


def cmd_clips(args) -> int:
    config = _config(args)
    report = SkipReport()
    reader = RLDSReader(
        args.path, dataset=args.dataset, split=args.split,
        cameras=[config.camera] if config.camera else None,
        on_bad="raise" if args.strict else "skip", report=report,
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    episodes = clips_total = 0
    absent = {}
    sheet_clips, actions, lengths, instructions = [], [], [], set()
    for episode in reader:
        episodes += 1
        lengths.append(len(episode))
        instructions.add(episode.instruction)
        for cam in episode.meta.absent_cameras:
            absent[cam] = absent.get(cam, 0) + 1
        clips = cut_clips(episode, config, args.split, report)
        clips_total += len(clips)
        for clip in clips:
            actions.append(clip.actions[clip.action_mask])
        if clips and len(sheet_clips) < args.sheet_rows:
            if args.conditions and episode.depth is not None:
                clips[0].conditions.update(clip_condition_maps(episode, clips[0]))
            sheet_clips.append(clips[0])
        if args.max_episodes and episodes >= args.max_episodes:
            break
    seconds = time.perf_counter() - t0

    summary = {
        "dataset": str(reader.path), "schema": reader.schema.kind, "split": args.split,
        "clip_config": config.to_dict(), "episodes": episodes, "clips": clips_total,
        "episode_steps": {"min": int(min(lengths, default=0)), "max": int(max(lengths, default=0)),
                          "mean": float(np.mean(lengths)) if lengths else 0.0},
        "distinct_instructions": len(instructions), "absent_cameras": absent,
        "skipped": dict(report.counts), "seconds": round(seconds, 3),
    }
    print(f"read {episodes} episodes of {reader.path} ({reader.schema.kind}, split {args.split}) in {seconds:.2f}s")
    print(f"cut {clips_total} clips: {config.total_frames} frames ({config.num_frames} + placeholder) "
          f"at {config.height}x{config.width}, stride {config.frame_stride}, interval {config.interval(args.split)}, "
          f"{config.num_latent_frames} latent frames, actions {config.action_chunk * config.num_latent_frames}x{config.action_dim}")
    print(f"episode length {summary['episode_steps']}, {len(instructions)} distinct instructions")
    if absent:
        print("absent cameras: " + ", ".join(f"{k} in {v} episodes" for k, v in absent.items()))
    if actions:
        stacked = np.concatenate(actions)
        summary["action_mean"] = stacked.mean(0).round(5).tolist()
        summary["action_std"] = stacked.std(0).round(5).tolist()
        print("action mean " + np.array2string(stacked.mean(0), precision=4, suppress_small=True))
        print("action std  " + np.array2string(stacked.std(0), precision=4, suppress_small=True))
    print(report.format())
    if sheet_clips:
        sheet = contact_sheet(sheet_clips, out / "contact_sheet.png")
        summary["contact_sheet"] = str(sheet)
        print(f"contact sheet: {sheet}")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"summary: {out / 'summary.json'}")
    return 0 if clips_total else 1


def cmd_view(args) -> int:
    name = f"episode-{args.episode}" if args.unit is None else f"unit-{args.unit}"
    sink = dict(out=args.out or f"outputs/view/{name}.rrd", spawn=args.spawn, serve=args.serve)
    if args.unit is not None:
        where, logged = rerun_view.view_unit(args.path, args.unit, **sink)
    else:
        where, logged = rerun_view.view_episode(args.path, args.episode, split=args.split, dataset=args.dataset,
                                                occupancy_store=args.occupancy, voxels=args.voxels, **sink)
    print(f"logged {logged['steps']} steps, {len(logged['entities'])} entities to {where}")
    if args.serve:
        rerun_view.serve_until_interrupted()
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    quiet(args.verbose)  # before TensorFlow is imported
    try:
        return {"info": cmd_info, "clips": cmd_clips, "view": cmd_view}[args.command](args)
    except (DatasetError, ValueError, KeyError) as err:
        print(f"orv-data: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

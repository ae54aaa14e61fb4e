"""``orv-export``: kept clips -> RLDS (BridgeV2 schema), mixtures with BridgeV2, LeRobot.

    orv-export export  CLIPS... --out DIR [--name orv_bridge] [--image-size 256 256]
    orv-export merge   --bridge BRIDGE_DIR --synthetic EXPORT_DIR --out DIR [--synthetic-fraction 0.25]
                       [--physical [NAME]]
    orv-export lerobot CLIPS... --out DIR [--repo-id local/orv_bridge] [--fps 5]

``CLIPS`` are clip folders (``clip.npz`` + ``clip.json``, see ``ExportClip.save``) or
folders holding them (searched recursively). Exit status 2 on bad input, with the reason.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Sequence as SequenceABC
from pathlib import Path
from typing import Sequence

from orv_engine.console import add_verbose_argument, quiet
from vla_finetune.clip_record import ExportClip, ExportError
from vla_finetune.lerobot_export import export_lerobot

# The RLDS commands (export, merge) import their modules when they run: those load
# orv_engine.data (diffusers, transformers, scipy, TensorFlow), which the lerobot side venv
# (scripts/setup_lerobot_venv.sh), where `orv-export lerobot` runs, does not have.


def find_clip_dirs(paths: Sequence[str]) -> list[Path]:
    found: list[Path] = []
    for path in map(Path, paths):
        if (path / "clip.json").is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p.parent for p in path.rglob("clip.json")))
        else:
            raise FileNotFoundError(f"{path}: no such clip folder")
    if not found:
        raise FileNotFoundError(f"no clip folders (clip.json + clip.npz) under {', '.join(paths)}")
    return found


class ClipFolders(SequenceABC):
    """Clip folders as a lazy sequence: each clip is loaded when indexed."""

    def __init__(self, folders: Sequence[Path]):
        self.folders = list(folders)

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return ClipFolders(self.folders[index])
        return ExportClip.load(self.folders[index])


def _cmd_export(args) -> dict:
    from vla_finetune.export import ExportConfig, bytes_per_episode, export_clips  # noqa: PLC0415  (see above)

    folders = find_clip_dirs(args.clips)
    config = ExportConfig(name=args.name, version=args.version, image_size=tuple(args.image_size),
                          jpeg_quality=args.jpeg_quality, val_fraction=args.val_fraction,
                          check_relabel=not args.no_relabel_check, overwrite=args.overwrite)
    result = export_clips(ClipFolders(folders), args.out, config)
    return {"path": str(result.path), "episodes": result.episodes, "steps": result.steps, "bytes": result.bytes,
            "bytes_per_episode": bytes_per_episode(result), "seconds": round(result.seconds, 2)}


def _cmd_merge(args) -> dict:
    from vla_finetune.merge import merge_datasets  # noqa: PLC0415  (see above)
    from vla_finetune.mixture import write_mixture  # noqa: PLC0415

    summary = {"mixture": write_mixture(args.bridge, args.synthetic, args.out,
                                        synthetic_fraction=args.synthetic_fraction)}
    if args.physical:
        summary["merged"] = merge_datasets(args.bridge, args.synthetic, args.out, name=args.physical,
                                           synthetic_fraction=args.synthetic_fraction, overwrite=args.overwrite)
    return summary


def _cmd_lerobot(args) -> dict:
    folders = find_clip_dirs(args.clips)
    return export_lerobot(ClipFolders(folders), args.out, repo_id=args.repo_id, fps=args.fps,
                          image_size=tuple(args.image_size), overwrite=args.overwrite)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orv-export", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("export", help="kept clips -> a TFDS/RLDS dataset in BridgeV2's schema")
    p.add_argument("clips", nargs="+")
    p.add_argument("--out", required=True, help="data_dir: the dataset goes to OUT/NAME/VERSION")
    p.add_argument("--name", default="orv_bridge")
    p.add_argument("--version", default="1.0.0")
    p.add_argument("--image-size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    p.add_argument("--jpeg-quality", type=int, default=95)
    p.add_argument("--val-fraction", type=float, default=0.0)
    p.add_argument("--no-relabel-check", action="store_true",
                   help="skip the check that states agree with actions (Octo/OpenVLA relabel from states)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=_cmd_export)

    p = sub.add_parser("merge", help="BridgeV2 + export: union statistics, mixture weights, optional merged dataset")
    p.add_argument("--bridge", required=True, help="BridgeV2 TFDS folder (.../bridge_dataset[/1.0.0])")
    p.add_argument("--synthetic", required=True, help="the export's TFDS folder")
    p.add_argument("--out", required=True)
    p.add_argument("--synthetic-fraction", type=float, default=0.25)
    p.add_argument("--physical", nargs="?", const="bridge_orv_merged", default=None, metavar="NAME",
                   help="also write one merged dataset OUT/NAME/1.0.0")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=_cmd_merge)

    p = sub.add_parser("lerobot", help="kept clips -> a LeRobot dataset (needs the lerobot package)")
    p.add_argument("clips", nargs="+")
    p.add_argument("--out", required=True, help="root folder of the LeRobot dataset")
    p.add_argument("--repo-id", default="local/orv_bridge")
    p.add_argument("--fps", type=int, default=5, help="BridgeV2 is recorded at 5 Hz")
    p.add_argument("--image-size", type=int, nargs=2, default=(256, 256), metavar=("H", "W"))
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(run=_cmd_lerobot)
    return add_verbose_argument(parser)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet(args.verbose)  # before any model is loaded or TensorFlow imported
    try:
        with contextlib.redirect_stdout(sys.stderr):  # tfds prints progress: stdout carries only the summary
            summary = args.run(args)
    except (ExportError, FileNotFoundError, ImportError) as err:
        print(f"orv-export {args.command}: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

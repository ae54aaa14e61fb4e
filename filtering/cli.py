"""``orv-filter``: cheap checks, captions and scores for a folder of clips; keep/drop.

    orv-filter CLIPS_DIR --out outputs/filter --config filter.yaml
    orv-filter CLIPS_DIR --backend openai --set openai.base_url=http://127.0.0.1:8000/v1 --model Qwen/Qwen2.5-VL-7B-Instruct
    orv-filter CLIPS_DIR --checks-only                       # no VLM: cheap checks alone
    orv-filter --write-config filter.yaml                    # the default config, to edit

Writes to ``--out``: ``verdicts.parquet`` (one row per clip: every score, check and
reason), ``verdicts.jsonl`` (appended batch by batch; ``--resume`` skips the clips it
already holds), ``kept.txt`` and ``summary.json``. Exit status 0 whenever the run went
through (unscored clips are recorded, not errors), 1 when not one clip could be read, 2 for
bad arguments or config or a folder without clips. ``orv-filter RUN/rollouts`` reads an
``orv-augment`` run's unit folders (``UNIT/video.mp4``) directly.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from filtering.backends import VLMServerError, make_backend
from filtering.clip_source import clips_from_folder
from filtering.config import BACKENDS, FilterConfig
from filtering.scoring import FilterPipeline
from filtering.selection import select, select_by_checks, summarize
from filtering.table import append_jsonl, read_jsonl, write_verdicts
from orv_engine import config_validation
from orv_engine.config_validation import config_epilog
from orv_engine.console import add_verbose_argument, quiet
from orv_engine.weight_files import CheckpointError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orv-filter", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=config_epilog(FilterConfig))
    p.add_argument("clips", nargs="?", help="folder of clips (.mp4/.gif/.npy or folders of frames)")
    p.add_argument("--config", help="YAML config (see --write-config)")
    p.add_argument("--out", default="outputs/filter", help="output folder (default: outputs/filter)")
    p.add_argument("--backend", choices=BACKENDS, help="override the config's backend")
    p.add_argument("--model", help="override the config's model (a local folder, or the served name)")
    p.add_argument("--conditions", help="folder of <clip>.npz condition maps (depth/semantics) for the occupancy check")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set vllm.tensor_parallel_size=4 (repeatable; keys below)")
    p.add_argument("--checks-only", action="store_true", help="run the cheap checks only (no VLM)")
    p.add_argument("--resume", action="store_true", help="skip clips already in OUT/verdicts.jsonl")
    p.add_argument("--limit", type=int, help="only the first N clips")
    p.add_argument("--write-config", metavar="PATH",
                   help="write the (default or given) config as YAML, every key explained, and exit")
    return add_verbose_argument(p)


def load_config(args) -> FilterConfig:
    """``--config`` (or the defaults) with ``--set``, ``--backend`` and ``--model`` applied."""
    overrides = list(args.set)
    if args.backend:
        overrides.append(f"backend={args.backend}")
    if args.model:
        overrides.append(f"model={json.dumps(args.model)}")
    if args.config:
        return config_validation.load_config(FilterConfig, args.config, overrides)
    return config_validation.config_from_dict(FilterConfig, None, overrides)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    quiet(args.verbose)  # before any model is loaded or TensorFlow imported
    try:
        config = load_config(args)
    except (ValueError, OSError) as error:
        print(f"orv-filter: bad config: {error}", file=sys.stderr)
        return 2
    if args.write_config:
        print(config.save(args.write_config, comments=True))
        return 0
    if not args.clips:
        print("orv-filter: give a folder of clips (or --write-config PATH)", file=sys.stderr)
        return 2
    if not args.checks_only and not config.model:
        print("orv-filter: no model: set `model` in the config or pass --model (or use --checks-only)", file=sys.stderr)
        return 2

    try:
        clips, ignored = clips_from_folder(args.clips, args.conditions)
    except FileNotFoundError as error:
        print(f"orv-filter: {error}", file=sys.stderr)
        return 2
    if ignored:
        print(f"ignored {len(ignored)} entries that are not clips: {', '.join(ignored[:5])}{' ...' if len(ignored) > 5 else ''}")
    if not clips:
        print(f"orv-filter: no clip in {args.clips}: a clip is a video (.mp4 .avi .mov .mkv .webm), .gif, .npy, a "
              "folder of .png/.jpg frames, or an orv-augment unit folder holding video.mp4 (RUN/rollouts)",
              file=sys.stderr)
        return 2
    if args.limit:
        clips = clips[: args.limit]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    journal = out / "verdicts.jsonl"
    previous = read_jsonl(journal) if args.resume else []
    if not args.resume and journal.exists():
        journal.unlink()
    done = {v.clip for v in previous}
    todo = [c for c in clips if c.name not in done]
    config.save(out / "config.yaml")
    print(f"{len(clips)} clips ({len(done)} already done), backend "
          f"{'none (checks only)' if args.checks_only else config.backend}, model {config.model or '-'}")

    backend = None
    start = time.perf_counter()
    if not args.checks_only and todo:
        try:
            backend = make_backend(config)
        except (VLMServerError, CheckpointError) as error:
            print(f"orv-filter: {error}", file=sys.stderr)
            return 2
    if backend is not None:
        print(f"model loaded in {time.perf_counter() - start:.1f} s")
    if args.checks_only:
        config.caption = config.score = False
    pipeline = FilterPipeline(config, backend)
    start = time.perf_counter()

    def progress(chunk):
        append_jsonl(chunk, journal)
        n = sum(1 for _ in open(journal, encoding="utf-8"))
        print(f"  {n}/{len(clips)} clips, {time.perf_counter() - start:.1f} s")

    try:
        verdicts = previous + pipeline.run(todo, on_batch=progress)
    finally:
        if backend is not None:
            backend.close()
    order = {c.name: i for i, c in enumerate(clips)}
    verdicts = sorted((v for v in verdicts if v.clip in order), key=lambda v: order[v.clip])
    if args.checks_only:
        select_by_checks(verdicts)
    else:
        select(verdicts, config.selection)
    write_verdicts(verdicts, out / "verdicts.parquet")
    (out / "kept.txt").write_text("".join(f"{v.clip}\n" for v in verdicts if v.keep))
    summary = summarize(verdicts)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(f"kept {summary['kept']} of {summary['clips']} clips; status {summary['status']}; "
          f"failed checks {summary['failed_checks']}")
    for v in verdicts:
        print(f"  {'KEEP' if v.keep else 'DROP'} {v.clip}: {v.reason}")
    print(f"verdicts: {out / 'verdicts.parquet'}")
    unreadable = [v for v in verdicts if (v.error or "").startswith("unreadable")]
    if verdicts and len(unreadable) == len(verdicts):
        print(f"orv-filter: none of the {len(verdicts)} clips in {args.clips} could be read "
              f"(first: {unreadable[0].clip}: {unreadable[0].error})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

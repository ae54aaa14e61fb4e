"""``orv-augment``: the augmentation loop, one subcommand per stage and ``run`` for all.

    orv-augment run --config my_run.yaml --run-dir runs/bridge_aug          # the whole loop
    orv-augment run --config my_run.yaml --run-dir runs/x --shard 3/8       # per-unit stages, 1/8 of the episodes
    orv-augment run --config my_run.yaml --run-dir runs/x --ray auto        # first frames + rollouts on a Ray cluster
    orv-augment rollouts --config my_run.yaml --run-dir runs/x              # one stage
    orv-augment status --run-dir runs/x
    orv-augment demo                                                         # the embedded dataset, small/tiny models
    orv-augment --write-config defaults.yaml                                 # every option with its default

Every stage resumes: rerun the same command after a crash or a kill and it continues where
it stopped (the run directory's manifest records each finished unit). Exit codes: 0 done,
1 finished with failed units, 2 bad config / missing inputs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from augment.config import AugmentConfig, load_config
from augment.demo import run_demo
from augment.manifest import RunState, all_shards
from augment.ray_runner import RayAugmentRun
from augment.runner import ALL_STAGES, AugmentRun
from filtering.backends import VLMServerError
from orv_engine.config_validation import ConfigError, config_epilog
from orv_engine.console import add_verbose_argument, quiet
from orv_engine.data.sharding import parse_shard
from orv_engine.models.checkpoint_files import CheckpointError

# subcommand -> the stages it runs (augment.runner's names: hyphens here, underscores there)
STAGE_COMMANDS = {
    "sources": ("sources",), "first-frames": ("first_frames",), "rollouts": ("rollouts",), "score": ("scores",),
    "filter": ("filter",), "export": ("export",), "merge": ("merge",), "report": ("report",),
}
STAGE_HELP = {
    "sources": "read source episodes, render their occupancy conditions (RUN/sources)",
    "first-frames": "paint N new first frames per episode with FLUX + ControlNet (RUN/first_frames)",
    "rollouts": "roll each first frame out with ORV under the episode's actions (RUN/rollouts)",
    "score": "cheap checks + VLM caption/score per rollout (RUN/verdicts)",
    "filter": "keep/drop over all scored rollouts (RUN/verdicts.parquet, RUN/kept.txt)",
    "export": "kept rollouts -> RLDS in BridgeV2's schema (RUN/export)",
    "merge": "mixture with BridgeV2: shared statistics and weights (RUN/mixture)",
    "report": "RUN/report.html: contact sheets, timings, counts, score histograms",
}


def _common(p: argparse.ArgumentParser, config_required: bool = True) -> None:
    p.add_argument("--config", required=config_required, help="the run's YAML config (see --write-config)")
    p.add_argument("--run-dir", required=True, help="where everything of the run goes; rerun to resume")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set rollout.num_inference_steps=25 (repeatable; "
                        "keys: orv-augment --help)")
    p.add_argument("--shard", metavar="I/N", help="do only shard I of N of the episodes (per-unit stages)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run first frames and rollouts on Ray actors (one per GPU); ADDRESS 'auto' joins a running "
                        "cluster, no value starts a local one")
    p.add_argument("--retry-failed", action="store_true",
                   help="put failed units back at the stage they failed in (after fixing the cause) before running")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orv-augment", description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join([*__doc__.split("\n\n")[1:], config_epilog(AugmentConfig)]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-config", metavar="PATH", help="write the default config as YAML, every key explained, and exit")
    sub = parser.add_subparsers(dest="command")
    p = sub.add_parser("run", help="every stage in order (per-unit stages only with --shard)")
    _common(p)
    p.add_argument("--stages", nargs="+", choices=[s for v in STAGE_COMMANDS.values() for s in v],
                   help="only these stages (default: all)")
    for name, help_text in STAGE_HELP.items():
        _common(sub.add_parser(name, help=help_text))
    p = sub.add_parser("status", help="units per stage, skipped episodes, run-wide stages")
    p.add_argument("--run-dir", required=True)
    p = sub.add_parser("demo", help="the whole loop on the embedded ManiSkill dataset: the small ORV trained here "
                                    "if its weights are present (else a tiny random one), tiny random FLUX")
    p.add_argument("--out", default="outputs/demo/augment", help="models, config and run go here")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--variants", type=int, default=2, help="painted variants per episode (besides the replay)")
    p.add_argument("--world-model", metavar="PATH",
                   help="an ORVPipeline folder to roll out with (default: orv_engine/pretrained/small_orv if present, "
                        "else a tiny random ORV); its checkpoint's size, clip length and steps are used")
    p.add_argument("--steps", type=int, metavar="N", help="ORV sampling steps (default: the checkpoint's; 4 for the "
                                                          "tiny random ORV)")
    p.add_argument("--no-progress", action="store_true")
    return add_verbose_argument(parser)


def _status(run_dir: str) -> dict:
    shards = all_shards(run_dir)
    if not shards:
        raise FileNotFoundError(f"{run_dir}: no manifest (not an orv-augment run directory)")
    stages: dict[str, int] = {}
    for shard in shards:
        for rec in shard["units"].values():
            stages[rec["stage"]] = stages.get(rec["stage"], 0) + 1
    episodes = [e for s in shards for e in s["episodes"].values()]
    return {"shards": len(shards), "episodes": len(episodes),
            "skipped_episodes": sum(e["status"] == "skipped" for e in episodes), "units": stages,
            "run_stages": {k: v.get("status") for k, v in RunState(run_dir).data["stages"].items()}}


def run_command(args, stages) -> dict:
    config = load_config(args.config, args.set)
    shard = parse_shard(args.shard)
    if args.ray:
        runner = RayAugmentRun(config, args.run_dir, shard, progress=not args.no_progress,
                               address=None if args.ray == "local" else args.ray)
    else:
        runner = AugmentRun(config, args.run_dir, shard, progress=not args.no_progress)
    if args.retry_failed:
        retried = runner.manifest.retry_failed()
        print(f"retrying {len(retried)} failed unit(s)", file=sys.stderr)
    return runner.run(stages)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet(args.verbose)  # before any model is loaded or TensorFlow imported
    try:
        if args.write_config:
            print(AugmentConfig().save(args.write_config, comments=True))
            return 0
        if args.command is None:
            parser.print_help()
            return 2
        if args.command == "status":
            print(json.dumps(_status(args.run_dir), indent=1))
            return 0
        if args.command == "demo":
            summary = run_demo(Path(args.out), args.episodes, args.variants, progress=not args.no_progress,
                               world_model=args.world_model, num_inference_steps=args.steps)
        else:
            stages = (args.stages or ALL_STAGES) if args.command == "run" else STAGE_COMMANDS[args.command]
            summary = run_command(args, stages)
    except (ConfigError, FileNotFoundError, ValueError, VLMServerError, CheckpointError) as err:
        # nothing is lost: finished units stay finished and a rerun goes on from them
        print(f"orv-augment: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    if summary.get("report"):
        print(f"report: {summary['report']}")
    if summary.get("export"):
        print(f"exported dataset: {summary['export']}")
    return 1 if summary.get("units", {}).get("failed") else 0


if __name__ == "__main__":
    sys.exit(main())

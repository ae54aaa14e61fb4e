"""``orv-occupancy``: an RLDS dataset (RGB only or with depth) -> its 4D occupancy store.

    orv-occupancy --write-config occupancy.yaml          # every key, explained
    orv-occupancy run --config occupancy.yaml --store STORE [--shard I/N] [--ray [ADDRESS] --workers N]
    orv-occupancy report --config occupancy.yaml --store STORE
    orv-occupancy status --store STORE

Rerun the same command to resume (a SIGKILL loses at most the episode in flight).
docs/occupancy.md, "Occupancy for BridgeV2, step by step", has the real-checkpoint recipe.
"""

from __future__ import annotations

import argparse
import json
import sys

from orv_engine.config_validation import ConfigError
from orv_engine.console import add_verbose_argument, quiet
from orv_engine.data.errors import DatasetError
from orv_engine.data.sharding import parse_shard
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.store.config import OccupancyJobConfig, load_job_config
from orv_engine.occupancy.store.job import OccupancyJob, ShardsPending, run_with_ray, summary
from orv_engine.occupancy.store.report import write_report
from orv_engine.occupancy.store.store import OccupancyStore


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="orv-occupancy", description=__doc__.split("\n\n")[0],
                                     epilog=__doc__.split("\n\n", 1)[1],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write-config", metavar="PATH", help="write the default config, every key explained, and exit")
    sub = parser.add_subparsers(dest="command")
    run = sub.add_parser("run", help="build (or resume) the store")
    report = sub.add_parser("report", help="rewrite STORE/report/index.html")
    for p in (run, report):
        p.add_argument("--config", required=True, help="the job's YAML config")
        p.add_argument("--store", required=True, help="the store folder (beside the dataset, e.g. DATASET_occupancy)")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key")
    run.add_argument("--shard", metavar="I/N", help="only shard I of N of the episodes")
    run.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                     help="every shard as a Ray task (a local cluster, or ADDRESS)")
    run.add_argument("--workers", type=int, default=2, help="with --ray: the number of shards")
    run.add_argument("--gpus-per-worker", type=float, default=0.0, help="with --ray: GPUs each task asks for")
    run.add_argument("--no-progress", action="store_true", help="no progress bars")
    status = sub.add_parser("status", help="counts and skip reasons as JSON")
    status.add_argument("--store", required=True)
    return add_verbose_argument(parser)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet(args.verbose)  # before any model is loaded or TensorFlow imported
    try:
        if args.write_config:
            path = OccupancyJobConfig().save(args.write_config, comments=True)
            print(f"wrote {path}")
            return 0
        if args.command is None:
            parser.error("give a command (run, report, status) or --write-config")
        if args.command == "status":
            print(json.dumps(summary(OccupancyStore(args.store)), indent=1))
            return 0
        config = load_job_config(args.config, args.set)
        if args.command == "report":
            print(f"wrote {write_report(OccupancyStore(args.store), config)}")
            return 0
        if args.ray:
            if args.shard:
                parser.error("--ray runs every shard itself; leave out --shard")
            result = run_with_ray(config, args.store, args.workers, None if args.ray == "local" else args.ray,
                                  args.gpus_per_worker)
        else:
            job = OccupancyJob(config, args.store, parse_shard(args.shard), progress=not args.no_progress)
            result = job.run()
            if job.read_report:
                print(f"orv-occupancy: the reader skipped {job.read_report.total} unreadable episode(s): "
                      f"{dict(job.read_report.counts)}", file=sys.stderr)
    except ShardsPending as err:
        print(f"orv-occupancy: {err}", file=sys.stderr)
        return 3
    except (ConfigError, OccupancyInputError, DatasetError, ValueError) as err:
        print(f"orv-occupancy: {err}", file=sys.stderr)
        return 2
    counts = result["counts"]
    print(f"orv-occupancy: {result['episodes']} episode(s): "
          + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
          + f"; report {args.store}/report/index.html")
    for key, reason in sorted(result["skipped"].items())[:20]:
        print(f"  {key}: {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

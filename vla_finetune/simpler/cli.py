"""``orv-simpler``: evaluate a policy on SimplerEnv's WidowX tasks (ManiSkill3 digital twins).

    orv-simpler --policy runs/robovlm/final --suite bridge --out eval/robovlm     # paper Table 3
    orv-simpler --policy scripted --suite ci --out eval/ci                        # what CI runs
    orv-simpler --policy runs/spatialvla/final --tasks carrot_on_plate --episodes 24

Writes episodes.jsonl, metrics.json/.csv, success_by_task.png and per-episode videos. A killed
evaluation resumes: run the same command again and only the missing episodes run.
Episode ``e`` of a Bridge task runs SimplerEnv's configuration ``episode_id = seed + e``
(``--seed``, default 0 as SimplerEnv's ``-s 0``): the same seed gives the same scenes.
A saved policy runs with its own execution convention (its config's chunk execution)
unless ``--execution`` / ``--execute-steps`` are given.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from orv_engine.console import add_verbose_argument, quiet
from vla_finetune.simpler.evaluate import EvaluationFolderError, evaluate
from vla_finetune.simpler.tasks import BRIDGE_SUITE, CI_SUITE, TASKS


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="orv-simpler", description=__doc__.split("\n\n")[0],
                                epilog="tasks: " + ", ".join(TASKS), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--policy", required=True, help="a saved policy folder (orv-vla-train output), 'scripted' (privileged harness check) "
                   "or module:Class of any VLAPolicy implementation")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--suite", choices=("bridge", "ci"), default="bridge",
                       help="bridge: the four Table 3 tasks (24 episodes each, 192 for the eggplant); "
                       "ci: the tasks whose assets ship here")
    group.add_argument("--tasks", nargs="+", help="task names or ManiSkill environment ids")
    p.add_argument("--episodes", type=int, help="episodes per task (default: the task's protocol)")
    p.add_argument("--max-steps", type=int, help="override the task's step budget")
    p.add_argument("--seed", type=int, default=0,
                   help="first episode's seed and Bridge episode_id (SimplerEnv's -s; episode e uses seed + e)")
    p.add_argument("--execution", choices=("chunk", "ensemble"),
                   help="override the policy's own convention: run predicted action chunks (chunk) or ACT-style "
                   "temporal ensembling (default: what the policy folder's config says)")
    p.add_argument("--execute-steps", type=int,
                   help="override how many actions of each predicted chunk run before predicting again")
    p.add_argument("--num-envs", type=int, default=1, help="parallel environments (GPU simulation only)")
    p.add_argument("--sim-backend", default="physx_cpu", help="physx_cpu, or physx_cuda with --num-envs > 1")
    p.add_argument("--asset-dir", help="MS_ASSET_DIR (default: the environment variable)")
    p.add_argument("--out", required=True, help="output folder; a killed evaluation run again into it with the same "
                   "settings runs only the episodes it is missing")
    p.add_argument("--overwrite", action="store_true", help="start --out over when it holds another evaluation")
    return add_verbose_argument(p)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    quiet(args.verbose)  # before a policy is loaded or ManiSkill imported
    tasks = args.tasks or (BRIDGE_SUITE if args.suite == "bridge" else CI_SUITE)
    options = {"num_envs": args.num_envs, "sim_backend": args.sim_backend, "first_seed": args.seed}
    # only what the user set: load_policy otherwise applies the policy's own convention
    overrides = {k: v for k, v in (("execution", args.execution), ("execute_steps", args.execute_steps))
                 if v is not None}
    if overrides:
        if args.policy == "scripted" or (":" in args.policy and not Path(args.policy).exists()):
            parser.error("--execution/--execute-steps apply to saved policy folders only")
        options["policy_kwargs"] = overrides
    try:
        summary = evaluate(tasks, args.policy, args.out, args.episodes, args.max_steps, args.asset_dir,
                           overwrite=args.overwrite, **options)
    except EvaluationFolderError as err:
        print(f"orv-simpler: {err}", file=sys.stderr)
        return 2
    print(json.dumps(summary, indent=1))
    for name, t in summary["tasks"].items():
        errors = ", ".join(f"{k} x{v}" for k, v in t["errors"].items()) or "none"
        print(f"{name:24s} success {t['success_rate']:.2f}  grasp {t['grasp_rate']:.2f}  errors: {errors}")
    return 1 if summary["failed_episodes"] else 0


if __name__ == "__main__":
    sys.exit(main())

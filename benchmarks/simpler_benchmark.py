"""Environment steps per second of the SimplerEnv harness with rendering, on this machine.

Runs the CI tasks (ManiSkill3 on the CPU simulator, lavapipe rendering of the policy's
camera) with the scripted policy through the whole harness (adapter, per-episode videos)
and prints steps/s per task from the per-episode records. The simulator process start-up
(ManiSkill import, scene build) is excluded by using the episodes' own timers.

    python -m benchmarks.simpler_benchmark [--episodes 2]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from vla_finetune.simpler.evaluate import evaluate
from vla_finetune.simpler.tasks import CI_SUITE


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--asset-dir", default=os.environ.get("MS_ASSET_DIR", "../shared/data/maniskill"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        evaluate(CI_SUITE, "scripted", tmp, episodes=args.episodes, asset_dir=str(Path(args.asset_dir).resolve()))
        total = time.perf_counter() - start
        records = [json.loads(line) for line in (Path(tmp) / "episodes.jsonl").read_text().splitlines()]
    print(f"SimplerEnv harness, scripted policy, {args.episodes} episodes per task, wall {total:.1f} s")
    for task in CI_SUITE:
        rows = [r for r in records if r["task"] == task]
        steps = sum(r["steps"] for r in rows)
        seconds = sum(r["seconds"] for r in rows)
        print(f"{task:24s} {steps:4d} steps in {seconds:6.1f} s: {steps / seconds:5.1f} steps/s "
              f"(render + physics + adapter + video), success {sum(r['success'] for r in rows)}/{len(rows)}")


if __name__ == "__main__":
    main()

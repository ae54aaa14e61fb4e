"""Environment steps per second of the SimplerEnv harness with rendering, on this machine.

Runs the CI tasks (ManiSkill3 on the CPU simulator, lavapipe rendering of the policy's
camera) or the four Bridge tasks on a format twin of ``bridge_v2_real2sim`` (stand-in
meshes, real layout, robot and overlay images: ``rgb+segmentation`` rendering and the green
screen at 640x480, as SimplerEnv runs them) with the scripted policy through the whole
harness (adapter, per-episode videos) and prints steps/s per task from the per-episode
records. The simulator process start-up (imports, scene build) is excluded by using the
episodes' own timers; the wall time includes it.

    python -m benchmarks.simpler_benchmark [--episodes 2] [--suite bridge]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from orv_engine.testing.bridge_real2sim_assets import write_bridge_real2sim_assets
from vla_finetune.simpler.evaluate import evaluate
from vla_finetune.simpler.tasks import BRIDGE_SUITE, CI_SUITE


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--suite", choices=("ci", "bridge"), default="ci",
                        help="bridge: the four Bridge tasks on a format twin written to a temporary folder")
    parser.add_argument("--asset-dir", default=os.environ.get("MS_ASSET_DIR", "../shared/data/maniskill"))
    parser.add_argument("--shared-data", default="../shared/data", help="real overlay images and the WidowX (bridge)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        asset_dir = Path(args.asset_dir).resolve()
        suite = CI_SUITE
        if args.suite == "bridge":
            shared = Path(args.shared_data).resolve()
            asset_dir = Path(tmp) / "assets"
            robot = shared / "maniskill" / "data" / "robots" / "widowx"
            write_bridge_real2sim_assets(asset_dir, shared / "bridge_real", robot)
            suite = BRIDGE_SUITE
        start = time.perf_counter()
        evaluate(suite, "scripted", Path(tmp) / "eval", episodes=args.episodes, asset_dir=str(asset_dir))
        total = time.perf_counter() - start
        records = [json.loads(line) for line in (Path(tmp) / "eval" / "episodes.jsonl").read_text().splitlines()]
    print(f"SimplerEnv harness ({args.suite}), scripted policy, {args.episodes} episodes per task, wall {total:.1f} s")
    for task in suite:
        rows = [r for r in records if r["task"] == task]
        steps = sum(r["steps"] for r in rows)
        seconds = sum(r["seconds"] for r in rows)
        errors = sum(1 for r in rows if r["error"])
        print(f"{task:24s} {steps:4d} steps in {seconds:6.1f} s: {steps / max(seconds, 1e-9):5.1f} steps/s "
              f"(render + physics + adapter + video), success {sum(r['success'] for r in rows)}/{len(rows)}"
              + (f", {errors} failed" if errors else ""))


if __name__ == "__main__":
    main()

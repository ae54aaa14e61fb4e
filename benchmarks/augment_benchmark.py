"""Clips per hour per stage of ``orv-augment`` on this machine, tiny config, and the time split.

Runs the whole loop (tiny random FLUX + ControlNets + ORV, the embedded ManiSkill episodes)
and reads the per-stage wall times the run itself records (``RUN/manifest/run.json``).
"I/O" is measured inside the run: the sources stage (RLDS read + occupancy rendering),
reading sources/first frames back and writing rollouts (mp4 + npz), and the export. The
split is what matters here: on a GPU with real models, first frames and rollouts grow by
orders of magnitude while I/O does not.

    python -m benchmarks.augment_benchmark [--episodes 4] [--variants 2] [--steps 16] [--size 64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from benchmarks.figures import write_figures
from augment import unit_work
from augment.config import config_from_dict
from augment.demo import demo_config, write_demo_models
from augment.runner import AugmentRun


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--variants", type=int, default=2)
    parser.add_argument("--steps", type=int, default=16, help="episode steps rolled out (max_steps)")
    parser.add_argument("--size", type=int, default=64, help="rollout height = width")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args(argv)

    io_seconds = {"write_rollout": 0.0}
    original = unit_work.write_rollout

    def timed_write(*a, **k):  # time the rollout writes (mp4 + npz + json) inside the stage
        start = time.perf_counter()
        try:
            return original(*a, **k)
        finally:
            io_seconds["write_rollout"] += time.perf_counter() - start

    unit_work.write_rollout = timed_write
    with tempfile.TemporaryDirectory() as tmp:
        models = write_demo_models(Path(tmp) / "models")
        values = demo_config(models, args.episodes, args.variants, replay=False)  # painted clips only: the count below
        values["source"]["max_steps"] = args.steps
        values["rollout"].update(height=args.size, width=args.size)
        start = time.perf_counter()
        AugmentRun(config_from_dict(values), Path(tmp) / "run", progress=False).run()
        total = time.perf_counter() - start
        timings = json.loads((Path(tmp) / "run" / "manifest" / "run.json").read_text())["timings"]

    clips = args.episodes * args.variants
    print(f"orv-augment, tiny models, {args.episodes} episodes x {args.variants} variants = {clips} clips, "
          f"{args.steps} steps at {args.size}x{args.size}, total {total:.1f} s")
    print(f"{'stage':14s} {'units':>6s} {'seconds':>9s} {'s/unit':>8s} {'clips/hour':>11s} {'share':>6s}")
    rows = {}
    for stage, t in timings.items():
        per = t["seconds"] / max(t["units"], 1)
        clips_per_hour = 3600 * clips / t["seconds"] if t["seconds"] > 0 else float("inf")
        rows[stage] = {"units": t["units"], "seconds": t["seconds"], "clips_per_hour": round(clips_per_hour, 1)}
        print(f"{stage:14s} {t['units']:6d} {t['seconds']:9.2f} {per:8.2f} {clips_per_hour:11.0f} "
              f"{100 * t['seconds'] / total:5.1f}%")
    first = timings.get("first_frames", {}).get("seconds", 0.0)
    roll = timings.get("rollouts", {}).get("seconds", 0.0) - io_seconds["write_rollout"]
    io = timings.get("sources", {}).get("seconds", 0.0) + io_seconds["write_rollout"] + \
        timings.get("export", {}).get("seconds", 0.0)
    split = {"first_frames": first, "rollouts_compute": roll, "io": io, "other": total - first - roll - io}
    print("time split: " + ", ".join(f"{k} {v:.1f} s ({100 * v / total:.0f}%)" for k, v in split.items()))
    print(f"whole loop: {3600 * clips / total:.0f} clips/hour")
    if args.json:
        write_figures({"stages": rows, "split": split, "total": total}, args.json, indent=1)


if __name__ == "__main__":
    main()

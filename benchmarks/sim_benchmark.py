"""Episode-generation speed: simulation + rendering steps per second on the CPU simulator.

    python -m benchmarks.sim_benchmark [--robot panda] [--episodes 3] [--size 128]

Runs the scripted pick-and-place policy in ``ORVTabletop-v1`` with RGB only and with
RGB + depth + segmentation, in this one process (it must not load TensorFlow: see
``orv_engine.sim.generate``), and prints steps/s of each and their ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from orv_engine.sim.generate import make_env
from orv_engine.sim.scripted_policy import PickPlacePolicy


def measure(robot: str, geometry: bool, episodes: int, size: int) -> dict:
    t0 = time.perf_counter()
    env = make_env(robot, camera_size=size, geometry=geometry)
    env.reset(seed=0)
    startup = time.perf_counter() - t0
    steps, seconds, successes = 0, 0.0, 0
    for seed in range(episodes):
        env.reset(seed=seed)
        policy = PickPlacePolicy(env)
        t0 = time.perf_counter()
        for _ in range(60):
            action = policy()
            if policy.done:
                break
            env.step(torch.from_numpy(action)[None])
            steps += 1
        seconds += time.perf_counter() - t0
        successes += bool(env.unwrapped.evaluate()["success"][0])
    env.close()
    return {"steps": steps, "seconds": seconds, "steps_per_s": steps / seconds, "startup": startup,
            "successes": successes}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--robot", default="panda", choices=["panda", "widowx"])
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--size", type=int, default=128)
    args = parser.parse_args(argv)
    rgb = measure(args.robot, False, args.episodes, args.size)
    full = measure(args.robot, True, args.episodes, args.size)
    print(f"\nORVTabletop-v1, {args.robot}, {args.size}x{args.size}, {args.episodes} episodes, torch threads {torch.get_num_threads()}")
    print(f"{'observations':28s} {'steps':>6s} {'steps/s':>8s} {'start-up s':>10s} {'success':>8s}")
    for name, r in (("rgb", rgb), ("rgb + depth + segmentation", full)):
        print(f"{name:28s} {r['steps']:6d} {r['steps_per_s']:8.1f} {r['startup']:10.1f} {r['successes']:>5d}/{args.episodes}")
    print(f"depth + segmentation cost: x{rgb['steps_per_s'] / full['steps_per_s']:.2f} time per step")


if __name__ == "__main__":
    main()

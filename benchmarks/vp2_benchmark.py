"""VP² speed: simulator steps/s with 64x64 rendering, and planning time per MPC step.

    .venv-vp2/bin/python -m benchmarks.vp2_benchmark [--threads 2] [--samples 50] [--robodesk-steps 4]

Runs in the VP² side venv (scripts/setup_vp2_venv.sh). Prints:
- robosuite pushing (Panda, OSC position, 20 Hz control): steps/s without and with a 64x64
  offscreen render (MUJOCO_GL=egl; Mesa llvmpipe on a CPU-only machine);
- RoboDesk (action_repeat 50 as VP²): steps/s with its 64x64 render;
- seconds per planning step (one MPPI replan, horizon 10) with the tiny random ORV world
  model at ``--inference-steps`` and with the simulator as the model, for ``--samples``.
  VP²'s 200 samples scale linearly from these.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np
import torch

from benchmarks.vp2.costs import SquaredErrorReward
from benchmarks.vp2.envs import RoboDeskEnv, RobosuitePushEnv, SimulatorModel
from benchmarks.vp2.planners import MPPIPlanner
from benchmarks.vp2.tiny_world_model import save_tiny_world_model
from benchmarks.vp2.world_model import ORVWorldModel


def env_steps_per_second(env, steps: int, render: bool) -> float:
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (steps, env.action_dim))
    step = env.step if render else (lambda a: env.env.step(a))
    t0 = time.perf_counter()
    for a in actions:
        step(a)
    return steps / (time.perf_counter() - t0)


def planning_seconds(model, env, instance, samples: int, horizon: int, repeats: int) -> float:
    planner = MPPIPlanner(model, SquaredErrorReward(), a_dim=env.action_dim, horizon=horizon,
                          num_samples=samples, init_std=(0.5, 0.5, 0.5, 0.0), seed=0)
    frame = env.reset_to(instance.initial_state) / 255.0
    state = env.get_state()
    goal = instance.goal_image / 255.0
    planner.plan([frame, frame], [state], [np.zeros(env.action_dim)], goal)  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        planner.plan([frame, frame], [state], [np.zeros(env.action_dim)], goal)
    return (time.perf_counter() - t0) / repeats


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--env-steps", type=int, default=100)
    parser.add_argument("--robodesk-steps", type=int, default=4)
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--horizon", type=int, default=10)
    parser.add_argument("--inference-steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    push = RobosuitePushEnv()
    instance = push.make_task(0)
    push.reset_to(instance.initial_state)
    bare = env_steps_per_second(push, args.env_steps, render=False)
    rendered = env_steps_per_second(push, args.env_steps, render=True)
    print(f"robosuite/push   steps/s: {bare:7.1f} physics only, {rendered:7.1f} with 64x64 render")

    desk = RoboDeskEnv("push_red")
    desk_rate = env_steps_per_second(desk, args.robodesk_steps, render=True)
    print(f"robodesk         steps/s: {desk_rate:7.2f} with 64x64 render (action_repeat 50)")

    with tempfile.TemporaryDirectory() as tmp:
        path = save_tiny_world_model(f"{tmp}/tiny", action_dim=7)
        orv = ORVWorldModel.from_pretrained(path, action_dim=4, num_inference_steps=args.inference_steps,
                                            max_batch_size=args.samples)
        orv_s = planning_seconds(orv, push, instance, args.samples, args.horizon, args.repeats)
    sim_s = planning_seconds(SimulatorModel(push), push, instance, args.samples, args.horizon, 1)
    print(f"planning step    tiny ORV ({args.inference_steps} denoising steps): {orv_s:6.2f} s, "
          f"simulator as model: {sim_s:6.2f} s   ({args.samples} samples, horizon {args.horizon}, "
          f"{args.threads} threads; VP²: 200 samples)")


if __name__ == "__main__":
    main()

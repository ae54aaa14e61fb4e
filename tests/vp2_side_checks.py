"""Simulator checks for the VP² benchmark, run by test_vp2_run.py in the side venv
(``.venv-vp2``: robosuite, robodesk, MuJoCo). Prints one JSON object with what it saw.

    .venv-vp2/bin/python tests/vp2_side_checks.py <tiny ORV folder> <CLI output folder>

One process for all of it: importing robosuite + torch + diffusers is the slow part.
"""

from __future__ import annotations

import json
import sys
from dataclasses import asdict

import numpy as np


class FaultyModel:
    """Wraps a real model: call 1 predicts NaN frames, call 2 crashes, later calls pass through."""

    def __init__(self, model):
        self.model, self.calls = model, 0
        self.num_context = model.num_context

    def __call__(self, batch):
        self.calls += 1
        if self.calls == 1:
            out = self.model(batch)
            out["rgb"] = np.full_like(out["rgb"], np.nan)
            return out
        if self.calls == 2:
            raise RuntimeError("simulated crash inside the model")
        return self.model(batch)


def main(tiny_path: str, cli_out: str) -> None:
    import time

    from benchmarks.vp2 import run
    from benchmarks.vp2.envs import RoboDeskEnv, SimulatorModel, make_env
    from benchmarks.vp2.run import RunConfig, orv_model_factory, run_episode, run_model

    result, t0 = {}, time.perf_counter()
    # 0. The CLI: model + oracle on robosuite pushing, and an unknown task id.
    run.main(["--tasks", "robosuite/push", "robosuite/lift_the_moon", "--model", "orv", "--model-path", tiny_path,
              "--with-oracle", "--episodes", "1", "--max-steps", "3", "--horizon", "2", "--num-samples", "3",
              "--inference-steps", "1", "--save-frames", "--out", cli_out])
    result["seconds_cli"] = time.perf_counter() - t0
    small = RunConfig(tasks=["robosuite/push"], episodes=3, max_steps=2, horizon=2, num_samples=2)
    orv = orv_model_factory(tiny_path, small, num_inference_steps=1, max_batch_size=4, device=None, dtype=None,
                            prompt="")

    # 1. Faults are recorded per episode and the run goes on.
    records = run_model("orv", lambda task, env: FaultyModel(orv(task, env)), small)
    result["faults"] = [asdict(r) for r in records]
    result["seconds_faults"] = time.perf_counter() - t0

    # 2. The oracle predicts exactly what the simulator shows for the same actions.
    env = make_env("robosuite/push")
    instance = env.make_task(7)
    env.reset_to(instance.initial_state)
    state = env.get_state()
    actions = np.array([[0.0, 0.0, 0.0, 0.0], [0.5, -0.5, 0.0, 1.0], [0.5, -0.5, 0.0, 1.0]])
    start_frame = env.reset_to(state) / 255.0
    oracle = SimulatorModel(env, num_context=2)
    video = np.zeros((1, 2, 64, 64, 3), np.float32)
    predicted = oracle({"video": video, "actions": actions[None], "state_obs": [state]})["rgb"]
    result["oracle_restores_state"] = bool(np.array_equal(env.get_state(), state))
    stepped = np.stack([env.step(a) for a in actions[1:]]) / 255.0
    result["oracle_max_abs_diff"] = float(np.abs(predicted[0, 1:] - stepped).max())
    result["oracle_frames_change"] = float(np.abs(stepped[-1] - start_frame).mean())
    result["push_start_score"] = env.score(instance.initial_state, instance.goal_state)
    result["push_goal_score"] = env.score(instance.goal_state, instance.goal_state)
    result["push_threshold"] = env.success_threshold
    result["goal_image"] = [list(instance.goal_image.shape), str(instance.goal_image.dtype)]

    result["seconds_oracle"] = time.perf_counter() - t0
    # 3. RoboDesk: the scripted goal succeeds, the start does not, and a 5-d task plans with
    #    the 7-d world model (zero-padded actions) for a couple of steps.
    desk = RoboDeskEnv("push_red")
    task = desk.make_task(0)
    result["robodesk_goal_score"] = desk.score(task.goal_state)
    result["robodesk_start_score"] = desk.score(task.initial_state)
    desk_config = RunConfig(tasks=["robodesk/push_red"], episodes=1, max_steps=2, horizon=2, num_samples=2)
    record = run_episode(desk, orv("robodesk/push_red", desk), "robodesk/push_red", 0, desk_config, "orv")
    result["robodesk_episode"] = asdict(record)
    result["seconds_robodesk"] = time.perf_counter() - t0
    print("VP2_RESULT " + json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])

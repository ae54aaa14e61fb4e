"""Run one task's episodes in a ManiSkill process and report each episode as it ends.

ManiSkill needs a Vulkan device, and Mesa's lavapipe and TensorFlow both bring their own
LLVM: in one process they crash. So episodes run in a spawned child that never imports
TensorFlow (the policy is loaded there too: ``vla_finetune.policies`` does not import it).
Each episode is its own try: a policy that returns NaN or a wrong shape, or an episode that
raises, is recorded with its error and the next episode starts.
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

import numpy as np


def make_policy(spec: str, env, options: dict):
    if spec == "scripted":
        from vla_finetune.simpler.scripted import BridgeScriptedPolicy  # noqa: PLC0415

        return BridgeScriptedPolicy(env)
    if ":" in spec and not Path(spec).exists():  # "package.module:ClassName", any VLAPolicy implementation
        import importlib  # noqa: PLC0415

        module, _, name = spec.partition(":")
        return getattr(importlib.import_module(module), name)(**options.get("policy_kwargs", {}))
    from vla_finetune.policies.interface import load_policy  # noqa: PLC0415

    return load_policy(spec, **options.get("policy_kwargs", {}))


def _instruction(env, task) -> str:
    if task.instruction:
        return task.instruction
    unwrapped = env.unwrapped
    if hasattr(unwrapped, "get_language_instruction"):
        text = unwrapped.get_language_instruction()
        return text[0] if isinstance(text, (list, tuple)) else str(text)
    return str(getattr(unwrapped, "instruction", ""))


def _camera_image(obs, camera: str | None) -> np.ndarray:
    sensors = obs["sensor_data"]
    name = camera or next(iter(sensors))
    rgb = sensors[name]["rgb"]
    rgb = rgb.cpu().numpy() if hasattr(rgb, "cpu") else np.asarray(rgb)
    return rgb[0, ..., :3].astype(np.uint8)


def _flag(info: dict, key: str) -> bool:
    value = info.get(key)
    if value is None:
        return False
    value = value.cpu().numpy() if hasattr(value, "cpu") else np.asarray(value)
    return bool(np.asarray(value).reshape(-1)[0])


def _save_video(frames, path: Path, fps: int = 5) -> str:
    import imageio.v2 as imageio  # noqa: PLC0415

    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, np.stack(frames), fps=fps, macro_block_size=1)
    return str(path)


def task_process(out, options: dict) -> None:
    """Child process: ``("episode", record)`` per episode, then ``("done", None)``."""
    try:
        if options.get("asset_dir"):
            os.environ["MS_ASSET_DIR"] = options["asset_dir"]
        import gymnasium as gym  # noqa: PLC0415
        import mani_skill.envs  # noqa: F401,PLC0415
        import torch  # noqa: PLC0415

        import orv_engine.sim.tabletop_env  # noqa: F401,PLC0415  (registers ORVTabletop-v1)
        from vla_finetune.simpler.adapter import BadActionError, ControllerAdapter  # noqa: PLC0415
        from vla_finetune.simpler.tasks import get_task  # noqa: PLC0415

        task = get_task(options["task"])
        kwargs = dict(task.env_kwargs)
        if task.env_id == "ORVTabletop-v1":
            from orv_engine.sim.tabletop_env import ROBOT_SETUPS  # noqa: PLC0415

            kwargs.setdefault("control_mode", ROBOT_SETUPS[kwargs["robot_uids"]].controller)
        env = gym.make(task.env_id, obs_mode="rgb", num_envs=options.get("num_envs", 1),
                       sim_backend=options.get("sim_backend", "physx_cpu"), **kwargs)
        adapter = ControllerAdapter.from_env(env)
        policy = make_policy(options["policy"], env, options)
        max_steps = options.get("max_steps") or task.max_steps
        video_dir = Path(options["video_dir"]) if options.get("video_dir") else None
    except Exception as err:  # set-up failed: the parent records every episode of the task as failed
        out.put(("error", f"{type(err).__name__}: {err}"))
        return
    for episode in range(options["episodes"]):
        seed = options.get("first_seed", 0) + episode
        record = {"task": task.name, "episode": episode, "seed": seed, "success": False, "grasped": False,
                  "steps": 0, "error": None, "video": None, "instruction": "", "seconds": 0.0}
        start, frames = time.perf_counter(), []
        try:
            obs, info = env.reset(seed=seed)
            record["instruction"] = _instruction(env, task)
            policy.reset(record["instruction"])
            for step in range(max_steps):
                image = _camera_image(obs, task.camera)
                frames.append(image)
                try:
                    action = adapter(policy.act(image))
                except BadActionError as err:
                    raise BadActionError(f"step {step}: {err}") from None
                obs, _, _, _, info = env.step(torch.from_numpy(action)[None])
                record["grasped"] |= _flag(info, task.grasp_key)
                record["steps"] = step + 1
            frames.append(_camera_image(obs, task.camera))
            record["success"] = _flag(info, "success")  # at the final step, as SimplerEnv
        except BadActionError as err:
            record["error"] = f"bad action: {err}"
        except Exception as err:  # a crashed episode is recorded; the next one runs
            record["error"] = f"crashed: {type(err).__name__}: {err} ({traceback.format_exc(limit=1).splitlines()[-1]})"
        if video_dir is not None and frames:
            record["video"] = _save_video(frames, video_dir / task.name / f"episode_{episode:03d}.mp4")
        record["seconds"] = round(time.perf_counter() - start, 3)
        out.put(("episode", record))
    env.close()
    out.put(("done", None))

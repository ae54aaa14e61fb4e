"""Run one task's episodes in a ManiSkill process and report each episode as it ends.

ManiSkill needs a Vulkan device, and Mesa's lavapipe and TensorFlow both bring their own
LLVM: in one process they crash. So episodes run in a spawned child that never imports
TensorFlow (the policy is loaded there too: ``vla_finetune.policies`` does not import it).
Each episode is its own try: a policy that returns NaN or a wrong shape, or an episode that
raises, is recorded with its error and the next episode starts. ManiSkill (with gymnasium,
the ``sim`` extra) is imported in that child only, in :func:`task_process`: the parent
imports this module too.

Episodes are seeded as SimplerEnv's ManiSkill3 script seeds them
(``simpler_env/real2sim_eval_maniskill3.py``): a batch of ``num_envs`` episodes starting at
episode ``e`` is reset with ``seed = first_seed + e`` and, for the Bridge tasks,
``options={"episode_id": tensor([seed, seed + 1, ...])}``. ``BaseBridgeEnv`` turns an id
into the configuration ``id % (positions x rotations)`` (position ``// rotations``, rotation
``% rotations``; ``bridge_dataset_eval/base_env.py``); without an id it samples one at
random. Each record carries its ``episode_id``, that ``config_id`` and the objects' poses
after the environment settled them (``initial_poses``), so runs can be compared scene by
scene. One departure, for exact repeats: each Bridge episode is reset twice (see
:func:`task_process`), so the settled poses do not depend on where the previous episode
left the robot.
"""

from __future__ import annotations

import importlib
import os
import time
import traceback
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import torch

from vla_finetune.policies.interface import load_policy
from vla_finetune.simpler.adapter import BadActionError, ControllerAdapter
from vla_finetune.simpler.scripted import BridgeScriptedPolicy
from vla_finetune.simpler.tasks import get_task


def make_policy(spec: str, env, options: dict):
    """``policy_kwargs`` holds only what the user asked for: a saved policy folder otherwise
    runs with its own execution convention (``load_policy``'s defaults, from its config)."""
    if spec == "scripted":
        return BridgeScriptedPolicy(env)
    if ":" in spec and not Path(spec).exists():  # "package.module:ClassName", any VLAPolicy implementation
        module, _, name = spec.partition(":")
        return getattr(importlib.import_module(module), name)(**options.get("policy_kwargs", {}))
    return load_policy(spec, **options.get("policy_kwargs", {}))


def _configuration(env, episode_id: int | None) -> int | None:
    """The Bridge configuration an episode id selects (``BaseBridgeEnv._initialize_episode``)."""
    unwrapped = env.unwrapped
    if episode_id is None or not hasattr(unwrapped, "xyz_configs"):
        return None
    return int(episode_id % (len(unwrapped.xyz_configs) * len(unwrapped.quat_configs)))


def _initial_poses(env, i: int) -> dict | None:
    """Pose ``[x, y, z, qw, qx, qy, qz]`` of each task object in environment ``i`` after reset."""
    objs = getattr(env.unwrapped, "objs", None)
    if not isinstance(objs, dict):
        return None
    return {name: [round(float(v), 6) for v in actor.pose.raw_pose[i].cpu().numpy()] for name, actor in objs.items()}


def _final_info(info: dict, i: int) -> dict:
    """The flags the environment reports at the final step (SimplerEnv averages them all)."""
    flags = {}
    for key, value in info.items():
        value = value.cpu().numpy() if hasattr(value, "cpu") else np.asarray(value)
        if value.dtype == bool and value.size > i:
            flags[key] = bool(value.reshape(-1)[i])
    return flags


def _instruction(env, task) -> str:
    if task.instruction:
        return task.instruction
    unwrapped = env.unwrapped
    if hasattr(unwrapped, "get_language_instruction"):
        text = unwrapped.get_language_instruction()
        return text[0] if isinstance(text, (list, tuple)) else str(text)
    return str(getattr(unwrapped, "instruction", ""))


def _camera_images(obs, camera: str | None) -> np.ndarray:
    """(num_envs, H, W, 3) uint8 of the policy's camera."""
    sensors = obs["sensor_data"]
    name = camera or next(iter(sensors))
    rgb = sensors[name]["rgb"]
    rgb = rgb.cpu().numpy() if hasattr(rgb, "cpu") else np.asarray(rgb)
    return rgb[..., :3].astype(np.uint8)


def _flags(info: dict, key: str, num_envs: int) -> np.ndarray:
    value = info.get(key)
    if value is None:
        return np.zeros(num_envs, bool)
    value = value.cpu().numpy() if hasattr(value, "cpu") else np.asarray(value)
    return np.broadcast_to(np.asarray(value, bool).reshape(-1), (num_envs,)).copy()


def _save_video(frames, path: Path, fps: int = 5) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimwrite(path, np.stack(frames), fps=fps, macro_block_size=1)
    return str(path)


def task_process(out, options: dict) -> None:
    """Child process: ``("episode", record)`` per episode, then ``("done", None)``.

    With ``num_envs`` > 1 (GPU simulation) episodes run in batches of ``num_envs``, one policy
    per environment; the CPU simulator runs one environment.
    """
    try:
        if options.get("asset_dir"):
            os.environ["MS_ASSET_DIR"] = options["asset_dir"]
        # here, in the simulator process only (see the module docstring); a missing one is a set-up error
        import gymnasium as gym  # noqa: PLC0415
        import mani_skill.envs  # noqa: F401,PLC0415
        from orv_engine.sim import tabletop_env  # noqa: PLC0415  (imports ManiSkill; registers ORVTabletop-v1)

        task = get_task(options["task"])
        kwargs = dict(task.env_kwargs)
        if task.env_id == tabletop_env.ENV_ID:
            kwargs.setdefault("control_mode", tabletop_env.ROBOT_SETUPS[kwargs["robot_uids"]].controller)
        # the Bridge twins support only "rgb+segmentation" (and green-screen only in it)
        env = gym.make(task.env_id, obs_mode=task.obs_mode, num_envs=options.get("num_envs", 1),
                       sim_backend=options.get("sim_backend", "physx_cpu"), **kwargs)
        adapter = ControllerAdapter.from_env(env)
        num_envs = int(options.get("num_envs", 1))
        if options["policy"] == "scripted" and num_envs > 1:
            raise ValueError("the scripted policy drives one environment (num_envs=1)")
        # one policy per environment: policies keep their own observation history
        policies = [make_policy(options["policy"], env, options) for _ in range(num_envs)]
        max_steps = options.get("max_steps") or task.max_steps
        video_dir = Path(options["video_dir"]) if options.get("video_dir") else None
        idle = adapter(np.array([0, 0, 0, 0, 0, 0, 1.0]))
    except Exception as err:  # set-up failed: the parent records every episode of the task as failed
        out.put(("error", f"{type(err).__name__}: {err}"))
        return
    skip = set(options.get("skip", ()))  # episodes an earlier run of the same evaluation recorded
    for first in range(0, options["episodes"], num_envs):
        episodes = list(range(first, min(first + num_envs, options["episodes"])))
        if skip.issuperset(episodes):
            continue
        # SimplerEnv: one seed per batch, episode ids seed .. seed + num_envs - 1
        seed = options.get("first_seed", 0) + first
        episode_ids = [seed + i for i in range(num_envs)] if task.reset_by_episode_id else None
        records = [{"task": task.name, "episode": e, "seed": seed + i, "episode_id": None, "config_id": None,
                    "initial_poses": None, "success": False, "grasped": False, "final_info": {},
                    "steps": 0, "error": None, "video": None, "instruction": "", "seconds": 0.0}
                   for i, e in enumerate(episodes)]
        frames = [[] for _ in episodes]
        start = time.perf_counter()
        try:
            # a last, partial batch still steps every environment; the extra ones are not recorded
            if episode_ids is None:
                obs, info = env.reset(seed=seed)
            else:
                # BaseBridgeEnv settles the objects *before* it moves the robot home, so a robot the
                # last episode left over the scene can knock them (the eggplant's target plane falls
                # from 1 m): a first reset brings the robot home, the second settles the objects with
                # it there, and the settled scene no longer depends on the episode before
                for _ in range(2):
                    obs, info = env.reset(seed=seed, options={"episode_id": torch.tensor(episode_ids)})
            instruction = _instruction(env, task)
            for i, record in enumerate(records):
                record["instruction"] = instruction
                if episode_ids is not None:
                    record["episode_id"] = episode_ids[i]
                    record["config_id"] = _configuration(env, episode_ids[i])
                record["initial_poses"] = _initial_poses(env, i)
                policies[i].reset(instruction)
            for step in range(max_steps):
                images = _camera_images(obs, task.camera)
                actions = np.repeat(idle[None], num_envs, axis=0)
                for i, record in enumerate(records):
                    if record["error"]:
                        continue  # a failed episode idles until the batch ends
                    frames[i].append(images[i])
                    try:
                        actions[i] = adapter(policies[i].act(images[i]))
                    except BadActionError as err:
                        record["error"] = f"bad action: step {step}: {err}"
                    except Exception as err:  # the policy itself raised
                        record["error"] = f"crashed: policy: {type(err).__name__}: {err}"
                obs, _, _, _, info = env.step(torch.from_numpy(actions))
                grasped = _flags(info, task.grasp_key, num_envs)
                for i, record in enumerate(records):
                    if not record["error"]:
                        record["grasped"] |= bool(grasped[i])
                        record["steps"] = step + 1
            images = _camera_images(obs, task.camera)
            success = _flags(info, "success", num_envs)  # at the final step, as SimplerEnv
            for i, record in enumerate(records):
                if not record["error"]:
                    frames[i].append(images[i])
                    record["success"] = bool(success[i])
                    record["final_info"] = _final_info(info, i)
        except Exception as err:  # a crashed simulator step: every episode of the batch is recorded so
            for record in records:
                record["error"] = record["error"] or (
                    f"crashed: {type(err).__name__}: {err} ({traceback.format_exc(limit=1).splitlines()[-1]})")
        seconds = round((time.perf_counter() - start) / len(records), 3)
        for i, record in enumerate(records):
            if record["episode"] in skip:  # a batch re-run for its other episodes
                continue
            if video_dir is not None and frames[i]:
                record["video"] = _save_video(frames[i], video_dir / task.name / f"episode_{record['episode']:03d}.mp4")
            record["seconds"] = seconds
            out.put(("episode", record))
    env.close()
    out.put(("done", None))

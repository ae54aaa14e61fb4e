"""Generate simulated episodes and write them as an RLDS dataset (the sim-to-real source).

    orv-sim generate --robot widowx --episodes 24 --size 128 --out data/sim

ManiSkill runs in a process of its own. Mesa's lavapipe (the CPU Vulkan driver) and
TensorFlow each bring LLVM: once TensorFlow is loaded, creating a Vulkan device (or
tearing one down at exit) segfaults inside the wrong LLVM. The simulator process never
imports TensorFlow and sends recorded episodes back; the caller writes RLDS.

Failed episodes (the scripted policy missed) are counted and left out; seeds run on until
enough episodes succeed or ``max_seeds`` tries are spent.
"""

from __future__ import annotations

import multiprocessing
import queue as queue_module
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from orv_engine.data.episode import Episode
from orv_engine.data.rlds_writer import write_rlds
from orv_engine.sim.assets import require_asset
from orv_engine.sim.rlds_schema import DATASET_NAME, episode_to_rlds, sim_features

ROBOTS = {"panda": "panda", "widowx": "orv_widowx250s"}


@dataclass
class GenerationStats:
    episodes: int = 0
    failures: int = 0
    steps: int = 0
    seconds: float = 0.0  # simulation + rendering + recording, without start-up
    seeds: list[int] = field(default_factory=list)

    @property
    def steps_per_second(self) -> float:
        return self.steps / self.seconds if self.seconds else 0.0


def make_env(robot: str = "panda", camera_size: int = 128, num_cameras: int = 1, geometry: bool = True,
             appearance: str = "fixed"):
    """The tabletop environment on the CPU simulator. Only in a process without TensorFlow."""
    uid = ROBOTS.get(robot, robot)
    require_asset(uid)
    if "tensorflow" in sys.modules:
        raise RuntimeError("ManiSkill cannot start a Vulkan device in a process that loaded TensorFlow; "
                           "use orv_engine.sim.generate.record_episodes (it runs the simulator in its own process)")
    # Lazy: ManiSkill (the optional sim extra; gymnasium comes with it) loads only in the
    # simulator process, and importing tabletop_env registers the environment.
    import gymnasium as gym

    from orv_engine.sim.tabletop_env import ENV_ID, ROBOT_SETUPS

    if uid not in ROBOT_SETUPS:
        raise ValueError(f"unknown robot {robot!r}; use one of {', '.join(ROBOTS)}")
    obs_mode = "rgb+depth+segmentation" if geometry else "rgb"
    return gym.make(ENV_ID, robot_uids=uid, obs_mode=obs_mode, control_mode=ROBOT_SETUPS[uid].controller,
                    sim_backend="physx_cpu", camera_size=camera_size, num_cameras=num_cameras,
                    appearance=appearance)


def _send(out: multiprocessing.Queue, item: tuple) -> bool:
    """Put ``item`` for the parent; False once the parent is gone (a killed caller must not
    leave a simulator running, nor one blocked on a full queue)."""
    parent = multiprocessing.parent_process()
    while True:
        if parent is not None and not parent.is_alive():
            return False
        try:
            out.put(item, timeout=5)
            return True
        except queue_module.Full:
            continue


def _simulator_process(out: multiprocessing.Queue, options: dict) -> None:
    """Child process: record episodes and put ``("episode", episode, success, seconds)``."""
    try:
        from orv_engine.sim.recorder import record_episode  # lazy: imports ManiSkill, in this process only

        env = make_env(options["robot"], options["camera_size"], options["num_cameras"],
                       appearance=options["appearance"])
        wanted, successes = options["episodes"], 0
        for seed in range(options["first_seed"], options["first_seed"] + options["max_seeds"]):
            if successes >= wanted:
                break
            t0 = time.perf_counter()
            episode, success = record_episode(env, seed, max_steps=options["max_steps"])
            successes += success
            if not _send(out, ("episode", episode, success, time.perf_counter() - t0)):
                return
        env.close()
        _send(out, ("done", None, None, None))
    except Exception as err:  # report to the parent: it raises with the child's message
        _send(out, ("error", f"{type(err).__name__}: {err}", None, None))


def record_episodes(robot: str = "panda", episodes: int = 2, camera_size: int = 128, num_cameras: int = 1,
                    first_seed: int = 0, max_seeds: int | None = None, max_steps: int = 60,
                    keep_failures: bool = False, stats: GenerationStats | None = None,
                    appearance: str = "fixed") -> Iterator[Episode]:
    """Yield recorded episodes (with depth, segmentation and cameras) from a simulator process."""
    uid = ROBOTS.get(robot, robot)
    require_asset(uid)  # fail here, with the download command, before starting anything
    stats = stats if stats is not None else GenerationStats()
    options = dict(robot=robot, camera_size=camera_size, num_cameras=num_cameras, episodes=episodes,
                   first_seed=first_seed, max_seeds=max_seeds or 3 * episodes, max_steps=max_steps,
                   appearance=appearance)
    context = multiprocessing.get_context("spawn")
    out = context.Queue(maxsize=4)
    process = context.Process(target=_simulator_process, args=(out, options), daemon=True)
    process.start()
    try:
        while True:
            try:
                kind, payload, success, seconds = out.get(timeout=5)
            except queue_module.Empty:
                if not process.is_alive():
                    raise RuntimeError(f"the simulator process died (exit code {process.exitcode})") from None
                continue
            if kind == "done":
                return
            if kind == "error":
                raise RuntimeError(f"simulator process: {payload}")
            stats.seconds += seconds
            stats.steps += len(payload)
            if not success:
                stats.failures += 1
                if not keep_failures:
                    continue
            stats.episodes += 1
            stats.seeds.append(payload.meta.extra["seed"])
            yield payload
    finally:
        process.join(timeout=30)
        if process.is_alive():
            process.kill()


def write_sim_dataset(out_dir: str | Path, robot: str = "panda", episodes: int = 24, camera_size: int = 128,
                      num_cameras: int = 1, val_episodes: int = 0, first_seed: int = 0,
                      max_steps: int = 60, appearance: str = "fixed",
                      jpeg_quality: int = 85) -> tuple[Path, GenerationStats]:
    """Generate ``episodes`` successful episodes (+ ``val_episodes``) into ``out_dir``."""
    stats = GenerationStats()
    wanted = episodes + val_episodes
    recorded = [episode_to_rlds(e, jpeg_quality) for e in record_episodes(
        robot, wanted, camera_size, num_cameras, first_seed=first_seed, max_steps=max_steps, stats=stats,
        appearance=appearance)]
    if len(recorded) < wanted:
        raise RuntimeError(f"only {len(recorded)} of {wanted} episodes succeeded ({stats.failures} failures); "
                           "try more seeds")
    splits = {"train": recorded[:episodes]}
    if val_episodes:
        splits["val"] = recorded[episodes:]
    path = write_rlds(out_dir, DATASET_NAME, sim_features(num_cameras, (camera_size, camera_size)), splits,
                      description=f"ORVTabletop-v1 scripted pick-and-place, robot {robot}, 5 Hz, "
                                  f"appearance {appearance}")
    return path, stats

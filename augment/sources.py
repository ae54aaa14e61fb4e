"""The ``sources`` stage: source episodes -> what every later stage of their units reads.

For each episode of the source RLDS dataset (this shard's share): its actions, states,
instruction, first frame, its recorded frames resized to the rollout resolution (the ground
truth of the ``replay`` unit, :func:`ground_truth_frames`), and the occupancy-rendered
depth/semantic maps of every step at that resolution
(``orv_engine.occupancy.episode_condition_maps``). They are written
once per episode, ``RUN/sources/KEY/source.npz`` + ``source.json``, so the first-frame,
rollout and scoring stages (possibly on other machines) never re-read the dataset.

A corrupt episode (the reader's skip report) or one whose occupancy cannot be built is
skipped: counted, recorded with its reason in the manifest, and listed in the report.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orv_engine.atomic_files import atomic_write_bytes, atomic_write_text
from orv_engine.data.clips import resize_frames
from orv_engine.data.rlds_reader import RLDSReader
from orv_engine.data.sharding import iter_shard_episodes
from orv_engine.occupancy.clip_conditions import episode_condition_maps
from orv_engine.occupancy.from_rgb.pipeline import rendered_maps
from orv_engine.occupancy.store import OccupancyStore


@dataclass
class SourceEpisode:
    key: str
    episode_id: str
    dataset: str
    instruction: str
    camera: str
    first_frame: np.ndarray  # (H0, W0, 3) uint8, as recorded
    actions: np.ndarray  # (T, 7) float32
    states: np.ndarray  # (T, 7) float32
    conditions: dict[str, np.ndarray]  # {"depth": (T, h, w) float32, "semantics": (T, h, w) int32}
    # (T, h, w, 3) uint8: the recorded frames at the rollout size (ground_truth_frames); None in
    # sources written before the replay variant existed
    frames: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.actions.shape[0])


def source_dir(run_dir, key: str) -> Path:
    return Path(run_dir) / "sources" / key


def save_source(run_dir, source: SourceEpisode) -> Path:
    folder = source_dir(run_dir, source.key)
    folder.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    frames = {} if source.frames is None else {"frames": source.frames}
    np.savez(buffer, first_frame=source.first_frame, actions=source.actions, states=source.states, **frames,
             **{f"condition_{k}": v for k, v in source.conditions.items()})
    atomic_write_bytes(folder / "source.npz", buffer.getvalue())
    meta = {k: getattr(source, k) for k in ("key", "episode_id", "dataset", "instruction", "camera")}
    meta["steps"] = len(source)
    atomic_write_text(folder / "source.json", json.dumps(meta, indent=1))
    return folder


def load_source(run_dir, key: str) -> SourceEpisode:
    folder = source_dir(run_dir, key)
    try:
        meta = json.loads((folder / "source.json").read_text())
        with np.load(folder / "source.npz") as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise FileNotFoundError(f"{folder}: source episode files unreadable ({err}); rerun the sources stage") from None
    conditions = {k[len("condition_"):]: v for k, v in arrays.items() if k.startswith("condition_")}
    return SourceEpisode(key=meta["key"], episode_id=meta["episode_id"], dataset=meta["dataset"],
                         instruction=meta["instruction"], camera=meta["camera"], first_frame=arrays["first_frame"],
                         actions=arrays["actions"], states=arrays["states"], conditions=conditions,
                         frames=arrays.get("frames"))


def iter_source_episodes(config, shard: tuple[int, int], done: set[str], report):
    """Yield ``(key, episode or None, reason)`` for this shard's episodes not in ``done``
    (``orv_engine.data.sharding.iter_shard_episodes`` over the configured source)."""
    src = config.source
    reader = RLDSReader(src.path, dataset=src.dataset, split=src.split,
                        cameras=[src.camera] if src.camera else None, on_bad="skip", report=report)
    yield from iter_shard_episodes(reader, shard, done, src.max_episodes)


def prepare_source(config, key: str, episode, condition_kinds) -> SourceEpisode:
    """Episode -> SourceEpisode (actions, states, conditions rendered at the rollout size)."""
    camera = config.source.camera or next(iter(episode.frames))
    if camera not in episode.frames:
        raise ValueError(f"camera {camera!r} absent in this episode (has {', '.join(episode.frames)})")
    steps = len(episode) if config.source.max_steps is None else min(len(episode), config.source.max_steps)
    if steps < 2:
        raise ValueError(f"{steps} step(s): a rollout needs at least 2")
    conditions = {}
    if condition_kinds and config.source.occupancy:
        # the occupancy store (orv-occupancy) of an RGB-only dataset: built from this camera's video
        entry = OccupancyStore(config.source.occupancy).read_episode(key)
        if entry.camera != camera:
            raise ValueError(f"the occupancy store holds camera {entry.camera!r}, the run reads {camera!r}")
        if entry.occupancy.num_frames < steps:
            raise ValueError(f"the occupancy store holds {entry.occupancy.num_frames} steps, the run needs {steps}")
        maps = rendered_maps(entry, config.rollout.height, config.rollout.width, steps=range(steps))
        conditions = {k: maps[k] for k in ("depth", "semantics")}
    elif condition_kinds:
        if episode.depth is None or episode.intrinsics is None:
            raise ValueError("no depth/camera geometry to build occupancy conditions from "
                             "(an RGB-only dataset: build its store with orv-occupancy and set source.occupancy)")
        maps = episode_condition_maps(episode.first_steps(steps), camera, config.rollout.height, config.rollout.width)
        conditions = {k: maps[k] for k in ("depth", "semantics")}
    actions = np.asarray(episode.actions[:steps], np.float32)
    states = np.asarray(episode.states[:steps], np.float32).copy()
    states[:, 3:6] = continuous_rpy(states[:, 3:6])
    for name, arr in (("actions", actions), ("states", states)):
        if arr.ndim != 2 or arr.shape[1] != 7:
            raise ValueError(f"{name} must be (T, 7), got {arr.shape}")
        if not np.isfinite(arr).all():
            raise ValueError(f"non-finite {name} at step {int(np.argwhere(~np.isfinite(arr))[0][0])}")
    frames = ground_truth_frames(episode.frames[camera][:steps], config.rollout.height, config.rollout.width)
    return SourceEpisode(key=key, episode_id=episode.meta.episode_id, dataset=episode.meta.dataset,
                         instruction=episode.instruction, camera=camera, first_frame=episode.frames[camera][0],
                         actions=actions, states=states, conditions=conditions, frames=frames)


def ground_truth_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Recorded frames -> (T, height, width, 3) uint8 at the rollout size.

    The one resize of real frames in the loop: the ``replay`` unit's first frame is frame 0
    of this (so its rollout starts from exactly these pixels), and the replay's PSNR/SSIM
    compare the rollout with these frames. Bilinear with antialiasing, stretched, as the
    training clips are (:func:`orv_engine.data.clips.resize_frames`).
    """
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    return resize_frames(frames, height, width)


def continuous_rpy(rpy: np.ndarray) -> np.ndarray:
    """Roll/pitch/yaw made continuous over time.

    Octo/OpenVLA relabel actions from state differences, so a jump between two Euler triples
    of the same rotation (a +-pi wrap, or the flip ``(r, p, y) ~ (r + pi, pi - p, y + pi)``
    near a gripper pointing down) would become a large rotation in the exported episode.
    Each step takes the equivalent triple nearest to the previous one.
    """
    rpy = np.asarray(rpy, np.float64).copy()
    two_pi = 2 * np.pi
    for t in range(1, len(rpy)):
        prev = rpy[t - 1]
        best, best_dist = None, np.inf
        r, p, y = rpy[t]
        for cand in (np.array([r, p, y]), np.array([r + np.pi, np.pi - p, y + np.pi])):
            cand = cand - two_pi * np.round((cand - prev) / two_pi)
            dist = np.abs(cand - prev).sum()
            if dist < best_dist:
                best, best_dist = cand, dist
        rpy[t] = best
    return rpy.astype(np.float32)

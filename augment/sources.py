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
import re
import zlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from augment.manifest import atomic_write_bytes, atomic_write_text
from orv_engine.data.clips import resize_frames
from orv_engine.data.rlds_reader import RLDSReader
from orv_engine.occupancy.clip_conditions import episode_condition_maps


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


def episode_key(file: str, index: int) -> str:
    """A filesystem-safe, stable key for an episode: ``<shard file>-<index>``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{Path(file).name}-{index:06d}")


def owner_shard(key: str, count: int) -> int:
    """Which of ``count`` shards owns an episode (stable across machines and runs)."""
    return zlib.crc32(key.encode()) % count


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
    """Yield ``(key, episode or None, reason)`` for this shard's episodes not in ``done``.

    Episodes are numbered in reading order over the whole dataset (so ``max_episodes`` means
    the same episodes for every shard count); only this shard's are decoded.
    """
    src = config.source
    reader = RLDSReader(src.path, dataset=src.dataset, split=src.split,
                        cameras=[src.camera] if src.camera else None, on_bad="skip", report=report)
    seen = 0
    for file_index, file in enumerate(reader.files):
        if src.max_episodes is not None and seen >= src.max_episodes:
            return
        wanted: dict[int, str] = {}

        def keep(index, file=file):
            nonlocal seen
            if src.max_episodes is not None and seen >= src.max_episodes:
                return False
            seen += 1
            key = episode_key(file, index)
            if owner_shard(key, shard[1]) != shard[0] or key in done:
                return False
            wanted[index] = key
            return True

        for episode in reader.iter_shard(file_index, keep=keep):
            key = wanted.pop(episode.meta.index_in_file)
            yield key, episode, None
        # what the reader refused in this file (counted in ``report``) is recorded per key
        for index, key in sorted(wanted.items()):
            yield key, None, "unreadable episode (see the skip report)"


def prepare_source(config, key: str, episode, condition_kinds) -> SourceEpisode:
    """Episode -> SourceEpisode (actions, states, conditions rendered at the rollout size)."""
    camera = config.source.camera or next(iter(episode.frames))
    if camera not in episode.frames:
        raise ValueError(f"camera {camera!r} absent in this episode (has {', '.join(episode.frames)})")
    steps = len(episode) if config.source.max_steps is None else min(len(episode), config.source.max_steps)
    if steps < 2:
        raise ValueError(f"{steps} step(s): a rollout needs at least 2")
    conditions = {}
    if condition_kinds:
        if episode.depth is None or episode.intrinsics is None:
            raise ValueError("no depth/camera geometry to build occupancy conditions from")
        maps = episode_condition_maps(_first_steps(episode, steps), camera, config.rollout.height, config.rollout.width)
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


def _first_steps(episode, steps: int):
    """The episode cut to its first ``steps`` steps (only what the occupancy reads)."""
    if steps == len(episode):
        return episode
    def cut(d):
        return None if d is None else {k: (v[:steps] if np.ndim(v) >= 3 else v) for k, v in d.items()}

    return replace(
        episode, frames={k: v[:steps] for k, v in episode.frames.items()}, actions=episode.actions[:steps],
        states=episode.states[:steps], depth=cut(episode.depth), segmentation=cut(episode.segmentation),
        intrinsics=cut(episode.intrinsics), extrinsics=cut(episode.extrinsics),
    )

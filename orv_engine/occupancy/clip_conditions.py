"""Condition maps for a clip: the episode's occupancy rendered from the clip's own camera
at the clip's sample size, for exactly the clip's frames (placeholder frame included)."""

from __future__ import annotations

import numpy as np

from orv_engine.occupancy.condition_maps import ViewCamera, render_condition_maps
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.from_episode import occupancy_from_episode
from orv_engine.occupancy.occupancy4d import Occupancy4D


def clip_condition_maps(episode, clip, occupancy: Occupancy4D | None = None, **render_kwargs) -> dict[str, np.ndarray]:
    """``{"depth": (F, H, W) float32, "semantics": (F, H, W) int32}`` aligned with ``clip.frames``.

    ``occupancy`` defaults to :func:`occupancy_from_episode` of the whole episode (pass it in
    when cutting many clips of one episode). Intrinsics are rescaled to the sample size, so
    the maps are rendered at the clip's resolution rather than resized.
    """
    steps = list(clip.frame_indices) + [clip.frame_indices[-1]] * (len(clip.frames) - clip.num_real_frames)
    height, width = clip.frames.shape[1:3]
    return view_condition_maps(episode, clip.camera, steps, height, width, occupancy, **render_kwargs)


def episode_condition_maps(episode, camera: str, height: int, width: int, occupancy: Occupancy4D | None = None,
                           **render_kwargs) -> dict[str, np.ndarray]:
    """The same maps for every step of the episode, ``(T, height, width)``: what a whole-episode
    rollout (``orv_engine.pipelines.long_horizon``) is conditioned on."""
    return view_condition_maps(episode, camera, list(range(len(episode))), height, width, occupancy, **render_kwargs)


def view_condition_maps(episode, camera: str, steps, height: int, width: int,
                        occupancy: Occupancy4D | None = None, **render_kwargs) -> dict[str, np.ndarray]:
    """Occupancy of ``steps`` rendered from ``camera`` at ``height x width`` (intrinsics rescaled)."""
    if episode.intrinsics is None or camera not in episode.intrinsics:
        raise OccupancyInputError(f"episode {episode.meta.episode_id}: no camera geometry for {camera!r}")
    occupancy = occupancy if occupancy is not None else occupancy_from_episode(episode)
    subset = Occupancy4D(occupancy.grid, [occupancy.coords[i] for i in steps],
                         [occupancy.labels[i] for i in steps], occupancy.label_names)
    h0, w0 = episode.frames[camera].shape[1:3]
    K = np.asarray(episode.intrinsics[camera], np.float32)
    K = K[steps] if K.ndim == 3 else np.repeat(K[None], len(steps), axis=0)
    K = K.copy()
    K[:, 0] *= width / w0
    K[:, 1] *= height / h0
    poses = np.asarray(episode.extrinsics[camera], np.float32)
    poses = poses[steps] if poses.ndim == 3 else np.repeat(poses[None], len(steps), axis=0)
    maps = render_condition_maps(subset, ViewCamera(K, poses, height, width), **render_kwargs)
    return {"depth": maps.depth, "semantics": maps.semantics}

"""Condition maps for a clip, for exactly the clip's frames (placeholder frame included), at
the clip's sample size: the episode's occupancy rendered from the clip's own camera (the
paper's "coarse" maps), or the episode's own depth/segmentation kept to the occupancy's
volume (the "fine" maps of its Table 7)."""

from __future__ import annotations

import numpy as np
import torch

from orv_engine.occupancy.cameras import check_intrinsics, check_poses
from orv_engine.occupancy.condition_maps import ViewCamera, render_condition_maps
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.from_episode import occupancy_from_episode
from orv_engine.occupancy.grid import VoxelGrid
from orv_engine.occupancy.occupancy4d import Occupancy4D
from orv_engine.occupancy.points import depth_to_points
from orv_engine.occupancy.render_occ2gs import BACKGROUND_LABEL


def clip_steps(clip) -> list[int]:
    """The episode step of each of the clip's frames (a placeholder frame repeats the last)."""
    return list(clip.frame_indices) + [clip.frame_indices[-1]] * (len(clip.frames) - clip.num_real_frames)


def clip_condition_maps(episode, clip, occupancy: Occupancy4D | None = None, **render_kwargs) -> dict[str, np.ndarray]:
    """``{"depth": (F, H, W) float32, "semantics": (F, H, W) int32}`` aligned with ``clip.frames``.

    ``occupancy`` defaults to :func:`occupancy_from_episode` of the whole episode (pass it in
    when cutting many clips of one episode). Intrinsics are rescaled to the sample size, so
    the maps are rendered at the clip's resolution rather than resized.
    """
    height, width = clip.frames.shape[1:3]
    return view_condition_maps(episode, clip.camera, clip_steps(clip), height, width, occupancy, **render_kwargs)


def recorded_clip_maps(episode, clip, grid: VoxelGrid) -> dict[str, np.ndarray]:
    """The clip's "fine" maps: :func:`recorded_condition_maps` at its frames and sample size."""
    height, width = clip.frames.shape[1:3]
    return recorded_condition_maps(episode, clip.camera, clip_steps(clip), height, width, grid)


def recorded_condition_maps(episode, camera: str, steps, height: int, width: int,
                            grid: VoxelGrid) -> dict[str, np.ndarray]:
    """The episode's own depth and segmentation at ``steps``, kept to ``grid``'s volume and
    resized (nearest) to ``height x width``: ``{"depth": (F, H, W) float32, "semantics": (F, H, W) int32}``.

    Pixels whose back-projected point lies outside the grid (or without valid depth) become
    background, depth 0 and label ``BACKGROUND_LABEL``, as in the maps rendered from the
    occupancy (which holds nothing outside its grid). Fine and coarse maps then differ in
    granularity only; with the floor metres away in view, the per-clip depth encoding would
    otherwise spend its range on the floor and leave the workspace flat."""
    name = episode.meta.episode_id
    for field in ("depth", "segmentation", "intrinsics", "extrinsics"):
        value = getattr(episode, field)
        if value is None or camera not in value:
            raise OccupancyInputError(f"episode {name}: no {field} for camera {camera!r} (the fine maps need it)")
    num_frames = len(episode)
    K = check_intrinsics(episode.intrinsics[camera], num_frames, f"episode {name}: intrinsics[{camera!r}]")
    poses = check_poses(episode.extrinsics[camera], num_frames, f"episode {name}: extrinsics[{camera!r}]")
    depths, labels = [], []
    for t in steps:
        depth = np.asarray(episode.depth[camera][t], np.float32)
        seg = np.asarray(episode.segmentation[camera][t])
        valid = np.isfinite(depth) & (depth > 0)
        _, inside = grid.voxel_indices(depth_to_points(depth, K[t], poses[t], mask=valid).points)
        keep = np.zeros_like(valid)
        keep[valid] = inside  # the points come in the row-major order of the valid pixels
        depths.append(np.where(keep, depth, 0.0).astype(np.float32))
        labels.append(np.where(keep, seg, BACKGROUND_LABEL).astype(np.int32))
    return {"depth": resize_nearest(np.stack(depths), height, width),
            "semantics": resize_nearest(np.stack(labels), height, width)}


def resize_nearest(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    """``(F, H0, W0)`` maps -> ``(F, height, width)`` by nearest neighbour (torch's rule), dtype kept."""
    if maps.shape[1:] == (height, width):
        return maps
    x = torch.from_numpy(np.ascontiguousarray(maps)).float()[:, None]
    return torch.nn.functional.interpolate(x, size=(height, width), mode="nearest")[:, 0].numpy().astype(maps.dtype)


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

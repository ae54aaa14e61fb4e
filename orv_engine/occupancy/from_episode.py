"""Build ``Occupancy4D`` from an ``Episode`` that carries depth, intrinsics and extrinsics
(simulation or sensor depth); RGB-only episodes go through the depth adapter first.

The grid is fixed for the whole episode (4D occupancy shares one canonical space): by default
the dataset's extent preset (0.4 x 0.4 x 0.6 for datasets without one, e.g. simulation)
centred on the median of the first frame's points. Label names default to
``episode.labels`` (segmentation value -> name) when the episode has them.
"""

from __future__ import annotations

import numpy as np

from orv_engine.occupancy.cameras import check_intrinsics, check_poses
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.grid import DEFAULT_VOXEL_SIZE, EXTENT_PRESETS, VoxelGrid
from orv_engine.occupancy.occupancy4d import Occupancy4D
from orv_engine.occupancy.points import FramePoints, depth_to_points, merge

# Datasets without a paper preset (simulation, ...) get the larger of the paper's extents.
FALLBACK_EXTENT = EXTENT_PRESETS["droid"]


def episode_frame_points(episode, cameras=None, label_map=None, steps=None) -> list[FramePoints]:
    """Per-frame world points of ``episode`` from all (or the given) cameras' depth maps, for
    every frame (or the given ``steps``).

    ``label_map`` optionally maps raw segmentation ids to label ids (``(max_id + 1,)`` array).
    """
    for name in ("depth", "intrinsics", "extrinsics"):
        if getattr(episode, name) is None:
            raise OccupancyInputError(
                f"episode.{name}: missing; this episode has no geometry "
                "(use the depth adapter for RGB-only datasets)"
            )
    cameras = list(cameras) if cameras is not None else list(episode.depth)
    num_frames = len(episode)
    steps = list(range(num_frames)) if steps is None else list(steps)
    per_camera = []
    for cam in cameras:
        for name in ("depth", "intrinsics", "extrinsics"):
            if cam not in getattr(episode, name):
                raise OccupancyInputError(f"episode.{name}: no entry for camera {cam!r}")
        depth = np.asarray(episode.depth[cam])
        if depth.ndim != 3 or depth.shape[0] != num_frames:
            raise OccupancyInputError(
                f"episode.depth[{cam!r}]: expected ({num_frames}, H, W), got {depth.shape}"
            )
        K = check_intrinsics(episode.intrinsics[cam], num_frames, f"episode.intrinsics[{cam!r}]")
        pose = check_poses(episode.extrinsics[cam], num_frames, f"episode.extrinsics[{cam!r}]")
        seg = None
        if episode.segmentation is not None and cam in episode.segmentation:
            seg = np.asarray(episode.segmentation[cam])
            if seg.shape != depth.shape:
                raise OccupancyInputError(
                    f"episode.segmentation[{cam!r}]: expected {depth.shape}, got {seg.shape}"
                )
            if label_map is not None:
                label_map = np.asarray(label_map)
                if seg.size and (seg.min() < 0 or seg.max() >= label_map.shape[0]):
                    raise OccupancyInputError(
                        f"label_map: has {label_map.shape[0]} entries but episode.segmentation[{cam!r}] "
                        f"holds ids {int(seg.min())}..{int(seg.max())}"
                    )
                seg = label_map[seg]
        per_camera.append([
            depth_to_points(depth[t], K[t], pose[t], None if seg is None else seg[t])
            for t in steps
        ])
    return [merge([cam_points[i] for cam_points in per_camera]) for i in range(len(steps))]


def episode_grid(episode, cameras=None, voxel_size: float = DEFAULT_VOXEL_SIZE, first_points=None) -> VoxelGrid:
    """The grid :func:`occupancy_from_episode` builds by default: the dataset's extent preset
    centred on the median of the first frame's points (``first_points``, or back-projected
    from ``cameras``' depth)."""
    extent = EXTENT_PRESETS.get(episode.meta.dataset, FALLBACK_EXTENT)
    if first_points is None:
        first_points = episode_frame_points(episode, cameras, steps=[0])[0].points
    if first_points.shape[0] == 0:
        raise OccupancyInputError("depth: the first frame has no valid depth to centre the grid on")
    return VoxelGrid.from_extent(np.median(first_points, axis=0), extent, voxel_size)


def occupancy_from_episode(episode, grid: VoxelGrid | None = None, cameras=None,
                           label_names=(), label_map=None,
                           voxel_size: float = DEFAULT_VOXEL_SIZE) -> Occupancy4D:
    """4D semantic occupancy of an episode with depth + intrinsics + extrinsics.

    ``label_map`` maps raw segmentation values to ids of ``label_names``; points outside the
    grid are dropped and counted per frame in ``Occupancy4D.stats``.
    """
    frames = episode_frame_points(episode, cameras, label_map)
    if not label_names and label_map is None and getattr(episode, "labels", None):
        label_names = tuple(episode.labels)  # segmentation values index episode.labels
    if grid is None:
        grid = episode_grid(episode, voxel_size=voxel_size, first_points=frames[0].points)
    return Occupancy4D.from_points(frames, grid, label_names)

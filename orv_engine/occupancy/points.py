"""Depth maps (sensor, simulation, depth adapter) or point maps (MonST3R/VGGT exports) to
world points, with per-pixel labels carried along.

Invalid depth (NaN, inf, <= 0) is masked and counted rather than raised: real sensor depth
has holes. Shape mismatches raise :class:`OccupancyInputError` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orv_engine.occupancy.cameras import check_intrinsics, check_poses
from orv_engine.occupancy.errors import OccupancyInputError


@dataclass
class FramePoints:
    """World points of one frame and the label of the pixel each came from."""

    points: np.ndarray  # (N, 3) float64, world frame
    labels: np.ndarray  # (N,) int64
    num_invalid: int  # pixels dropped for NaN / inf / non-positive depth (or masked out)


def _check_labels(labels, shape, field: str) -> np.ndarray:
    if labels is None:
        return np.zeros(shape, dtype=np.int64)
    labels = np.asarray(labels)
    if labels.shape != shape:
        raise OccupancyInputError(f"{field}: expected shape {shape}, got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise OccupancyInputError(f"{field}: expected integer labels, got {labels.dtype}")
    return labels.astype(np.int64)


def depth_to_points(depth, intrinsics, cam_to_world, labels=None, mask=None) -> FramePoints:
    """Back-project one ``(H, W)`` depth map (z along the optical axis) to world points.

    ``intrinsics`` is ``(3, 3)``, ``cam_to_world`` ``(4, 4)``; ``labels`` an optional
    ``(H, W)`` integer map; ``mask`` an optional ``(H, W)`` bool map of pixels to keep.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.ndim != 2:
        raise OccupancyInputError(f"depth: expected a (H, W) map, got shape {depth.shape}")
    K = check_intrinsics(intrinsics, 1)[0]
    pose = check_poses(cam_to_world, 1)[0]
    labels = _check_labels(labels, depth.shape, "labels")
    valid = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != depth.shape:
            raise OccupancyInputError(f"mask: expected shape {depth.shape}, got {mask.shape}")
        valid &= mask
    rows, cols = np.nonzero(valid)
    z = depth[rows, cols]
    x = (cols - K[0, 2]) / K[0, 0] * z
    y = (rows - K[1, 2]) / K[1, 1] * z
    camera_points = np.stack([x, y, z], axis=1)
    world = camera_points @ pose[:3, :3].T + pose[:3, 3]
    return FramePoints(world, labels[rows, cols], int(depth.size - rows.size))


def point_map_to_points(point_map, labels=None, cam_to_world=None, confidence=None,
                        min_confidence: float = 0.0) -> FramePoints:
    """Points from an ``(H, W, 3)`` point map saved by MonST3R/VGGT (camera or world frame).

    If ``cam_to_world`` is given the map is in camera coordinates and is moved to the world;
    ``confidence`` ``(H, W)`` drops pixels below ``min_confidence`` (counted as invalid).
    """
    point_map = np.asarray(point_map, dtype=np.float64)
    if point_map.ndim != 3 or point_map.shape[-1] != 3:
        raise OccupancyInputError(f"point_map: expected (H, W, 3), got {point_map.shape}")
    shape = point_map.shape[:2]
    labels = _check_labels(labels, shape, "labels")
    valid = np.all(np.isfinite(point_map), axis=-1)
    if confidence is not None:
        confidence = np.asarray(confidence, dtype=np.float64)
        if confidence.shape != shape:
            raise OccupancyInputError(f"confidence: expected shape {shape}, got {confidence.shape}")
        valid &= confidence >= min_confidence
    points = point_map[valid]
    if cam_to_world is not None:
        pose = check_poses(cam_to_world, 1)[0]
        points = points @ pose[:3, :3].T + pose[:3, 3]
    return FramePoints(points, labels[valid], int(valid.size - valid.sum()))


def merge(frame_points: list[FramePoints]) -> FramePoints:
    """Concatenate the points of several cameras of one frame."""
    if not frame_points:
        return FramePoints(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), 0)
    return FramePoints(
        np.concatenate([p.points for p in frame_points]),
        np.concatenate([p.labels for p in frame_points]),
        sum(p.num_invalid for p in frame_points),
    )

"""Camera arrays checked and broadcast once, so every other module can trust them.

Conventions (OpenCV, same as ``orv_engine.data.Episode``): intrinsics ``K`` are ``(3, 3)``
(one for all frames) or ``(T, 3, 3)``; poses are camera-to-world ``(4, 4)`` or
``(T, 4, 4)``; the camera looks down +z, x right, y down; pixel ``(row i, col j)`` has its
centre at image coordinates ``(u, v) = (j, i)``.
"""

from __future__ import annotations

import numpy as np

from orv_engine.occupancy.errors import OccupancyInputError


def per_frame_matrices(matrix, num_frames: int, size: int, field: str) -> np.ndarray:
    """Return ``(num_frames, size, size)`` float64 from a ``(size, size)`` or per-frame array."""
    array = np.asarray(matrix, dtype=np.float64)
    if array.shape == (size, size):
        return np.broadcast_to(array, (num_frames, size, size)).copy()
    if array.shape == (num_frames, size, size):
        return array.copy()
    raise OccupancyInputError(
        f"{field}: expected shape ({size}, {size}) or ({num_frames}, {size}, {size}), "
        f"got {array.shape}"
    )


def check_intrinsics(intrinsics, num_frames: int, field: str = "intrinsics") -> np.ndarray:
    K = per_frame_matrices(intrinsics, num_frames, 3, field)
    if not np.all(np.isfinite(K)):
        raise OccupancyInputError(f"{field}: contains NaN or inf")
    if np.any(K[:, 0, 0] <= 0) or np.any(K[:, 1, 1] <= 0):
        raise OccupancyInputError(f"{field}: focal lengths fx, fy must be positive")
    return K


def check_poses(cam_to_world, num_frames: int, field: str = "cam_to_world") -> np.ndarray:
    pose = per_frame_matrices(cam_to_world, num_frames, 4, field)
    if not np.all(np.isfinite(pose)):
        raise OccupancyInputError(f"{field}: contains NaN or inf")
    if not np.allclose(pose[:, 3], [0.0, 0.0, 0.0, 1.0]):
        raise OccupancyInputError(f"{field}: last row of each pose must be [0, 0, 0, 1]")
    return pose


def look_at(eye, target, up=(0.0, 0.0, 1.0)) -> np.ndarray:
    """Camera-to-world pose of an OpenCV camera at ``eye`` looking at ``target``."""
    eye, target, up = (np.asarray(v, dtype=np.float64) for v in (eye, target, up))
    forward = target - eye
    forward /= np.linalg.norm(forward)
    right = np.cross(forward, up)
    if np.linalg.norm(right) < 1e-9:  # looking along `up`: pick any perpendicular
        right = np.cross(forward, [1.0, 0.0, 0.0] if abs(forward[0]) < 0.9 else [0.0, 1.0, 0.0])
    right /= np.linalg.norm(right)
    down = np.cross(forward, right)
    pose = np.eye(4)
    pose[:3, 0], pose[:3, 1], pose[:3, 2], pose[:3, 3] = right, down, forward, eye
    return pose


def pinhole(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

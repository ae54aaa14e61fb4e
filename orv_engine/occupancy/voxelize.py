"""Points + per-point labels -> sparse voxels with one label each, by majority vote.

numpy's ``unique`` does the counting; the vote itself (most points wins, ties to the
smallest label id, so the result is deterministic) is a lexsort over (voxel, -count, label).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.grid import VoxelGrid


@dataclass
class VoxelizeStats:
    num_points: int  # points handed in
    num_outside: int  # points outside the grid bounds (dropped, counted here)
    num_voxels: int  # occupied voxels


def voxelize(points, labels, grid: VoxelGrid):
    """Return ``(coords (V, 3) int32, labels (V,) int32, VoxelizeStats)``; coords sorted."""
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise OccupancyInputError(f"points: expected (N, 3), got {points.shape}")
    labels = np.asarray(labels)
    if labels.shape != (points.shape[0],):
        raise OccupancyInputError(f"labels: expected ({points.shape[0]},), got {labels.shape}")
    if labels.size and (not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0):
        raise OccupancyInputError("labels: expected non-negative integer label ids")
    ijk, inside = grid.voxel_indices(points)
    ijk, point_labels = ijk[inside], labels[inside].astype(np.int64)
    nx, ny, nz = grid.shape
    linear = (ijk[:, 0] * ny + ijk[:, 1]) * nz + ijk[:, 2]
    num_labels = int(point_labels.max()) + 1 if point_labels.size else 1
    pairs, counts = np.unique(linear * num_labels + point_labels, return_counts=True)
    pair_voxel, pair_label = np.divmod(pairs, num_labels)
    order = np.lexsort((pair_label, -counts, pair_voxel))  # last key sorts first
    pair_voxel, pair_label = pair_voxel[order], pair_label[order]
    first = np.ones(pair_voxel.size, dtype=bool)
    first[1:] = pair_voxel[1:] != pair_voxel[:-1]
    voxel, winner = pair_voxel[first], pair_label[first]
    coords = np.stack(np.unravel_index(voxel, grid.shape), axis=1).astype(np.int32)
    stats = VoxelizeStats(int(points.shape[0]), int((~inside).sum()), int(voxel.size))
    return coords, winner.astype(np.int32), stats

"""Analytic scenes shared by the occupancy / Occ2GS tests (known depths and labels)."""

from __future__ import annotations

import numpy as np

from orv_engine.occupancy.cameras import pinhole
from orv_engine.occupancy.grid import VoxelGrid
from orv_engine.occupancy.occupancy4d import Occupancy4D
from orv_engine.occupancy.points import depth_to_points
from orv_engine.occupancy.voxelize import voxelize

VOXEL = 0.001
SIZE = 64
FOCAL = 100.0  # at depth 0.1 one pixel spans one voxel
K = pinhole(FOCAL, FOCAL, (SIZE - 1) / 2, (SIZE - 1) / 2)
IDENTITY = np.eye(4)


def grid() -> VoxelGrid:
    return VoxelGrid.from_extent(center=(0.0, 0.0, 0.15), extent=(0.2, 0.2, 0.2), voxel_size=VOXEL)


def occupancy_from_depths(depths, labels, grid_=None) -> Occupancy4D:
    grid_ = grid_ or grid()
    coords, labs = [], []
    for depth, label in zip(depths, labels):
        frame = depth_to_points(depth, K, IDENTITY, label)
        c, lab, _ = voxelize(frame.points, frame.labels, grid_)
        coords.append(c)
        labs.append(lab)
    return Occupancy4D(grid_, coords, labs, ("table", "cup", "bowl"))


def plane(depth: float, size: int = SIZE) -> np.ndarray:
    return np.full((size, size), depth)

"""``Occupancy4D``: the record that crosses stage boundaries — one sparse semantic voxel grid
per frame, all frames sharing one canonical grid (origin, voxel size, bounds).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.grid import VoxelGrid
from orv_engine.occupancy.points import FramePoints
from orv_engine.occupancy.voxelize import VoxelizeStats, voxelize


@dataclass
class Occupancy4D:
    """Per-frame occupied voxels: ``coords[t]`` ``(N_t, 3)`` int32 grid indices and
    ``labels[t]`` ``(N_t,)`` int32 indices into ``label_names``."""

    grid: VoxelGrid
    coords: list[np.ndarray]
    labels: list[np.ndarray]
    label_names: tuple[str, ...] = ()
    stats: list[VoxelizeStats] = field(default_factory=list)  # per frame, when built from points

    def __post_init__(self):
        if len(self.coords) != len(self.labels):
            raise OccupancyInputError(
                f"labels: {len(self.labels)} frames but coords has {len(self.coords)}"
            )
        shape = np.asarray(self.grid.shape)
        for t, (c, lab) in enumerate(zip(self.coords, self.labels)):
            if c.ndim != 2 or c.shape[1] != 3 or not np.issubdtype(c.dtype, np.integer):
                raise OccupancyInputError(f"coords[{t}]: expected (N, 3) integers, got {c.shape} {c.dtype}")
            if lab.shape != (c.shape[0],):
                raise OccupancyInputError(f"labels[{t}]: expected ({c.shape[0]},), got {lab.shape}")
            if c.size and (c.min() < 0 or np.any(c.max(axis=0) >= shape)):
                raise OccupancyInputError(f"coords[{t}]: indices outside grid shape {tuple(shape)}")
            if self.label_names and lab.size and lab.max() >= len(self.label_names):
                raise OccupancyInputError(
                    f"labels[{t}]: label id {int(lab.max())} has no name "
                    f"({len(self.label_names)} label_names)"
                )
        self.label_names = tuple(self.label_names)

    @property
    def num_frames(self) -> int:
        return len(self.coords)

    def num_voxels(self, t: int) -> int:
        return int(self.coords[t].shape[0])

    def centers(self, t: int) -> np.ndarray:
        """World positions ``(N_t, 3)`` of the voxel centres of frame ``t``."""
        return self.grid.centers(self.coords[t])

    @property
    def is_empty(self) -> bool:
        return all(c.shape[0] == 0 for c in self.coords)

    @classmethod
    def from_points(cls, frames: list[FramePoints], grid: VoxelGrid,
                    label_names=()) -> "Occupancy4D":
        """Voxelize each frame's points (majority-vote labels) into one shared grid."""
        coords, labels, stats = [], [], []
        for points in frames:
            c, lab, s = voxelize(points.points, points.labels, grid)
            coords.append(c)
            labels.append(lab)
            stats.append(s)
        return cls(grid, coords, labels, tuple(label_names), stats)

"""The voxel grid of the canonical space: origin, voxel size and extent, with the paper's
per-dataset presets (Sec. 10.1.1: voxel 0.001 units; extent 0.4 x 0.4 x 0.4 for BridgeV2,
0.4 x 0.4 x 0.6 for DROID and RT-1).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orv_engine.occupancy.errors import OccupancyInputError

DEFAULT_VOXEL_SIZE = 0.001
EXTENT_PRESETS: dict[str, tuple[float, float, float]] = {
    "bridge": (0.4, 0.4, 0.4),
    "droid": (0.4, 0.4, 0.6),
    "rt1": (0.4, 0.4, 0.6),
}


@dataclass(frozen=True)
class VoxelGrid:
    """Axis-aligned grid: voxel ``(i, j, k)`` spans ``origin + [i, i+1) * voxel_size`` etc."""

    origin: tuple[float, float, float]  # world position of the grid's min corner
    voxel_size: float
    shape: tuple[int, int, int]  # voxels along x, y, z

    def __post_init__(self):
        if not (np.isfinite(self.voxel_size) and self.voxel_size > 0):
            raise OccupancyInputError(f"voxel_size: must be positive, got {self.voxel_size}")
        if len(self.shape) != 3 or any(int(n) <= 0 for n in self.shape):
            raise OccupancyInputError(f"shape: expected 3 positive sizes, got {self.shape}")
        if len(self.origin) != 3 or not np.all(np.isfinite(self.origin)):
            raise OccupancyInputError(f"origin: expected 3 finite values, got {self.origin}")
        object.__setattr__(self, "origin", tuple(float(v) for v in self.origin))
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        object.__setattr__(self, "voxel_size", float(self.voxel_size))

    @classmethod
    def from_extent(cls, center, extent, voxel_size: float = DEFAULT_VOXEL_SIZE) -> "VoxelGrid":
        extent = np.asarray(extent, dtype=np.float64)
        shape = np.maximum(np.round(extent / voxel_size).astype(np.int64), 1)
        origin = np.asarray(center, dtype=np.float64) - shape * voxel_size / 2.0
        return cls(tuple(origin), voxel_size, tuple(shape))

    @classmethod
    def preset(cls, dataset: str, center, voxel_size: float = DEFAULT_VOXEL_SIZE) -> "VoxelGrid":
        """The paper's extent for ``dataset`` ("bridge", "droid", "rt1") centred at ``center``."""
        if dataset not in EXTENT_PRESETS:
            raise OccupancyInputError(
                f"dataset: no extent preset for {dataset!r}; known: {sorted(EXTENT_PRESETS)} "
                "(build the grid with VoxelGrid.from_extent instead)"
            )
        return cls.from_extent(center, EXTENT_PRESETS[dataset], voxel_size)

    @property
    def extent(self) -> np.ndarray:
        return np.asarray(self.shape, dtype=np.float64) * self.voxel_size

    def voxel_indices(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Integer ``(N, 3)`` indices of ``points`` and a bool mask of those inside the grid."""
        points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        ijk = np.floor((points - np.asarray(self.origin)) / self.voxel_size)
        inside = np.all((ijk >= 0) & (ijk < np.asarray(self.shape)), axis=1)
        inside &= np.all(np.isfinite(points), axis=1)
        ijk = np.where(inside[:, None], ijk, 0).astype(np.int64)
        return ijk, inside

    def centers(self, coords: np.ndarray) -> np.ndarray:
        """World positions of voxel centres for integer ``(N, 3)`` coords."""
        return np.asarray(self.origin) + (np.asarray(coords, dtype=np.float64) + 0.5) * self.voxel_size

"""On-disk format of ``Occupancy4D``: one compressed ``.npz`` (numpy, no pickle).

Layout (format ``orv-occupancy4d``, version 1)::

    format          ()        str      "orv-occupancy4d"
    version         ()        int64    1
    origin          (3,)      float64  world position of the grid's min corner
    voxel_size      ()        float64  edge length of a voxel (canonical units)
    grid_shape      (3,)      int64    voxels along x, y, z
    frame_offsets   (T+1,)    int64    frame t owns rows frame_offsets[t]:frame_offsets[t+1]
    coords          (N, 3)    uint16   voxel indices (int32 when a grid side exceeds 65535)
    labels          (N,)      uint16   indices into label_names (int32 beyond 65535 labels)
    label_names     (L,)      str      label set (may be empty)
    num_points      (T,)      int64    optional: points voxelized per frame
    num_outside     (T,)      int64    optional: points outside the bounds per frame

Frames are concatenated rather than stored as T arrays so a 100-frame episode is one
array read; uint16 halves the size of int32 with the default 400-voxel sides.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.grid import VoxelGrid
from orv_engine.occupancy.occupancy4d import Occupancy4D
from orv_engine.occupancy.voxelize import VoxelizeStats

FORMAT_NAME = "orv-occupancy4d"
FORMAT_VERSION = 1


def save_occupancy(occupancy: Occupancy4D, path) -> Path:
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_suffix(path.suffix + ".npz") if path.suffix else path.with_suffix(".npz")
    counts = [c.shape[0] for c in occupancy.coords]
    offsets = np.zeros(len(counts) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(counts)
    coord_dtype = np.uint16 if max(occupancy.grid.shape) <= 65535 else np.int32
    label_dtype = np.uint16 if len(occupancy.label_names) <= 65535 else np.int32
    coords = (np.concatenate(occupancy.coords) if counts else np.zeros((0, 3))).astype(coord_dtype)
    labels = (np.concatenate(occupancy.labels) if counts else np.zeros(0)).astype(label_dtype)
    if labels.size and label_dtype == np.uint16 and int(np.concatenate(occupancy.labels).max()) > 65535:
        raise OccupancyInputError("labels: label ids above 65535 need label_names to say so")
    arrays = dict(
        format=np.array(FORMAT_NAME), version=np.array(FORMAT_VERSION, dtype=np.int64),
        origin=np.asarray(occupancy.grid.origin, dtype=np.float64),
        voxel_size=np.array(occupancy.grid.voxel_size, dtype=np.float64),
        grid_shape=np.asarray(occupancy.grid.shape, dtype=np.int64),
        frame_offsets=offsets, coords=coords, labels=labels,
        label_names=np.array(occupancy.label_names, dtype=np.str_),
    )
    if occupancy.stats and len(occupancy.stats) == len(counts):
        arrays["num_points"] = np.array([s.num_points for s in occupancy.stats], dtype=np.int64)
        arrays["num_outside"] = np.array([s.num_outside for s in occupancy.stats], dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    return path


def load_occupancy(path) -> Occupancy4D:
    with np.load(Path(path), allow_pickle=False) as data:
        if "format" not in data or str(data["format"]) != FORMAT_NAME:
            raise OccupancyInputError(f"{path}: not an {FORMAT_NAME} file")
        if int(data["version"]) > FORMAT_VERSION:
            raise OccupancyInputError(f"{path}: format version {int(data['version'])} is newer than {FORMAT_VERSION}")
        grid = VoxelGrid(tuple(data["origin"]), float(data["voxel_size"]), tuple(data["grid_shape"]))
        offsets = data["frame_offsets"]
        coords = data["coords"].astype(np.int32)
        labels = data["labels"].astype(np.int32)
        spans = list(zip(offsets[:-1], offsets[1:]))
        stats = []
        if "num_points" in data:
            stats = [
                VoxelizeStats(int(p), int(o), int(b - a))
                for p, o, (a, b) in zip(data["num_points"], data["num_outside"], spans)
            ]
        return Occupancy4D(
            grid,
            [coords[a:b] for a, b in spans],
            [labels[a:b] for a, b in spans],
            tuple(str(n) for n in data["label_names"]),
            stats,
        )

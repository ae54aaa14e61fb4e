"""4D semantic occupancy and Occ2GS condition rendering (paper Sec. 3.3, supp. 8 and 10.1).

depth / point maps -> world points (``points``) -> sparse semantic voxels per frame
(``voxelize``, ``Occupancy4D``, stored by ``storage``) -> one Gaussian per voxel rendered to
depth + semantic condition maps from any camera (``condition_maps``). Heavy or optional
pieces (depth adapter, label clustering, RAFT, Grounding DINO + SAM2, gsplat) are imported
from their own modules only when used.
"""

from orv_engine.occupancy.alignment import DepthAlignment, fit_depth_alignment, rescale_cameras
from orv_engine.occupancy.clip_conditions import (
    clip_condition_maps,
    episode_condition_maps,
    recorded_clip_maps,
    recorded_condition_maps,
)
from orv_engine.occupancy.condition_maps import ConditionMaps, ViewCamera, render_condition_maps, render_views
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.from_episode import episode_grid, occupancy_from_episode
from orv_engine.occupancy.gaussian_scale import GaussianScaleRule
from orv_engine.occupancy.grid import VoxelGrid
from orv_engine.occupancy.occupancy4d import Occupancy4D
from orv_engine.occupancy.points import depth_to_points, point_map_to_points
from orv_engine.occupancy.projection import SplatSettings
from orv_engine.occupancy.render_occ2gs import BACKGROUND_LABEL
from orv_engine.occupancy.storage import load_occupancy, save_occupancy
from orv_engine.occupancy.voxelize import voxelize

__all__ = [
    "BACKGROUND_LABEL", "ConditionMaps", "clip_condition_maps", "episode_condition_maps", "DepthAlignment",
    "GaussianScaleRule", "Occupancy4D", "OccupancyInputError", "SplatSettings", "ViewCamera", "VoxelGrid",
    "depth_to_points", "episode_grid", "fit_depth_alignment", "load_occupancy", "occupancy_from_episode",
    "point_map_to_points", "recorded_clip_maps", "recorded_condition_maps",
    "render_condition_maps", "render_views", "rescale_cameras", "save_occupancy", "voxelize",
]

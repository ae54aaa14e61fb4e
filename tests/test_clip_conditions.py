"""Condition maps of a clip line up with the clip's frames (placeholder included); the fine maps
keep the occupancy's volume."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import orv_engine
from orv_engine.data import PRESETS, RLDSReader, cut_clips
from orv_engine.occupancy import (
    BACKGROUND_LABEL,
    OccupancyInputError,
    VoxelGrid,
    clip_condition_maps,
    episode_grid,
    occupancy_from_episode,
    recorded_clip_maps,
    recorded_condition_maps,
)

DEMO = Path(orv_engine.__file__).parent / "demo_data" / "orv_tabletop"


def test_clip_conditions_follow_the_clip_frames():
    episode = next(iter(RLDSReader(DEMO)))
    config = replace(PRESETS["sim"], num_frames=8, clip_interval=12)
    clip = cut_clips(episode, config)[1]  # a clip that does not start at step 0
    occupancy = occupancy_from_episode(episode)
    maps = clip_condition_maps(episode, clip, occupancy=occupancy)
    assert maps["depth"].shape == maps["semantics"].shape == (9, 128, 128)
    np.testing.assert_array_equal(maps["depth"][8], maps["depth"][7])  # placeholder frame
    for k in (0, 7):
        truth = episode.depth["image_0"][clip.frame_indices[k]]
        seen = (maps["depth"][k] > 0) & (truth > 0) & (truth < 1.0)
        assert seen.mean() > 0.3
        assert np.median(np.abs(maps["depth"][k] - truth)[seen]) < 0.004
    # at half the resolution the maps are rendered (not resized) at the clip's size
    small = cut_clips(episode, replace(config, height=64, width=64))[1]
    small_maps = clip_condition_maps(episode, small, occupancy=occupancy)
    assert small_maps["depth"].shape == (9, 64, 64)
    assert abs(np.median(small_maps["depth"][0][small_maps["depth"][0] > 0])
               - np.median(maps["depth"][0][maps["depth"][0] > 0])) < 0.01


def test_fine_maps_keep_the_occupancy_volume_only():
    """The recorded ("fine") maps: the simulator's depth/segmentation where the pixel's point lies
    in the occupancy's grid, background elsewhere (checked against a back-projection written here)."""
    episode = next(iter(RLDSReader(DEMO)))
    camera = "image_0"
    grid = episode_grid(episode)
    assert grid == occupancy_from_episode(episode).grid  # the grid the coarse maps come from
    step = 5
    depth = episode.depth[camera][step].astype(np.float64)
    height, width = depth.shape
    maps = recorded_condition_maps(episode, camera, [step, step + 1], height, width, grid)
    assert maps["depth"].shape == maps["semantics"].shape == (2, height, width)
    assert maps["depth"].dtype == np.float32 and maps["semantics"].dtype == np.int32

    K = np.asarray(episode.intrinsics[camera], np.float64)
    K = K[step] if K.ndim == 3 else K
    pose = np.asarray(episode.extrinsics[camera], np.float64)
    pose = pose[step] if pose.ndim == 3 else pose
    v, u = np.mgrid[0:height, 0:width]
    cam = np.stack([(u - K[0, 2]) / K[0, 0] * depth, (v - K[1, 2]) / K[1, 1] * depth, depth], -1)
    world = cam @ pose[:3, :3].T + pose[:3, 3]
    ijk = np.floor((world - np.asarray(grid.origin)) / grid.voxel_size)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(grid.shape)), axis=-1) & (depth > 0)
    assert 0.1 < inside.mean() < 0.9  # the floor far away is cut, the workspace kept
    np.testing.assert_array_equal(maps["depth"][0] > 0, inside)
    np.testing.assert_allclose(maps["depth"][0][inside], depth[inside], rtol=1e-6)
    np.testing.assert_array_equal(maps["semantics"][0][inside], episode.segmentation[camera][step][inside])
    assert (maps["semantics"][0][~inside] == BACKGROUND_LABEL).all()

    far = VoxelGrid(origin=tuple(np.asarray(grid.origin) + 100.0), shape=grid.shape, voxel_size=grid.voxel_size)
    empty = recorded_condition_maps(episode, camera, [step], 32, 32, far)
    assert empty["depth"].shape == (1, 32, 32) and not empty["depth"].any()
    assert (empty["semantics"] == BACKGROUND_LABEL).all()

    config = replace(PRESETS["sim"], num_frames=8, clip_interval=12, height=64, width=64)
    clip = cut_clips(episode, config)[1]
    fine = recorded_clip_maps(episode, clip, grid)
    assert fine["depth"].shape == (9, 64, 64)
    np.testing.assert_array_equal(fine["depth"][8], fine["depth"][7])  # placeholder frame

    no_segmentation = replace(episode, segmentation=None)
    with pytest.raises(OccupancyInputError, match=f"{episode.meta.episode_id}.*segmentation"):
        recorded_condition_maps(no_segmentation, camera, [0], 32, 32, grid)

"""Condition maps of a clip line up with the clip's frames (placeholder included)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

import orv_engine
from orv_engine.data import PRESETS, RLDSReader, cut_clips
from orv_engine.occupancy import clip_condition_maps, occupancy_from_episode

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

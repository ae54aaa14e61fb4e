"""Cheap checks on real clips: the shared 480x640 Bridge clips and the embedded simulated
WidowX episodes (with their depth/segmentation as condition maps)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import filtering  # noqa: F401  (import order)
from filtering.checks import CheckRunner, blur_check, flicker_check, jump_check, occupancy_agreement_check
from filtering.config import ChecksConfig


@pytest.fixture(scope="module")
def bridge_clips(shared_data):
    from orv_engine.data.clip_files import read_clip

    paths = sorted((shared_data / "bridge_real").glob("*.mp4"))
    if len(paths) < 2:
        pytest.skip("real Bridge clips not found in shared/data/bridge_real")
    return [read_clip(p) for p in paths[:2]]


def test_real_clips_pass_and_damaged_ones_fail(bridge_clips):
    a, b = bridge_clips
    for clip in (a, b):
        assert blur_check(clip, 30.0).passed
        assert flicker_check(clip, 12.0).passed
        assert jump_check(clip, 4.0).passed
    # blur: a 5x5 box filter
    from scipy import ndimage
    blurred = np.stack([ndimage.uniform_filter(f, (5, 5, 1)) for f in a])
    result = blur_check(blurred, 30.0)
    assert not result.passed and "<" in result.detail
    # flicker: one frame 40 grey levels brighter
    flick = a.astype(np.int16)
    flick[18] += 40
    result = flicker_check(np.clip(flick, 0, 255).astype(np.uint8), 12.0)
    assert not result.passed and "frame 18" in result.detail
    # jumps: a cut to another clip, a foreign frame
    assert not jump_check(np.concatenate([a[:18], b[20:40]]), 4.0).passed
    foreign = a.copy()
    foreign[20] = b[20]
    assert not jump_check(foreign, 4.0).passed


def test_raft_flow_smoothness_from_local_weights(tmp_path, bridge_clips):
    from torchvision.models.optical_flow import raft_small

    torch.manual_seed(0)
    weights = tmp_path / "raft_small.pth"
    torch.save(raft_small(weights=None).state_dict(), weights)  # random weights, the real format
    runner = CheckRunner(ChecksConfig(raft_weights=str(weights), flow_size=128, flow_smoothness_max=1e9))
    frames = bridge_clips[0][::6][:4]
    results = {r.name: r for r in runner.run(frames)}
    assert set(results) == {"blur", "flicker", "jump", "flow_smoothness"}
    flow = results["flow_smoothness"]
    assert np.isfinite(flow.value) and flow.value >= 0 and flow.passed
    # a still clip has no flow acceleration at all
    still = np.repeat(frames[:1], 4, axis=0)
    assert runner._flow.value(still)[0] == pytest.approx(0.0, abs=1e-4)


def test_occupancy_agreement_on_simulated_episodes():
    import orv_engine
    from orv_engine.data import PRESETS, RLDSReader, cut_clips

    demo = Path(orv_engine.__file__).parent / "demo_data" / "orv_tabletop"
    episode = next(iter(RLDSReader(demo)))
    clips = cut_clips(episode, PRESETS["sim"])
    clip, other = clips[0], clips[-1]
    steps = list(clip.frame_indices) + [clip.frame_indices[-1]]  # + the placeholder frame
    conditions = {"depth": episode.depth["image_0"][steps], "semantics": episode.segmentation["image_0"][steps]}
    own = occupancy_agreement_check(clip.frames, conditions, 0.7)
    assert own.passed and own.value > 0.75, own.detail
    shifted = np.roll(clip.frames, 30, axis=2)  # the arm moves where the conditions say nothing moves
    assert not occupancy_agreement_check(shifted, conditions, 0.7).passed
    assert not occupancy_agreement_check(other.frames, conditions, 0.7).passed  # another clip's motion
    frozen = np.repeat(clip.frames[:1], len(clip.frames), axis=0)
    assert occupancy_agreement_check(frozen, conditions, 0.7).value == 0.0  # conditions move, video does not
    # in the runner: only for clips that bring conditions
    names = [r.name for r in CheckRunner().run(clip.frames, conditions)]
    assert names == ["blur", "flicker", "jump", "occupancy_agreement"]

"""Cutting clips: Table 9 presets, the 8N+1 rule, frame/action alignment, skips."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from orv_engine.data import PRESETS, ClipConfig, Episode, EpisodeMeta, RLDSReader, SkipReport, cut_clips
from orv_engine.data.clips import chunk_align_actions, resize_frames


def make_episode(num_steps: int, size=(48, 64)) -> Episode:
    """Frames whose value is the step index; action[t] = t + dim/10 (easy to trace)."""
    frames = np.zeros((num_steps, *size, 3), np.uint8) + np.arange(num_steps, dtype=np.uint8)[:, None, None, None]
    actions = np.arange(num_steps, dtype=np.float32)[:, None] + np.arange(7, dtype=np.float32) / 10
    states = np.cumsum(actions, axis=0)
    meta = EpisodeMeta(dataset="bridge", episode_id="toy#0", source_file="toy", index_in_file=0)
    return Episode(frames={"image_0": frames}, actions=actions, states=states, instruction="toy", meta=meta)


def test_presets_follow_table_9():
    bridge, droid, rt1 = PRESETS["bridge"], PRESETS["droid"], PRESETS["rt1"]
    assert (bridge.num_frames, bridge.height, bridge.width, bridge.frame_stride, bridge.clip_interval, bridge.val_clip_interval) == (16, 320, 480, 1, 4, 16)
    assert (rt1.num_frames, rt1.frame_stride, rt1.clip_interval, rt1.val_clip_interval) == (16, 2, 6, 16)
    assert (droid.num_frames, droid.frame_stride, droid.clip_interval, droid.val_clip_interval) == (24, 3, 16, 72)
    # 17 frames -> 5 latent frames; 40x60 latents x 5 / patch 2x2 = 3000 tokens (Sec. 10.2.2)
    assert bridge.total_frames == 17 and bridge.num_latent_frames == 5
    assert bridge.num_latent_frames * (bridge.height // 16) * (bridge.width // 16) == 3000


@pytest.mark.parametrize("frames", [15, 17, 56])
def test_frame_counts_that_break_8n_plus_1_are_refused(frames):
    with pytest.raises(ValueError, match="8N\\+1"):
        ClipConfig(num_frames=frames)


def test_bad_config_values_name_the_field():
    with pytest.raises(ValueError, match="frame_stride"):
        ClipConfig(frame_stride=0)
    with pytest.raises(ValueError, match="multiple of 16"):
        ClipConfig(height=100)
    with pytest.raises(ValueError, match="resize"):
        ClipConfig(resize="squash")


def test_frames_actions_and_latent_chunks_line_up():
    config = ClipConfig(num_frames=8, height=48, width=64, frame_stride=1, clip_interval=3)
    episode = make_episode(14)
    clips = cut_clips(episode, config)
    assert [c.start for c in clips] == [0, 3, 6]
    clip = clips[1]
    assert clip.frames.shape == (9, 48, 64, 3)
    np.testing.assert_array_equal(clip.frames[:8, 0, 0, 0], np.arange(3, 11))
    np.testing.assert_array_equal(clip.frames[8], clip.frames[7])  # placeholder
    r = config.action_chunk
    assert clip.actions.shape == (r * config.num_latent_frames, 7) == (12, 7)
    assert not clip.actions[:r].any() and not clip.action_mask[:r].any()  # reference latent
    # chunk j >= 1 holds the actions that produce frames r(j-1)+1 .. rj, i.e. a[start + r(j-1) ...]
    np.testing.assert_allclose(clip.actions[r:, 0], np.arange(3, 11))
    assert clip.action_mask[r:].all()
    np.testing.assert_allclose(clip.states, episode.states[3:11])


def test_frame_stride_combines_actions():
    config = ClipConfig(num_frames=8, height=48, width=64, frame_stride=2, clip_interval=100)
    episode = make_episode(16)
    (clip,) = cut_clips(episode, config)
    np.testing.assert_array_equal(clip.frame_indices, np.arange(0, 16, 2))
    # EEF deltas summed over the 2 steps, gripper takes the last step's value
    np.testing.assert_allclose(clip.actions[4, :6], episode.actions[0, :6] + episode.actions[1, :6])
    np.testing.assert_allclose(clip.actions[4, 6], episode.actions[1, 6])


def test_val_split_uses_its_interval():
    config = ClipConfig(num_frames=8, height=48, width=64, clip_interval=1, val_clip_interval=4)
    assert len(cut_clips(make_episode(16), config, "train")) == 9
    assert len(cut_clips(make_episode(16), config, "val")) == 3


def test_short_episodes_and_absent_cameras_are_counted():
    report = SkipReport()
    config = ClipConfig(num_frames=8, height=48, width=64)
    assert cut_clips(make_episode(7), config, report=report) == []
    assert cut_clips(make_episode(12), replace(config, camera="image_2"), report=report) == []
    assert report.total == 2
    text = report.format()
    assert "7 steps < 8" in text and "camera 'image_2' absent" in text


def test_real_bridge_episodes_at_paper_settings(bridge_debug):
    """The shared episodes have 10 steps: none fits a 16-frame Bridge clip, and that is reported."""
    report = SkipReport()
    clips = [c for ep in RLDSReader(bridge_debug) for c in cut_clips(ep, PRESETS["bridge"], report=report)]
    assert clips == [] and report.total == 25
    tiny = [c for ep in RLDSReader(bridge_debug) for c in cut_clips(ep, PRESETS["bridge-tiny"])]
    assert len(tiny) == 25 * 3
    assert tiny[0].frames.shape == (9, 64, 64, 3)


def test_resize_modes():
    frames = np.random.default_rng(0).integers(0, 255, (2, 480, 640, 3), dtype=np.uint8)
    assert resize_frames(frames, 320, 480).shape == (2, 320, 480, 3)
    # center_crop keeps the middle: a frame with a bright centre column stays bright there
    marked = np.zeros((1, 480, 640, 3), np.uint8)
    marked[:, :, 300:340] = 255
    out = resize_frames(marked, 320, 320, mode="center_crop")
    assert out[0, :, 150:170].mean() > 200 and out[0, :, :40].mean() < 5


def test_chunk_align_actions_without_placeholder():
    actions, mask = chunk_align_actions(np.ones((9, 7)), num_latent_frames=3, action_chunk=4)
    assert actions.shape == (12, 7) and mask.sum() == 8 and not mask[:4].any()

"""Cutting clips: Table 9 presets, the VAE's 4k+1 rule, frame/action alignment, action
conventions, skips."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

import json
import sys
from pathlib import Path

import yaml

from orv_engine.data import PRESETS, ClipConfig, Episode, EpisodeMeta, RLDSReader, SkipReport, cut_clips
from orv_engine.data.action_conventions import EEF_FRAME_SCALE, eef_frame_actions
from orv_engine.data.clips import chunk_align_actions, resize_frames

sys.path.insert(0, str(Path(__file__).parent))


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


@pytest.mark.parametrize("frames", [15, 17, 56, 2])
def test_frame_counts_that_break_4k_plus_1_are_refused(frames):
    with pytest.raises(ValueError, match="num_frames: CogVideoX's VAE takes 4k\\+1"):
        ClipConfig(num_frames=frames)


@pytest.mark.parametrize("frames", [16, 8, 53, 1])
def test_frame_counts_without_placeholder_must_be_4k_plus_1(frames):
    with pytest.raises(ValueError, match="4k\\+1.*placeholder_frame=False"):
        ClipConfig(num_frames=frames, placeholder_frame=False)


@pytest.mark.parametrize(("frames", "placeholder", "latents"),
                         [(4, True, 2), (12, True, 4), (28, True, 8), (48, True, 13),
                          (5, False, 2), (13, False, 4), (17, False, 5), (29, False, 8), (49, False, 13)])
def test_4k_plus_1_frame_counts_are_accepted(frames, placeholder, latents):
    config = ClipConfig(num_frames=frames, placeholder_frame=placeholder)
    assert config.num_latent_frames == latents


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


# ------------------------------------------------------------ the VAE's frame counts


def test_cogvideox_vae_takes_4k_plus_1_frames():
    """Encoding: 4k+1 frames -> k+1 latent frames, for every k. Decoding (diffusers'
    frame-batched decode) gives 4k+1 frames back only for an odd latent count; an even one
    comes back as 4(k+1) frames (clips.py's docstring)."""
    import torch
    from tiny_orv import tiny_vae

    vae = tiny_vae()
    for frames in (5, 9, 13, 17, 29):
        k = (frames - 1) // 4
        with torch.no_grad():
            latents = vae.encode(torch.randn(1, 3, frames, 16, 16)).latent_dist.mode()
            decoded = vae.decode(latents).sample
        assert latents.shape[2] == k + 1, frames
        assert decoded.shape[2] == (frames if (k + 1) % 2 else 4 * (k + 1)), frames


# ------------------------------------------------------------ 4k+1 clips without placeholder


@pytest.mark.parametrize(("frames", "stride"), [(17, 1), (29, 3)])
def test_clips_of_4k_plus_1_real_frames_have_4k_actions(frames, stride):
    """Upstream's layout: 17 real frames -> 16 actions -> 5 latent frames (DROID: 29 -> 28 -> 8)."""
    config = ClipConfig(num_frames=frames, height=48, width=64, frame_stride=stride, clip_interval=5,
                        placeholder_frame=False)
    episode = make_episode(stride * (frames - 1) + 1 + 5)
    clips = cut_clips(episode, config)
    assert [c.start for c in clips] == [0, 5]
    clip = clips[1]
    latents = (frames - 1) // 4 + 1
    assert clip.frames.shape == (frames, 48, 64, 3) and clip.num_real_frames == frames
    np.testing.assert_array_equal(clip.frame_indices, 5 + stride * np.arange(frames))
    np.testing.assert_array_equal(clip.frames[:, 0, 0, 0], clip.frame_indices)  # no placeholder
    assert clip.actions.shape == (4 * latents, 7) and clip.action_mask.shape == (4 * latents,)
    assert not clip.actions[:4].any() and not clip.action_mask[:4].any()
    assert clip.action_mask[4:].all() and clip.action_mask.sum() == frames - 1
    # row 4 + t: from frame t to t + 1 (strided: the deltas of the steps between, summed)
    expected = np.stack([episode.actions[i : i + stride].sum(axis=0) for i in clip.frame_indices[:-1]])
    np.testing.assert_allclose(clip.actions[4:, :6], expected[:, :6], rtol=1e-6)
    np.testing.assert_allclose(clip.actions[4:, 6], episode.actions[clip.frame_indices[:-1] + stride - 1, 6])


# ------------------------------------------------------------ action conventions


def oriented_episode(num_steps: int, seed: int = 0) -> Episode:
    """make_episode with states that turn (yaw across +-pi) and a continuous gripper."""
    episode = make_episode(num_steps)
    rng = np.random.default_rng(seed)
    states = np.column_stack([
        np.cumsum(rng.normal(0, 0.02, (num_steps, 3)), axis=0),
        rng.uniform(-0.5, 0.5, num_steps),
        rng.uniform(-0.5, 0.5, num_steps),
        np.mod(np.pi - 0.05 + 0.1 * rng.random(num_steps) + np.pi, 2 * np.pi) - np.pi,
        rng.uniform(0, 1, num_steps),
    ]).astype(np.float32)
    episode.states = states
    return episode


def test_action_convention_is_validated_and_names_the_field():
    with pytest.raises(ValueError, match="ClipConfig.action_convention.*'dataset', 'eef-frame'"):
        ClipConfig(action_convention="world")
    with pytest.raises(ValueError, match="ClipConfig.action_scale applies to action_convention='eef-frame'"):
        ClipConfig(action_scale=(1.0,) * 7)
    with pytest.raises(ValueError, match="ClipConfig.action_scale must be 7 numbers"):
        ClipConfig(action_convention="eef-frame", action_scale=(1.0, 2.0))
    with pytest.raises(ValueError, match="ClipConfig.action_dim must be 7"):
        ClipConfig(action_convention="eef-frame", action_dim=6)


def test_action_convention_in_to_dict():
    # the default leaves the dict as it was before the fields existed (stored latent fingerprints)
    assert "action_convention" not in ClipConfig().to_dict() and "action_scale" not in ClipConfig().to_dict()
    config = ClipConfig(action_convention="eef-frame", action_scale=[10, 10, 10, 5, 5, 5, 1])
    assert config.action_scale == (10.0, 10.0, 10.0, 5.0, 5.0, 5.0, 1.0)  # YAML lists -> tuple
    assert config.eef_frame_scale == config.action_scale
    assert ClipConfig(action_convention="eef-frame").eef_frame_scale == EEF_FRAME_SCALE
    d = config.to_dict()
    assert d["action_convention"] == "eef-frame" and d["action_scale"] == [10.0, 10.0, 10.0, 5.0, 5.0, 5.0, 1.0]
    assert json.loads(json.dumps(d)) == d and ClipConfig(**yaml.safe_load(yaml.safe_dump(d))) == config


def test_dataset_convention_is_the_default_and_unchanged():
    episode = oriented_episode(20)
    base = dict(num_frames=8, height=48, width=64, frame_stride=2, clip_interval=3)
    default = cut_clips(episode, ClipConfig(**base))
    explicit = cut_clips(episode, ClipConfig(**base, action_convention="dataset"))
    assert len(default) == len(explicit) > 0
    for a, b in zip(default, explicit):
        assert a.actions.tobytes() == b.actions.tobytes() and a.action_mask.tobytes() == b.action_mask.tobytes()


@pytest.mark.parametrize("stride", [1, 2])
def test_eef_frame_actions_come_from_the_sampled_states(stride):
    config = ClipConfig(num_frames=8, height=48, width=64, frame_stride=stride, clip_interval=2,
                        action_convention="eef-frame")
    episode = oriented_episode(stride * 7 + 1 + 4)
    clips = cut_clips(episode, config)
    assert [c.start for c in clips] == [0, 2, 4]
    for clip in clips:
        idx = clip.frame_indices
        steps = np.append(idx, min(idx[-1] + stride, len(episode) - 1))
        expected = eef_frame_actions(episode.states[steps])
        assert clip.actions.shape == (12, 7) and not clip.actions[:4].any()
        np.testing.assert_array_equal(clip.actions[4:], expected)
        assert clip.action_mask[4:].all()
        np.testing.assert_allclose(clip.states, episode.states[idx])
    # the first clips' last action leads into the next sampled step, which the episode has;
    # the last clip ends at the episode's last step: zero motion, the gripper state held
    assert clips[1].frame_indices[-1] + stride < len(episode) and clips[1].actions[-1, :6].any()
    last = clips[-1]
    assert last.frame_indices[-1] == len(episode) - 1
    assert not last.actions[-1, :6].any()
    assert last.actions[-1, 6] == pytest.approx(episode.states[-1, 6])


def test_eef_frame_last_action_without_a_next_step_is_zero_motion():
    config = ClipConfig(num_frames=8, height=48, width=64, clip_interval=100, action_convention="eef-frame")
    episode = oriented_episode(8)
    (clip,) = cut_clips(episode, config)
    np.testing.assert_array_equal(clip.actions[4:11], eef_frame_actions(episode.states))
    np.testing.assert_array_equal(clip.actions[11, :6], np.zeros(6, np.float32))
    assert clip.actions[11, 6] == pytest.approx(episode.states[7, 6])
    # with one more step in the episode, that step is used
    (longer,) = cut_clips(oriented_episode(9), config)
    np.testing.assert_array_equal(longer.actions[4:], eef_frame_actions(oriented_episode(9).states))


def test_eef_frame_with_4k_plus_1_real_frames_and_a_scale():
    scale = (1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 1.0)
    config = ClipConfig(num_frames=17, height=48, width=64, clip_interval=100, placeholder_frame=False,
                        action_convention="eef-frame", action_scale=scale)
    episode = oriented_episode(17)
    (clip,) = cut_clips(episode, config)
    assert clip.frames.shape[0] == 17 and clip.actions.shape == (20, 7)
    np.testing.assert_array_equal(clip.actions[4:], eef_frame_actions(episode.states, scale))


def test_eef_frame_skips_episodes_with_bad_states():
    config = ClipConfig(num_frames=8, height=48, width=64, action_convention="eef-frame")
    episode = oriented_episode(10)
    episode.states[3, 4] = np.nan
    report = SkipReport()
    assert cut_clips(episode, config, report=report) == []
    assert report.total == 1 and "step 3" in report.format()
    # the dataset convention does not read the states
    assert cut_clips(episode, replace(config, action_convention="dataset"))

"""Cut episodes into model-ready :class:`Clip` windows (paper Table 9 and Sec. 10.2.1).

Frame/latent/action alignment, for ``F`` real frames and VAE temporal compression ``r``:

- CogVideoX's 3D VAE encodes ``4k + 1`` frames (5, 9, 13, ..., 49) to ``k + 1`` latent
  frames; the paper's presets use ``8N + 1``. Decoding gives ``4k + 1`` frames back only for
  an odd latent count (``8N + 1`` frames): diffusers' ``AutoencoderKLCogVideoX.decode`` keeps
  the first latent frame apart only then, and turns an even count ``k + 1`` (5, 13, 21, 29
  frames) into ``4(k + 1)`` frames, latent 0 spread over 4 (``tests/test_clips.py`` pins
  both). The training loss only needs encoding, so any ``4k + 1`` is allowed here; whoever
  decodes an even latent count drops 3 frames at the start. Two layouts reach ``4k + 1``:

  - with ``placeholder_frame`` (the paper's, the default): ``F = 4k`` real frames plus one
    placeholder frame appended (a copy of the last one), dropped after decoding;
  - without (upstream ORV's, e.g. DROID's 29 frames): ``F = 4k + 1`` real frames.

  ``L = (F_total - 1) / r + 1`` latent frames come out: latent 0 is the reference (first)
  frame alone, latent ``j >= 1`` covers frames ``r(j-1)+1 .. rj``.
- ``actions[t]`` of an episode moves frame ``t`` to frame ``t + 1``. The clip stores them
  chunk-aligned, ``r * L`` rows: ``r`` zero rows for the reference latent, then the actions
  of frames ``0, 1, ...``, ``r (L - 1)`` of them. With the placeholder that is all ``F`` real
  frames (the last one leads into the placeholder frame: the paper's "subsequent action");
  without it the last real frame has none (17 real frames -> 16 actions -> 5 latent frames,
  upstream's layout). Chunk ``j`` therefore holds exactly the actions that produce the
  frames of latent ``j``. ``action_mask`` marks the zero padding.
- ``action_convention`` (:mod:`orv_engine.data.action_conventions`) picks the actions:

  - ``"dataset"``: the episode's own. With a frame stride ``s > 1`` the actions of the ``s``
    steps between two sampled frames are combined: the 6 EEF deltas are summed and the
    gripper takes the last value.
  - ``"eef-frame"`` (upstream ORV's): recomputed from the episode's *states* at the sampled
    frames, so a stride needs no combining. The action of sampled frame ``t`` moves it to
    sampled frame ``t + 1``; for the last real frame that is the next sampled step
    (``frame_indices[-1] + s``) when the episode has it, else the last state is repeated:
    zero motion, the gripper entry holding the last gripper state.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from orv_engine.data.action_conventions import (
    EEF_FRAME_SCALE,
    check_action_convention,
    check_action_scale,
    eef_frame_actions,
)
from orv_engine.data.episode import Episode
from orv_engine.data.errors import SkipReport

# CogVideoX's VAE: 4k + 1 frames. 49 (13 latent frames) is the clip length CogVideoX was
# trained on, and the cap the former 8N+1 rule (N = 1..6) had.
MAX_VAE_FRAMES = 49


@dataclass(frozen=True)
class ClipConfig:
    num_frames: int = 16  # real frames per clip (the placeholder comes on top)
    height: int = 320  # sample size
    width: int = 480
    frame_stride: int = 1  # Δf1: steps between two frames of a clip
    clip_interval: int = 4  # Δf2 for the train split: steps between two clip starts
    val_clip_interval: int = 16  # Δf2 for every other split
    camera: str | None = None  # None: the episode's first decoded camera
    action_chunk: int = 4  # r: the VAE's temporal compression
    action_dim: int = 7
    resize: str = "stretch"  # "stretch" to the sample size, or "center_crop" then resize
    placeholder_frame: bool = True
    # "dataset" (the episode's own actions) or "eef-frame" (upstream ORV's, from the states);
    # see orv_engine.data.action_conventions.
    action_convention: str = "dataset"
    # eef-frame only: 7 multipliers; None = upstream's (20 x 6, gripper 1).
    action_scale: tuple[float, ...] | None = None

    def __post_init__(self):
        for name in ("num_frames", "height", "width", "frame_stride", "clip_interval",
                     "val_clip_interval", "action_chunk", "action_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ClipConfig.{name} must be a positive integer, got {value!r}")
        if self.resize not in ("stretch", "center_crop"):
            raise ValueError(f"ClipConfig.resize must be 'stretch' or 'center_crop', got {self.resize!r}")
        if not isinstance(self.placeholder_frame, bool):
            raise ValueError(f"ClipConfig.placeholder_frame must be True or False, got {self.placeholder_frame!r}")
        check_action_convention(self.action_convention, "ClipConfig.action_convention")
        if self.action_scale is not None:
            if self.action_convention != "eef-frame":
                raise ValueError(
                    "ClipConfig.action_scale applies to action_convention='eef-frame' only "
                    f"(action_convention={self.action_convention!r}); leave it None"
                )
            scale = check_action_scale(self.action_scale, "ClipConfig.action_scale")
            object.__setattr__(self, "action_scale", tuple(float(v) for v in scale))  # lists from YAML
        if self.action_convention == "eef-frame" and self.action_dim != len(EEF_FRAME_SCALE):
            raise ValueError(
                f"ClipConfig.action_dim must be {len(EEF_FRAME_SCALE)} with action_convention='eef-frame', "
                f"got {self.action_dim}"
            )
        total = self.total_frames
        if (total - 1) % 4 != 0 or not 5 <= total <= MAX_VAE_FRAMES:
            if self.placeholder_frame:
                hint, fix = "num_frames + 1", "num_frames a multiple of 4 (4..48) with the placeholder frame"
            else:
                hint, fix = "num_frames", "num_frames in 5, 9, 13, ..., 49 with placeholder_frame=False"
            raise ValueError(
                f"ClipConfig.num_frames: CogVideoX's VAE takes 4k+1 frames (5..{MAX_VAE_FRAMES}): "
                f"{hint} = {total} is not; use {fix}"
            )
        if (total - 1) % self.action_chunk != 0:
            raise ValueError(f"ClipConfig.action_chunk={self.action_chunk} must divide {total - 1}")
        if self.height % 16 or self.width % 16:
            raise ValueError(
                f"sample size {self.height}x{self.width} must be a multiple of 16 "
                "(VAE downsampling 8 x transformer patch 2)"
            )

    @property
    def total_frames(self) -> int:
        """Frames that go into the VAE (real + placeholder)."""
        return self.num_frames + (1 if self.placeholder_frame else 0)

    @property
    def num_latent_frames(self) -> int:
        return (self.total_frames - 1) // self.action_chunk + 1

    @property
    def span(self) -> int:
        """Episode steps one clip covers."""
        return (self.num_frames - 1) * self.frame_stride + 1

    def interval(self, split: str) -> int:
        return self.clip_interval if split == "train" else self.val_clip_interval

    @property
    def eef_frame_scale(self) -> tuple[float, ...]:
        """The multipliers of the eef-frame actions (upstream's unless ``action_scale``)."""
        return self.action_scale if self.action_scale is not None else EEF_FRAME_SCALE

    def to_dict(self) -> dict:
        """Plain values (YAML/JSON). With the default ``"dataset"`` actions the two action
        convention fields are left out, so the dict (stored in fingerprints of encoded
        latents, e.g. ``orv_engine.training.latents``) equals the one from before they existed."""
        out = asdict(self)
        if self.action_convention == "dataset":
            del out["action_convention"], out["action_scale"]
        elif self.action_scale is not None:
            out["action_scale"] = list(self.action_scale)
        return out


# Paper Table 9 (frames, sample size, Δf1, Δf2 train/val). DROID's table row gives sample
# 256x384 but latent 32x40; the sample size is used here (latent 32x48).
PRESETS: dict[str, ClipConfig] = {
    "bridge": ClipConfig(num_frames=16, height=320, width=480, frame_stride=1, clip_interval=4, val_clip_interval=16),
    "droid": ClipConfig(num_frames=24, height=256, width=384, frame_stride=3, clip_interval=16, val_clip_interval=72),
    "rt1": ClipConfig(num_frames=16, height=320, width=480, frame_stride=2, clip_interval=6, val_clip_interval=16),
    # The embedded simulated dataset (orv_engine/demo_data: 128x128, ~40 steps at 5 Hz).
    "sim": ClipConfig(num_frames=16, height=128, width=128, frame_stride=1, clip_interval=8, val_clip_interval=16),
    # CPU tests and the demo on the shared 10-step, 64x64 Bridge episodes.
    "bridge-tiny": ClipConfig(num_frames=8, height=64, width=64, frame_stride=1, clip_interval=1, val_clip_interval=2),
}


def clip_config(preset: str, **overrides) -> ClipConfig:
    if preset not in PRESETS:
        raise KeyError(f"unknown clip preset {preset!r}; known: {', '.join(PRESETS)}")
    return replace(PRESETS[preset], **overrides)


@dataclass
class Clip:
    frames: np.ndarray  # (total_frames, H, W, 3) uint8; the last is the placeholder if any
    actions: np.ndarray  # (action_chunk * num_latent_frames, 7) float32, chunk-aligned
    action_mask: np.ndarray  # (action_chunk * num_latent_frames,) bool; False = padding
    states: np.ndarray  # (num_frames, 7) float32 at the real frames
    frame_indices: np.ndarray  # (num_frames,) episode step of each real frame
    instruction: str
    episode_id: str
    camera: str
    num_real_frames: int
    conditions: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. depth, semantics

    @property
    def first_frame(self) -> np.ndarray:
        return self.frames[0]

    @property
    def start(self) -> int:
        return int(self.frame_indices[0])


def resize_frames(frames: np.ndarray, height: int, width: int, mode: str = "stretch") -> np.ndarray:
    """(T, h, w, 3) uint8 -> (T, height, width, 3) uint8, bilinear with antialiasing."""
    t, h, w, _ = frames.shape
    if mode == "center_crop":
        target = width / height
        if w / h > target:  # too wide: crop width
            new_w = int(round(h * target))
            x0 = (w - new_w) // 2
            frames = frames[:, :, x0 : x0 + new_w]
        else:
            new_h = int(round(w / target))
            y0 = (h - new_h) // 2
            frames = frames[:, y0 : y0 + new_h]
        h, w = frames.shape[1:3]
    if (h, w) == (height, width):
        return np.ascontiguousarray(frames)
    # uint8 + channels_last takes torch's vectorised antialiasing path: ~10x faster than
    # float, and equal to Pillow's BILINEAR resize.
    x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)
    x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())


def _frame_actions(actions: np.ndarray, indices: np.ndarray, stride: int) -> np.ndarray:
    """The action that leads from each sampled frame to the next (see module docstring)."""
    if stride == 1:
        return actions[indices]
    out = np.empty((len(indices), actions.shape[1]), dtype=np.float32)
    for k, i in enumerate(indices):
        window = actions[i : i + stride]
        out[k, :6] = window[:, :6].sum(axis=0)
        out[k, 6:] = window[-1, 6:]
    return out


def _eef_frame_clip_actions(
    states: np.ndarray, indices: np.ndarray, stride: int, scale
) -> np.ndarray:
    """Upstream's actions of each sampled frame: from its state to the next sampled one (the
    step after the clip when the episode has it, else the last state again: zero motion)."""
    following = int(indices[-1]) + stride
    steps = np.append(indices, following if following < len(states) else indices[-1])
    return eef_frame_actions(states[steps], scale)


def chunk_align_actions(
    frame_actions: np.ndarray, num_latent_frames: int, action_chunk: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame actions (F, D) -> chunk-aligned (r * L, D) and its mask (module docstring).

    Row block ``j`` (``r`` rows) drives latent frame ``j``; block 0 (the reference frame) is
    zeros. Frames beyond the latent frames are dropped; missing ones stay zero (masked).
    """
    frame_actions = np.asarray(frame_actions, dtype=np.float32)
    if frame_actions.ndim != 2:
        raise ValueError(f"actions must be (frames, dim), got shape {frame_actions.shape}")
    r = action_chunk
    actions = np.zeros((r * num_latent_frames, frame_actions.shape[1]), dtype=np.float32)
    mask = np.zeros(r * num_latent_frames, dtype=bool)
    n = min(len(frame_actions), r * (num_latent_frames - 1))
    actions[r : r + n] = frame_actions[:n]
    mask[r : r + n] = True
    return actions, mask


def clip_starts(num_steps: int, config: ClipConfig, split: str) -> range:
    return range(0, max(num_steps - config.span + 1, 0), config.interval(split))


def cut_clips(
    episode: Episode,
    config: ClipConfig,
    split: str = "train",
    report: SkipReport | None = None,
) -> list[Clip]:
    """All clips of an episode; too-short episodes or a missing camera are counted skips."""
    report = report if report is not None else SkipReport()
    where = f"episode {episode.meta.episode_id}"
    camera = config.camera or (episode.cameras[0] if episode.cameras else None)
    if camera is None or camera not in episode.frames:
        report.add(f"camera {camera!r} absent", where)
        return []
    num_steps = len(episode)
    if num_steps < config.span:
        report.add(
            f"episode shorter than one clip ({config.num_frames} frames x stride {config.frame_stride})",
            f"{where}: {num_steps} steps < {config.span}",
        )
        return []
    video = episode.frames[camera]
    if len(video) != num_steps:
        report.add("frame count differs from action count", f"{where}: {len(video)} vs {num_steps}")
        return []
    if episode.actions.shape[1] != config.action_dim:
        report.add(
            f"action dim is not {config.action_dim}", f"{where}: {episode.actions.shape[1]}"
        )
        return []
    if config.action_convention == "eef-frame":
        states = np.asarray(episode.states)
        if states.shape != (num_steps, 7):
            report.add("states are not (steps, 7) for eef-frame actions", f"{where}: {states.shape}")
            return []
        if not np.isfinite(states).all():
            step = int(np.argwhere(~np.isfinite(states))[0, 0])
            report.add("non-finite state (eef-frame actions are computed from states)", f"{where}: step {step}")
            return []

    clips = []
    resized: dict[int, np.ndarray] = {}  # overlapping clips share frames: resize each once
    for start in clip_starts(num_steps, config, split):
        indices = start + config.frame_stride * np.arange(config.num_frames)
        for i in [i for i in resized if i < start]:  # clips go forward: drop what is behind
            del resized[i]
        missing = [int(i) for i in indices if int(i) not in resized]
        if missing:
            fresh = resize_frames(video[missing], config.height, config.width, config.resize)
            resized.update(zip(missing, fresh))
        frames = np.stack([resized[int(i)] for i in indices])
        if config.placeholder_frame:
            frames = np.concatenate([frames, frames[-1:]], axis=0)
        if config.action_convention == "eef-frame":
            frame_actions = _eef_frame_clip_actions(
                episode.states, indices, config.frame_stride, config.eef_frame_scale
            )
        else:
            frame_actions = _frame_actions(episode.actions, indices, config.frame_stride)
        actions, mask = chunk_align_actions(frame_actions, config.num_latent_frames, config.action_chunk)
        clips.append(
            Clip(
                frames=frames,
                actions=actions,
                action_mask=mask,
                states=episode.states[indices].astype(np.float32),
                frame_indices=indices,
                instruction=episode.instruction,
                episode_id=episode.meta.episode_id,
                camera=camera,
                num_real_frames=config.num_frames,
            )
        )
    return clips

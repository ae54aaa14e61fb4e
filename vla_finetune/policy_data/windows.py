"""One episode -> training windows: an observation history and, per history step, an action chunk.

The episode first goes through the same Bridge standardization Octo/OpenVLA apply
(:func:`vla_finetune.bridge_transforms.bridge_transform`: actions relabelled from the
states, gripper binarized, OpenVLA also drops step 0), so the policies learn the actions
the mixture statistics describe. Window at kept step ``t``:

- ``images``: frames of steps ``t - H + 1 .. t`` (``H`` = history); steps before the
  episode start repeat the first frame and are marked ``False`` in ``image_mask``;
- ``actions``: for every history step ``s``, the chunk ``a[s .. s + K - 1]`` (``K`` = chunk
  size); steps past the episode end repeat the last action and are ``False`` in
  ``action_mask`` (Octo's padding), so the loss can ignore them.

RoboVLM uses ``H = 16, K = 10`` (a chunk predicted at every history step, RoboVLMs'
"post" history); SpatialVLA ``H = 1, K = 4``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from vla_finetune.bridge_transforms import bridge_transform


@dataclass
class Window:
    images: np.ndarray  # (H, h, w, 3) uint8
    image_mask: np.ndarray  # (H,) bool
    actions: np.ndarray  # (H, K, 7) float32 (normalised by the caller)
    action_mask: np.ndarray  # (H, K) bool
    instruction: str


@dataclass
class StandardEpisode:
    """An episode after the Bridge transform: frames and actions aligned step by step."""

    frames: np.ndarray  # (T, h, w, 3) uint8
    actions: np.ndarray  # (T, 7) float32
    instruction: str
    episode_id: str

    def __len__(self) -> int:
        return len(self.actions)


def standardize(frames: np.ndarray, states: np.ndarray, actions: np.ndarray, instruction: str,
                episode_id: str = "", transform: str = "openvla") -> StandardEpisode:
    """``transform``: "openvla"/"octo" (their Bridge transform) or "none" (stored actions)."""
    if transform == "none":
        return StandardEpisode(np.asarray(frames), np.asarray(actions, np.float32), instruction, episode_id)
    _, relabelled, kept = bridge_transform(states, actions, transform)
    return StandardEpisode(np.asarray(frames)[kept], relabelled, instruction, episode_id)


def window_at(episode: StandardEpisode, t: int, history: int, chunk: int) -> Window:
    n = len(episode)
    steps = np.arange(t - history + 1, t + 1)
    image_mask = steps >= 0
    images = episode.frames[np.clip(steps, 0, n - 1)]
    chunk_steps = np.clip(steps, 0, n - 1)[:, None] + np.arange(chunk)[None, :]
    action_mask = (chunk_steps < n) & image_mask[:, None]
    actions = episode.actions[np.clip(chunk_steps, 0, n - 1)]
    return Window(images=images, image_mask=image_mask, actions=actions.astype(np.float32),
                  action_mask=action_mask, instruction=episode.instruction)


def episode_windows(episode: StandardEpisode, history: int, chunk: int) -> list[Window]:
    return [window_at(episode, t, history, chunk) for t in range(len(episode))]

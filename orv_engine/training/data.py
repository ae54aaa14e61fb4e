"""Training samples: clips of an RLDS dataset, with condition images for stage 2.

Condition maps become RGB images the VAE can encode, in the one fixed way inference must
repeat (:func:`orv_engine.occupancy.condition_images.condition_images`).

The condition source is the paper's coarse maps rendered from the episode's 4D occupancy
(``occupancy``), or the episode's own depth/segmentation (``episode``, the paper's "fine"
maps; much cheaper on a CPU).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from orv_engine.data.clip_dataset import ClipDataset, clip_to_sample
from orv_engine.data.clips import PRESETS, Clip, ClipConfig
from orv_engine.occupancy.condition_images import condition_images

def clip_config_of(data_config) -> ClipConfig:
    overrides = dict(data_config.clip)
    if data_config.camera is not None:
        overrides["camera"] = data_config.camera
    return replace(PRESETS[data_config.preset], **overrides)


def _resize_nearest(maps: np.ndarray, height: int, width: int) -> np.ndarray:
    if maps.shape[1:3] == (height, width):
        return maps
    x = torch.from_numpy(np.ascontiguousarray(maps)).float()[:, None]
    return torch.nn.functional.interpolate(x, size=(height, width), mode="nearest")[:, 0].numpy().astype(maps.dtype)


def episode_condition_maps(episode, clip: Clip) -> dict[str, np.ndarray]:
    """The episode's own depth/segmentation at the clip's frames (placeholder included)."""
    if episode.depth is None or clip.camera not in episode.depth:
        raise ValueError(f"episode {episode.meta.episode_id} has no depth for camera {clip.camera!r}")
    steps = list(clip.frame_indices) + [clip.frame_indices[-1]] * (len(clip.frames) - clip.num_real_frames)
    h, w = clip.frames.shape[1:3]
    return {
        "depth": _resize_nearest(episode.depth[clip.camera][steps], h, w),
        "semantics": _resize_nearest(episode.segmentation[clip.camera][steps], h, w),
    }


def clip_conditions(episode, clip: Clip, kinds, source: str, cache: dict) -> dict[str, np.ndarray]:
    """Condition images of one clip; ``cache`` keeps one episode's occupancy between clips."""
    if not kinds:
        return {}
    if source == "episode":
        maps = episode_condition_maps(episode, clip)
    else:
        from orv_engine.occupancy import clip_condition_maps, occupancy_from_episode

        key = episode.meta.episode_id
        if cache.get("key") != key:
            cache.clear()
            cache.update(key=key, occupancy=occupancy_from_episode(episode))
        maps = clip_condition_maps(episode, clip, occupancy=cache["occupancy"])
    return condition_images(maps, kinds)


def conditions_to_tensor(images: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (3, T, H, W) float in [-1, 1], the VAE's layout."""
    return torch.from_numpy(images).permute(3, 0, 1, 2).float().div(127.5).sub(1.0)


class TrainClipDataset(ClipDataset):
    """:class:`ClipDataset` whose samples also carry condition images (``conditions``).

    Without condition kinds it is a plain ClipDataset (same sharding and shuffling).
    """

    def __init__(self, *args, condition_kinds=(), conditions_source: str = "occupancy", **kwargs):
        self.condition_kinds = list(condition_kinds)
        self.conditions_source = conditions_source
        super().__init__(*args, **kwargs)

    def _episode_clips(self, episode) -> list[Clip]:
        clips = super()._episode_clips(episode)
        if self.condition_kinds:
            cache: dict = {}  # one occupancy per episode, shared by its clips
            for clip in clips:
                clip.conditions.update(
                    clip_conditions(episode, clip, self.condition_kinds, self.conditions_source, cache))
        return clips

    def _out(self, clip: Clip):
        if self.as_clips:
            return clip
        sample = clip_to_sample(clip)
        if self.condition_kinds:
            sample["conditions"] = {k: conditions_to_tensor(clip.conditions[k]) for k in self.condition_kinds}
        return sample


def make_dataset(config, split: str, shuffle: bool, as_clips: bool = False) -> TrainClipDataset:
    data = config.data
    return TrainClipDataset(
        data.path, clip_config_of(data), dataset=data.dataset, split=split, shuffle=shuffle,
        seed=config.seed, shuffle_buffer=data.shuffle_buffer, as_clips=as_clips,
        condition_kinds=config.model.condition_kinds, conditions_source=data.conditions_source,
    )

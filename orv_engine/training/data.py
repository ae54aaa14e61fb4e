"""Training samples: clips of an RLDS dataset, with condition images for stage 2.

Condition maps become RGB images the VAE can encode, in the one way of the checkpoint's
condition encoding that inference repeats (:mod:`orv_engine.occupancy.condition_images`).
The data conventions of a run (action convention, condition encoding) come from the
checkpoint it starts from unless the config sets them (:func:`resolve_preprocessing`);
the saved checkpoints record them.

The condition source is the paper's coarse maps rendered from the episode's 4D occupancy
(``occupancy``), or the episode's own depth/segmentation kept to the occupancy's volume
(``episode``, the paper's "fine" maps; much cheaper on a CPU). For RGB-only datasets the
occupancy comes from their ``orv-occupancy`` store (``data.occupancy_store``), keyed like the
dataset's episodes; an episode the store lacks is skipped and counted (``store_skips``).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from orv_engine.data.clip_dataset import ClipDataset, clip_to_sample
from orv_engine.data.clips import PRESETS, Clip, ClipConfig
from orv_engine.data.errors import SkipReport
from orv_engine.data.sharding import episode_key
from orv_engine.occupancy import (OccupancyInputError, clip_condition_maps, episode_grid, occupancy_from_episode,
                                  recorded_clip_maps)
from orv_engine.occupancy.clip_conditions import clip_steps
from orv_engine.occupancy.condition_images import condition_images, encoded_condition_images
from orv_engine.occupancy.from_rgb.pipeline import rendered_maps
from orv_engine.occupancy.store import OccupancyStore
from orv_engine.preprocessing import ORVPreprocessing, to_vae_range


def clip_config_of(data_config) -> ClipConfig:
    overrides = dict(data_config.clip)
    if data_config.camera is not None:
        overrides["camera"] = data_config.camera
    return replace(PRESETS[data_config.preset], **overrides)


def clip_conditions(episode, clip: Clip, kinds, source: str, cache: dict, encoding: str = "engine",
                    store: OccupancyStore | None = None) -> dict[str, np.ndarray]:
    """Condition images of one clip (uint8 for "engine", float in [0, 1] for "orv-official");
    ``cache`` keeps one episode's occupancy between clips; ``store`` (an ``orv-occupancy``
    store) replaces the episode's own geometry for the "occupancy" source."""
    if not kinds:
        return {}
    key = episode.meta.episode_id
    if cache.get("key") != key:
        cache.clear()
        cache["key"] = key
    if source == "episode":  # the fine maps, kept to the volume the occupancy would cover
        if "grid" not in cache:
            cache["grid"] = episode_grid(episode)
        maps = recorded_clip_maps(episode, clip, cache["grid"])
    elif store is not None:
        if "entry" not in cache:
            cache["entry"] = store.read_episode(episode_key(episode.meta.source_file, episode.meta.index_in_file))
        entry = cache["entry"]
        if entry.camera != clip.camera:
            raise OccupancyInputError(f"episode {key}: the occupancy store holds camera {entry.camera!r}, "
                                      f"the clips read {clip.camera!r}")
        maps = rendered_maps(entry, *clip.frames.shape[1:3], steps=clip_steps(clip))
    else:
        if "occupancy" not in cache:
            cache["occupancy"] = occupancy_from_episode(episode)
        maps = clip_condition_maps(episode, clip, occupancy=cache["occupancy"])
    if encoding == "engine":  # uint8 keeps shuffle buffers small; the same values / 255
        return condition_images(maps, kinds)
    return encoded_condition_images(maps, kinds, encoding)


def conditions_to_tensor(images: np.ndarray, encoding: str = "engine") -> torch.Tensor:
    """(T, H, W, 3) uint8 or float in [0, 1] -> (3, T, H, W) float in the VAE's range for ``encoding``."""
    x = torch.from_numpy(np.asarray(images)).permute(3, 0, 1, 2).float()
    return to_vae_range(x / 255.0 if images.dtype == np.uint8 else x, encoding)


def resolve_preprocessing(config, transformer, scheduler) -> tuple[object, ORVPreprocessing]:
    """The run's data conventions and the preprocessing record its checkpoints will carry.

    Action convention / scale (``data.clip``) and condition encoding (``data.condition_encoding``)
    default to what the starting checkpoint records; a config that sets another value than the
    checkpoint's is refused (the model would be trained on inputs it does not understand).
    Returns the config with the values filled in, and the record.
    """
    recorded = transformer.config.preprocessing
    start = ORVPreprocessing.from_dict(recorded)
    clip = dict(config.data.clip)
    where = "the checkpoint the run starts from"
    if recorded:
        asked = clip.get("action_convention")
        if asked is not None and asked != start.action_convention:
            raise ValueError(f"data.clip.action_convention is {asked!r}, but {where} was trained with "
                             f"{start.action_convention!r}; drop the setting or start from another checkpoint")
        clip.setdefault("action_convention", start.action_convention)
        if start.action_convention == "eef-frame" and start.action_scale is not None:
            clip.setdefault("action_scale", list(start.action_scale))
        if config.data.condition_encoding not in (None, start.condition_encoding):
            raise ValueError(f"data.condition_encoding is {config.data.condition_encoding!r}, but {where} was "
                             f"trained with {start.condition_encoding!r}")
    encoding = config.data.condition_encoding or start.condition_encoding
    data = replace(config.data, clip=clip, condition_encoding=encoding)
    config = replace(config, data=data)
    clip_config = clip_config_of(data)
    record = ORVPreprocessing(
        action_convention=clip_config.action_convention,
        action_scale=clip_config.eef_frame_scale if clip_config.action_convention == "eef-frame" else None,
        condition_encoding=encoding,
        num_frames=clip_config.total_frames,
        placeholder_frame=clip_config.placeholder_frame,
        height=clip_config.height,
        width=clip_config.width,
        scheduler=type(scheduler).__name__ if type(scheduler).__name__ in ("CogVideoXDPMScheduler", "CogVideoXDDIMScheduler")
        else "CogVideoXDPMScheduler",
        timestep_spacing=scheduler.config.get("timestep_spacing", "trailing"),
        num_inference_steps=start.num_inference_steps if recorded else config.validation.num_inference_steps,
        guidance_scale=1.0,
        prompt=None if config.text.use_instruction else config.text.prompt,
    )
    return config, record


class TrainClipDataset(ClipDataset):
    """:class:`ClipDataset` whose samples also carry condition images (``conditions``).

    Without condition kinds it is a plain ClipDataset (same sharding and shuffling).
    """

    def __init__(self, *args, condition_kinds=(), conditions_source: str = "occupancy",
                 condition_encoding: str = "engine", occupancy_store=None, **kwargs):
        self.condition_kinds = list(condition_kinds)
        self.conditions_source = conditions_source
        self.condition_encoding = condition_encoding
        self.store = None if occupancy_store is None else OccupancyStore(occupancy_store)
        self.store_skips = SkipReport()  # episodes the store lacks (skipped, flagged, not built yet)
        super().__init__(*args, **kwargs)

    def _episode_clips(self, episode) -> list[Clip]:
        clips = super()._episode_clips(episode)
        if self.condition_kinds:
            cache: dict = {}  # one occupancy per episode, shared by its clips
            try:
                for clip in clips:
                    clip.conditions.update(
                        clip_conditions(episode, clip, self.condition_kinds, self.conditions_source, cache,
                                        self.condition_encoding, self.store))
            except OccupancyInputError as err:
                if self.store is None:
                    raise
                reason = str(err).split(";")[0] if "flagged" not in str(err) else "flagged by the consistency check"
                self.store_skips.add(reason if len(self.store_skips.counts) < 20 else "no usable occupancy",
                                     episode.meta.episode_id)
                return []
        return clips

    def _out(self, clip: Clip):
        if self.as_clips:
            return clip
        sample = clip_to_sample(clip)
        if self.condition_kinds:
            sample["conditions"] = {k: conditions_to_tensor(clip.conditions[k], self.condition_encoding)
                                    for k in self.condition_kinds}
        return sample


def make_dataset(config, split: str, shuffle: bool, as_clips: bool = False) -> TrainClipDataset:
    data = config.data
    return TrainClipDataset(
        data.path, clip_config_of(data), dataset=data.dataset, split=split, shuffle=shuffle,
        seed=config.seed, shuffle_buffer=data.shuffle_buffer, as_clips=as_clips,
        condition_kinds=config.model.condition_kinds, conditions_source=data.conditions_source,
        condition_encoding=data.condition_encoding or "engine", occupancy_store=data.occupancy_store,
    )

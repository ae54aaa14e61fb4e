"""ORV-MV training data: multi-view samples of an RLDS dataset, as a positioned stream.

A sample is the clips of every present camera of an episode at the same steps, with the
views drawn by :func:`~orv_engine.training.multiview_sampling.sample_views` (single-view
samples subsampled, 2 or 3 of 3 views, random order). With occupancy conditions, the
episode's occupancy is built from the reference camera's depth and rendered from every
view's camera (the paper's side-view conditions, :mod:`orv_engine.occupancy.side_views`).
One sample per ``next`` (samples have different numbers of views).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch.utils.data import DataLoader

from orv_engine.data.clip_dataset import ClipDataset, clip_to_sample
from orv_engine.data.clips import Clip, cut_clips
from orv_engine.data.schemas import schema_for
from orv_engine.occupancy.side_views import reference_occupancy
from orv_engine.training.data import clip_conditions, clip_config_of, conditions_to_tensor
from orv_engine.training.multiview_sampling import ViewSampling, sample_views
from orv_engine.training.stream import PositionedStream


@dataclass
class MultiViewSample:
    sample_id: str  # "<episode id>@<first step>"
    views: tuple[str, ...]  # cameras, in model order
    clips: list[Clip]  # one per view, same steps


class MultiViewClipDataset(ClipDataset):
    """Multi-view samples of an RLDS dataset (see the module docstring).

    ``cameras``: the cameras a sample may use (decoded by the reader); ``rule``: the view
    sampling; the draw depends on ``(seed, epoch, sample id)`` only. With occupancy
    conditions, the occupancy is built from ``reference_camera``'s depth (default: the first
    camera) and rendered from every view's camera.
    """

    def __init__(self, *args, rule: ViewSampling = ViewSampling(), condition_kinds=(),
                 conditions_source: str = "occupancy", reference_camera: str | None = None,
                 condition_encoding: str = "engine", **kwargs):
        self.rule = rule
        self.reference_camera = reference_camera
        self.condition_kinds = list(condition_kinds)
        self.conditions_source = conditions_source
        self.condition_encoding = condition_encoding
        self.dropped_single_view = 0
        super().__init__(*args, **kwargs)

    def _episode_clips(self, episode) -> list[MultiViewSample]:
        available = [c for c in (self.cameras or episode.cameras) if c in episode.frames]
        per_view = {
            view: {clip.start: clip for clip in cut_clips(episode, replace(self.clip_config, camera=view),
                                                         self.split, self.report)}
            for view in available
        }
        starts = sorted(set.intersection(*(set(clips) for clips in per_view.values()))) if per_view else []
        samples, cache = [], {}
        if self.condition_kinds and self.conditions_source == "occupancy" and starts:
            reference = self.reference_camera or (self.cameras[0] if self.cameras else episode.cameras[0])
            if reference not in episode.frames:
                self.report.add(f"reference camera {reference!r} absent", f"episode {episode.meta.episode_id}")
                return []
            cache.update(key=episode.meta.episode_id, occupancy=reference_occupancy(episode, reference))
        for start in starts:
            sample_id = f"{episode.meta.episode_id}@{start}"
            views = sample_views(sample_id, available, self.seed, self.epoch, self.rule)
            if not views:
                self.dropped_single_view += 1
                continue
            clips = [per_view[v][start] for v in views]
            for clip in clips:
                clip.conditions.update(
                    clip_conditions(episode, clip, self.condition_kinds, self.conditions_source, cache,
                                    self.condition_encoding))
            samples.append(MultiViewSample(sample_id, views, clips))
        return samples

    def _out(self, sample: MultiViewSample):
        if self.as_clips:
            return sample
        per_view = [clip_to_sample(clip) for clip in sample.clips]
        out = {
            "video": torch.stack([s["video"] for s in per_view]),  # (V, T, 3, H, W)
            "actions": per_view[0]["actions"],
            "instruction": sample.clips[0].instruction,
            "sample_id": sample.sample_id,
            "views": "+".join(sample.views),
        }
        if self.condition_kinds:
            out["conditions"] = {k: torch.stack([conditions_to_tensor(c.conditions[k], self.condition_encoding)
                                                 for c in sample.clips])
                                 for k in self.condition_kinds}  # (V, 3, T, H, W)
        return out


def make_multiview_dataset(config, split: str, shuffle: bool) -> MultiViewClipDataset:
    data, mv = config.data, config.multiview
    cameras = mv.cameras
    if cameras is None:
        cameras = list(schema_for(data.dataset or data.preset).cameras)
    return MultiViewClipDataset(
        data.path, clip_config_of(data), dataset=data.dataset, split=split, cameras=cameras, shuffle=shuffle,
        seed=config.seed, shuffle_buffer=data.shuffle_buffer, rule=mv.rule(),
        condition_kinds=config.model.condition_kinds, conditions_source=data.conditions_source,
        condition_encoding=data.condition_encoding or "engine",
        reference_camera=mv.reference_camera,
    )


class MultiViewStream(PositionedStream):
    """One multi-view sample per ``next`` (batch of 1), positioned for exact resume."""

    kind = "multi-view clips"

    def __init__(self, config, rank: int = 0, world_size: int = 1):
        self.config = config
        self.epoch, self.position = 0, 0
        self.dataset = make_multiview_dataset(config, config.data.split, shuffle=True)
        self.dataset.rank, self.dataset.world_size = rank, world_size
        workers = config.data.num_workers
        kwargs = dict(multiprocessing_context="spawn") if workers else {}
        self.loader = DataLoader(self.dataset, batch_size=1, num_workers=workers, **kwargs)
        self._iterator = None

    def _empty_message(self) -> str:
        return (f"the multi-view data gave no sample in an epoch ({self.config.data.path}, split "
                f"{self.config.data.split!r}, cameras {self.config.multiview.cameras})")

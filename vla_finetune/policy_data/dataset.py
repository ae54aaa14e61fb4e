"""A torch ``IterableDataset`` of policy windows from an RLDS mixture.

Reading: :class:`orv_engine.data.rlds_reader.RLDSReader` (one shard file at a time, bad
episodes counted in a skip report), main camera ``image_0``, then the Bridge transform
(:mod:`vla_finetune.policy_data.windows`).

Sharding, as :class:`orv_engine.data.clip_dataset.ClipDataset`: every (rank, DataLoader
worker) pair reads a disjoint part of each dataset, whole shard files when there are at
least as many files as readers, single episodes otherwise.

Mixing, as Octo/OpenVLA (frame-level ``sample_from_datasets``): each window comes from
dataset ``i`` with probability ``weight_i / sum(weights)``. An epoch ends when the first
(primary, e.g. BridgeV2) dataset is used up; the others restart when they run out.
Windows then pass through a seeded shuffle buffer. Everything is deterministic for
``(seed, epoch, reader slot)``, which exact resume relies on.

The buffer holds ``(episode, step)`` references, not windows: a 16-frame window of a
256x256 episode would otherwise cost 3 MB per buffered sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset

from orv_engine.data.clip_dataset import reader_slot
from orv_engine.data.errors import DatasetError, SkipReport
from orv_engine.data.rlds_reader import RLDSReader
from vla_finetune.bridge_transforms import bridge_transform
from vla_finetune.policy_data.normalization import ActionNormalizer
from vla_finetune.policy_data.windows import StandardEpisode, standardize, window_at
from vla_finetune.rlds_source import RLDSSource


@dataclass
class SourceSpec:
    path: str  # local TFDS folder (.../name/version or .../name)
    weight: float = 1.0
    split: str = "train"


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    if frames.shape[1:3] == (size, size):
        return frames
    return np.stack([np.asarray(Image.fromarray(f).resize((size, size), Image.BICUBIC)) for f in frames])


class PolicyWindowDataset(IterableDataset):
    """Samples ``{"images", "image_mask", "actions", "action_mask", "instruction", "source"}``.

    Args:
        sources: the mixture's datasets (the first is the primary one).
        normalizer: the mixture statistics (actions come out normalised).
        history, chunk: window sizes (observation frames, actions per chunk).
        transform: Bridge standardization, "openvla", "octo" or "none".
        image_size: resize frames to a square of this size (None: keep; all sources must agree).
    """

    def __init__(self, sources: Sequence[SourceSpec], normalizer: ActionNormalizer, *, history: int = 1,
                 chunk: int = 1, transform: str = "openvla", camera: str = "image_0", image_size: int | None = None,
                 shuffle: bool = True, shuffle_buffer: int = 256, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, on_bad: str = "skip"):
        if not sources:
            raise DatasetError("the mixture has no datasets")
        if history < 1 or chunk < 1:
            raise ValueError(f"history and chunk must be >= 1, got {history}, {chunk}")
        weights = np.asarray([s.weight for s in sources], np.float64)
        if (weights <= 0).any():
            raise DatasetError(f"mixture weights must be > 0, got {weights.tolist()}")
        self.sources = list(sources)
        self.probabilities = weights / weights.sum()
        self.normalizer = normalizer
        self.history, self.chunk = history, chunk
        self.transform, self.camera, self.image_size = transform, camera, image_size
        self.shuffle, self.shuffle_buffer, self.seed = shuffle, max(1, shuffle_buffer), seed
        self.rank, self.world_size, self.on_bad = rank, world_size, on_bad
        self.epoch = 0
        self.report = SkipReport()
        self.num_episodes = [self._reader(s).num_episodes for s in self.sources]  # fail on bad paths now

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _reader(self, source: SourceSpec) -> RLDSReader:
        return RLDSReader(source.path, split=source.split, cameras=(self.camera,), on_bad=self.on_bad,
                          report=self.report, dataset="bridge")

    def reader_slot(self) -> tuple[int, int]:
        return reader_slot(self.rank, self.world_size)

    def _episodes(self, index: int, pass_: int) -> Iterator[StandardEpisode]:
        source = self.sources[index]
        reader = self._reader(source)
        me, readers = self.reader_slot()
        rng = np.random.default_rng([self.seed, self.epoch, index, pass_])
        files = rng.permutation(len(reader.files)) if self.shuffle else np.arange(len(reader.files))
        if len(files) >= readers:
            chosen = [(int(f), None) for f in files[me::readers]]
        else:
            lengths = reader.builder.info.splits[reader.split].shard_lengths
            chosen, offset = [], 0
            for f in files:
                chosen.append((int(f), lambda i, b=offset: (b + i) % readers == me))
                offset += int(lengths[int(f)])
        for shard, keep in chosen:
            for episode in reader.iter_shard(shard, keep=keep):
                frames = episode.frames[self.camera]
                if self.image_size:
                    frames = resize_frames(frames, self.image_size)
                std = standardize(frames, episode.states, episode.actions, episode.instruction,
                                  episode.meta.episode_id, self.transform)
                if len(std) == 0:
                    self.report.add("too short for the Bridge transform", episode.meta.episode_id)
                    continue
                yield std

    def _steps(self, index: int, pass_: int) -> Iterator[tuple[StandardEpisode, int, int]]:
        for episode in self._episodes(index, pass_):
            for t in range(len(episode)):
                yield episode, t, index

    def _mixed(self) -> Iterator[tuple[StandardEpisode, int, int]]:
        rng = np.random.default_rng([self.seed, self.epoch, *self.reader_slot(), 7])
        passes = [0] * len(self.sources)
        streams = [self._steps(i, 0) for i in range(len(self.sources))]
        while True:
            i = int(rng.choice(len(self.sources), p=self.probabilities)) if len(self.sources) > 1 else 0
            try:
                yield next(streams[i])
                continue
            except StopIteration:
                if i == 0:
                    return
            passes[i] += 1
            streams[i] = self._steps(i, passes[i])
            try:
                yield next(streams[i])
            except StopIteration:
                raise DatasetError(f"{self.sources[i].path}: no usable episode for this reader "
                                   f"(slot {self.reader_slot()})") from None

    def sample(self, episode: StandardEpisode, t: int, source: int) -> dict:
        window = window_at(episode, t, self.history, self.chunk)
        return {
            "images": torch.from_numpy(np.ascontiguousarray(window.images)),
            "image_mask": torch.from_numpy(window.image_mask),
            "actions": torch.from_numpy(self.normalizer.normalize(window.actions)),
            "action_mask": torch.from_numpy(window.action_mask),
            "instruction": window.instruction,
            "source": source,
        }

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch, *self.reader_slot()])
        buffer: list = []
        for item in self._mixed():
            if not self.shuffle:
                yield self.sample(*item)
                continue
            buffer.append(item)
            if len(buffer) >= self.shuffle_buffer:
                yield self.sample(*buffer.pop(int(rng.integers(len(buffer)))))
        while buffer:
            yield self.sample(*buffer.pop(int(rng.integers(len(buffer)))))


def all_actions(sources: Sequence[SourceSpec], transform: str = "openvla") -> np.ndarray:
    """Every standardized action of the mixture, ``(N, 7)`` (to fit SpatialVLA's bins)."""
    out = []
    for s in sources:
        for states, actions in RLDSSource(Path(s.path)).trajectories([s.split]):
            out.append(actions if transform == "none" else bridge_transform(states, actions, transform)[1])
    return np.concatenate(out) if out else np.zeros((0, 7), np.float32)

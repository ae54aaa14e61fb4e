"""A torch ``IterableDataset`` of clips from a local RLDS dataset.

Sharding: every (rank, DataLoader worker) pair gets a disjoint part of the episodes. With at
least as many shard files as readers, whole files are dealt out (real BridgeV2 has 1024);
otherwise episodes are dealt out one by one, and a reader decodes only its own. Either way
no clip is seen twice in an epoch and none is lost. Clip counts per rank can differ by a
few; distributed training should iterate with accelerate's ``even_batches``/``join``.

Shuffling is deterministic for ``(seed, epoch)``: the file order is permuted and clips pass
through a seeded shuffle buffer. Call :meth:`ClipDataset.set_epoch` between epochs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from orv_engine.data.clips import Clip, ClipConfig, cut_clips
from orv_engine.data.errors import SkipReport
from orv_engine.data.rlds_reader import RLDSReader


def clip_to_sample(clip: Clip) -> dict:
    """A clip as model inputs: video (F+1, 3, H, W) in [-1, 1], as CogVideoX expects."""
    video = torch.from_numpy(clip.frames).permute(0, 3, 1, 2).float().div_(127.5).sub_(1.0)
    return {
        "video": video,
        "actions": torch.from_numpy(clip.actions),
        "action_mask": torch.from_numpy(clip.action_mask),
        "states": torch.from_numpy(clip.states),
        "frame_indices": torch.from_numpy(clip.frame_indices),
        "instruction": clip.instruction,
        "episode_id": clip.episode_id,
    }


def distributed_rank_and_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def reader_slot(rank: int | None = None, world_size: int | None = None) -> tuple[int, int]:
    """(index of this reader, number of readers) over ranks x DataLoader workers; ``rank`` /
    ``world_size`` override the distributed environment's."""
    env_rank, env_world = distributed_rank_and_world()
    rank = rank if rank is not None else env_rank
    world = world_size if world_size is not None else env_world
    info = get_worker_info()
    worker, workers = (info.id, info.num_workers) if info else (0, 1)
    return rank * workers + worker, world * workers


class ClipDataset(IterableDataset):
    """Clips of one split of an RLDS dataset, as dicts of tensors (see ``clip_to_sample``).

    Args:
        path: local TFDS folder of the dataset.
        clip_config: frames, size, strides (``clips.PRESETS`` has the paper's).
        dataset: schema kind ("bridge", "droid", "rt1"); default from the tfds name.
        split: "train" uses ``clip_interval``, other splits ``val_clip_interval``.
        shuffle, seed, shuffle_buffer: deterministic shuffling per ``(seed, epoch)``.
        rank, world_size: default from torch.distributed or RANK/WORLD_SIZE.
        as_clips: yield :class:`Clip` records instead of tensor dicts.
    """

    def __init__(
        self,
        path: str | Path,
        clip_config: ClipConfig,
        *,
        dataset: str | None = None,
        split: str = "train",
        cameras: Sequence[str] | None = None,
        shuffle: bool = True,
        seed: int = 0,
        shuffle_buffer: int = 256,
        rank: int | None = None,
        world_size: int | None = None,
        on_bad: str = "skip",
        as_clips: bool = False,
    ):
        self.path = path
        self.clip_config = clip_config
        self.dataset = dataset
        self.split = split
        self.cameras = tuple(cameras) if cameras else ((clip_config.camera,) if clip_config.camera else None)
        self.shuffle = shuffle
        self.seed = seed
        self.shuffle_buffer = max(1, shuffle_buffer)
        self.rank, self.world_size = rank, world_size
        self.on_bad = on_bad
        self.as_clips = as_clips
        self.epoch = 0
        self.report = SkipReport()  # filled in this process (num_workers=0) only
        # Open once here so bad paths, schemas and cameras fail now, not in a worker.
        self._reader()

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _reader(self) -> RLDSReader:
        return RLDSReader(
            self.path, dataset=self.dataset, split=self.split, cameras=self.cameras,
            on_bad=self.on_bad, report=self.report,
        )

    def _reader_slot(self) -> tuple[int, int]:
        return reader_slot(self.rank, self.world_size)

    def _episodes(self, reader: RLDSReader):
        me, readers = self._reader_slot()
        rng = np.random.default_rng([self.seed, self.epoch])
        files = np.arange(len(reader.files))
        if self.shuffle:
            files = rng.permutation(files)
        if len(files) >= readers:  # deal out whole files
            for shard in files[me::readers]:
                yield from reader.iter_shard(int(shard))
            return
        # Fewer files than readers: deal out episodes, counted across the file order.
        offset = 0
        for shard in files:
            base = offset
            yield from reader.iter_shard(int(shard), keep=lambda i, b=base: (b + i) % readers == me)
            offset += self._episodes_in_shard(reader, int(shard))

    @staticmethod
    def _episodes_in_shard(reader: RLDSReader, shard: int) -> int:
        shard_lengths = reader.builder.info.splits[reader.split].shard_lengths
        return int(shard_lengths[shard])

    def __iter__(self) -> Iterator:
        reader = self._reader()
        rng = np.random.default_rng([self.seed, self.epoch, *self._reader_slot()])
        buffer: list[Clip] = []
        for episode in self._episodes(reader):
            for clip in self._episode_clips(episode):
                if not self.shuffle:
                    yield self._out(clip)
                    continue
                buffer.append(clip)
                if len(buffer) >= self.shuffle_buffer:
                    yield self._out(buffer.pop(int(rng.integers(len(buffer)))))
        while buffer:
            yield self._out(buffer.pop(int(rng.integers(len(buffer)))))

    def _episode_clips(self, episode) -> list[Clip]:
        """The clips of one episode; subclasses add to them (e.g. condition maps)."""
        return cut_clips(episode, self.clip_config, self.split, self.report)

    def _out(self, clip: Clip):
        return clip if self.as_clips else clip_to_sample(clip)


def make_clip_loader(dataset: ClipDataset, batch_size: int, num_workers: int = 0, **kwargs):
    """A DataLoader over a :class:`ClipDataset`.

    Workers are spawned, not forked: TensorFlow's thread pools do not survive a fork of a
    process that already used them.
    """
    if num_workers > 0:
        kwargs.setdefault("multiprocessing_context", "spawn")
        kwargs.setdefault("persistent_workers", False)
    return DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, **kwargs)

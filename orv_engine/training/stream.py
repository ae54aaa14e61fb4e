"""An endless stream of training batches that knows its position, for exact resume.

The position is ``(epoch, batches into the epoch)`` of this process. Both sources are
deterministic for ``(seed, epoch)`` (the clip reader's shard order and shuffle buffer, the
latent store's permutation), so a resumed run that restores the position sees the same
batches in the same order. Skipping is free for the latent store (the sampler starts
later) and costs a read of the skipped clips for the clip reader.

Every rank reads its own shard (the datasets shard by rank themselves), so the loader is not
handed to ``accelerator.prepare``; ranks run the same number of steps and each starts its
next epoch when its shard is done.
"""

from __future__ import annotations

from torch.utils.data import DataLoader

from orv_engine.training.data import make_dataset
from orv_engine.training.latents import EpochSampler, LatentDataset, store_is_complete


class PositionedStream:
    """Endless batches from ``self.loader`` that count ``(epoch, batches into it)``.

    Subclasses set ``self.loader`` and ``self.dataset`` and may redefine :meth:`_start_epoch`
    (seed the epoch's order, skip ``self.position`` batches) and :meth:`_empty_message` (why
    no full batch came)."""

    epoch: int = 0
    position: int = 0
    _iterator = None

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._iterator = None

    def _start_epoch(self):
        """The epoch's order from ``self.dataset.set_epoch``, then skip the batches already taken."""
        self.dataset.set_epoch(self.epoch)
        iterator = iter(self.loader)
        for _ in range(self.position):
            next(iterator)
        return iterator

    def _empty_message(self) -> str:
        return "the training data gave no full batch in an epoch"

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        for _ in range(2):  # the end of one epoch, then the start of the next
            try:
                if self._iterator is None:
                    self._iterator = self._start_epoch()
                batch = next(self._iterator)
                self.position += 1
                return batch
            except StopIteration:
                empty = self.position == 0
                self._iterator = None
                self.epoch, self.position = self.epoch + 1, 0
                if empty:
                    break
        raise RuntimeError(self._empty_message())


class BatchStream(PositionedStream):
    def __init__(self, config, rank: int = 0, world_size: int = 1):
        self.config = config
        self.epoch, self.position = 0, 0
        data = config.data
        workers = data.num_workers
        loader_kwargs = dict(batch_size=config.train.batch_size, num_workers=workers, drop_last=True)
        if workers:
            loader_kwargs.update(multiprocessing_context="spawn", persistent_workers=False)
        if store_is_complete(data.latents_dir):
            self.dataset = LatentDataset(data.latents_dir, config.model.condition_kinds)
            self.sampler = EpochSampler(len(self.dataset), config.seed, rank, world_size)
            self.loader = DataLoader(self.dataset, sampler=self.sampler, **loader_kwargs)
            self.kind = "latents"
        else:
            self.dataset = make_dataset(config, data.split, shuffle=True)
            self.dataset.rank, self.dataset.world_size = rank, world_size
            self.sampler = None
            self.loader = DataLoader(self.dataset, **loader_kwargs)
            self.kind = "clips"
        self._iterator = None

    def _start_epoch(self):
        skip = self.position
        if self.sampler is not None:
            self.sampler.set_epoch(self.epoch, start=skip * self.config.train.batch_size)
            skip = 0
        else:
            self.dataset.set_epoch(self.epoch)
        iterator = iter(self.loader)
        for _ in range(skip):
            next(iterator)
        return iterator

    def _empty_message(self) -> str:
        return (
            f"the training data gave no full batch of {self.config.train.batch_size} in an epoch "
            f"({self.kind} from {self.config.data.latents_dir or self.config.data.path}, split "
            f"{self.config.data.split!r}): too few clips for this batch size and number of processes"
        )

"""An endless stream of window batches that knows its position ``(epoch, batches into it)``.

The window dataset is deterministic for ``(seed, epoch, reader slot)``, so a resumed run
that restores the position (and skips that many batches of the epoch) sees the same
batches in the same order. Every rank reads its own shard, so the loader is not handed
to ``accelerator.prepare`` (same scheme as :mod:`orv_engine.training.stream`).
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader

from orv_engine.training.stream import PositionedStream


class WindowBatchStream(PositionedStream):
    def __init__(self, dataset, batch_size: int, num_workers: int = 0, seed: int = 0):
        self.dataset, self.batch_size = dataset, batch_size
        # Its own generator: creating a loader iterator draws a seed from it, and drawing from
        # the global RNG would shift the dropout draws of a resumed run.
        kwargs = dict(batch_size=batch_size, num_workers=num_workers, drop_last=True,
                      generator=torch.Generator().manual_seed(seed))
        if num_workers:  # TensorFlow's thread pools do not survive a fork
            kwargs.update(multiprocessing_context="spawn", persistent_workers=False)
        self.loader = DataLoader(dataset, **kwargs)
        self.epoch, self.position = 0, 0
        self._iterator = None

    def _empty_message(self) -> str:
        return (f"the mixture gave no full batch of {self.batch_size} windows in an epoch: too few "
                "episodes for this batch size and number of processes/workers")

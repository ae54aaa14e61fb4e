"""Collect network features over a stream of clips in device-sized batches.

The table command reads one clip pair at a time (a whole evaluation split does not fit in
memory), but a GPU wants batches: this buffer turns the stream into batches of
``batch_size`` items (frames for FID, clips for FVD) and keeps only the features.
Items of another size than the ones waiting (clips of a split need not share a frame
size) first flush the waiting ones as a smaller batch.
"""

from __future__ import annotations

from typing import Callable

import numpy as np


class FeatureBank:
    def __init__(self, extract: Callable[[np.ndarray], np.ndarray], batch_size: int):
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self._extract = extract
        self._batch_size = batch_size
        self._pending: list[np.ndarray] = []
        self._n_pending = 0
        self._features: list[np.ndarray] = []

    def add(self, items: np.ndarray) -> None:
        """Queue ``items`` (stacked on axis 0); runs the network whenever a batch is full."""
        if self._pending and items.shape[1:] != self._pending[0].shape[1:]:
            self._run(self._n_pending)
        self._pending.append(items)
        self._n_pending += len(items)
        while self._n_pending >= self._batch_size:
            self._run(self._batch_size)

    def _run(self, n: int) -> None:
        batch = np.concatenate(self._pending, axis=0)
        self._features.append(np.asarray(self._extract(batch[:n]), dtype=np.float64))
        rest = batch[n:]
        self._pending = [rest] if len(rest) else []
        self._n_pending = len(rest)

    def features(self) -> np.ndarray:
        """All features so far, ``(N, D)`` float64 (runs the last partial batch)."""
        if self._n_pending:
            self._run(self._n_pending)
        if not self._features:
            raise ValueError("no features collected")
        return np.concatenate(self._features, axis=0)

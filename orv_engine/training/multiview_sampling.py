"""Which views a multi-view training sample uses (paper Sec. 10.2.2, Table 10).

The paper's recipe, on BridgeV2 (60.8% of the samples have one view, 39.2% three):

- single-view samples are subsampled so that they make up ~40% of the kept samples;
- a sample with three views gives a 2-view sequence with probability 0.5 and a 3-view
  sequence with probability 0.5;
- the order of the views is randomised (so the view positions of Eq. 3 do not tie a
  position to a camera).

Samples with exactly two views (none in BridgeV2) keep both. Samples with more than three
views (DROID's wrist + 2 exterior cameras are three) are treated like three-view samples
and never give more than ``max_views``.

Why a pure function of ``(seed, epoch, sample id, available views)``: the draw is
reproducible on any rank and after a resume, and testable without a dataset.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

# Paper Table 10: BridgeV2 multi-view training samples.
BRIDGE_SINGLE_VIEW_SAMPLES = 89901
BRIDGE_THREE_VIEW_SAMPLES = 57978


def single_view_keep_probability(num_single: int, num_multi: int, target_fraction: float = 0.4) -> float:
    """The keep probability ``p`` with ``p * n1 / (p * n1 + n_multi) = target_fraction`` (at most 1)."""
    if not 0.0 < target_fraction < 1.0:
        raise ValueError(f"target_fraction must be in (0, 1), got {target_fraction}")
    if num_single <= 0:
        return 1.0
    if num_multi < 0:
        raise ValueError(f"num_multi must be >= 0, got {num_multi}")
    return float(min(1.0, target_fraction * num_multi / ((1.0 - target_fraction) * num_single)))


@dataclass(frozen=True)
class ViewSampling:
    """The sampling rule. Defaults: the paper's BridgeV2 numbers (keep ~0.43 of single-view samples)."""

    single_view_keep: float = single_view_keep_probability(BRIDGE_SINGLE_VIEW_SAMPLES, BRIDGE_THREE_VIEW_SAMPLES)
    three_view_probability: float = 0.5  # else two views, for samples with >= 3 views
    max_views: int = 3
    shuffle_views: bool = True

    def __post_init__(self):
        for name in ("single_view_keep", "three_view_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.max_views < 1:
            raise ValueError(f"max_views must be >= 1, got {self.max_views}")


def sample_rng(seed: int, epoch: int, sample_id: str) -> np.random.Generator:
    """A generator for one sample of one epoch (``crc32`` of the id: stable across processes)."""
    return np.random.default_rng([int(seed), int(epoch), zlib.crc32(sample_id.encode("utf-8"))])


def sample_views(sample_id: str, available_views: Sequence[str], seed: int, epoch: int = 0,
                 rule: ViewSampling = ViewSampling()) -> tuple[str, ...]:
    """The views (in model order) of one sample, or ``()`` when a single-view sample is dropped.

    ``sample_id`` names the sample (e.g. ``"<episode id>@<clip start>"``); ``available_views``
    are the cameras that hold an image in it (duplicates or none are errors).
    """
    views = list(available_views)
    if not views:
        raise ValueError(f"sample {sample_id}: no camera views available")
    if len(set(views)) != len(views):
        raise ValueError(f"sample {sample_id}: duplicate views in {views}")
    rng = sample_rng(seed, epoch, sample_id)
    if len(views) == 1:
        return tuple(views) if rng.random() < rule.single_view_keep else ()
    if len(views) == 2:
        count = 2
    else:
        count = 3 if rng.random() < rule.three_view_probability else 2
    count = min(count, rule.max_views)
    chosen = rng.choice(len(views), size=count, replace=False)  # random subset, random order
    if not rule.shuffle_views:
        chosen = np.sort(chosen)
    return tuple(views[int(i)] for i in chosen)

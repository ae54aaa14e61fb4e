"""Blur: the variance of the Laplacian of each frame (low = blurry or washed out)."""

from __future__ import annotations

import time

import numpy as np

from filtering.checks._util import grey
from filtering.records import CheckResult


def laplacian_variance(frames: np.ndarray) -> np.ndarray:
    """Per-frame variance of the 4-neighbour Laplacian of the luma, ``(T,)`` float64."""
    g = grey(frames)
    lap = (g[:, :-2, 1:-1] + g[:, 2:, 1:-1] + g[:, 1:-1, :-2] + g[:, 1:-1, 2:] - 4.0 * g[:, 1:-1, 1:-1])
    return lap.reshape(lap.shape[0], -1).var(axis=1).astype(np.float64)


def blur_check(frames: np.ndarray, min_variance: float, percentile: float = 25.0) -> CheckResult:
    """Pass when the ``percentile``-th per-frame Laplacian variance reaches ``min_variance``.

    A low percentile rather than the mean: a clip that goes blurry for a quarter of its
    frames fails. The value depends on resolution and content, so the threshold is a
    config value (the defaults suit 320x480 .. 480x640 robot clips).
    """
    start = time.perf_counter()
    per_frame = laplacian_variance(frames)
    value = float(np.percentile(per_frame, percentile))
    passed = value >= min_variance
    detail = f"variance of Laplacian p{percentile:g} {value:.1f} {'>=' if passed else '<'} {min_variance:g}"
    return CheckResult("blur", value, passed, min_variance, detail, time.perf_counter() - start)

"""Flicker and sudden jumps between consecutive frames.

- flicker: the global brightness of frame ``t`` against the average of its neighbours
  (the second difference of the per-frame mean luma): lighting that pops up and down,
  while a slow lighting drift passes.
- jump: a consecutive-frame difference against the differences around it: a cut, a
  teleporting arm or a frame from another clip is a spike, while smooth motion (even fast,
  even accelerating) keeps neighbouring differences alike.
"""

from __future__ import annotations

import time

import numpy as np

from filtering.checks._util import downscale, grey
from filtering.records import CheckResult


def flicker_value(frames: np.ndarray) -> tuple[float, int]:
    brightness = grey(frames).mean(axis=(1, 2)).astype(np.float64)
    if len(brightness) < 3:
        return 0.0, -1
    residual = np.abs(brightness[1:-1] - 0.5 * (brightness[:-2] + brightness[2:]))
    worst = int(residual.argmax())
    return float(residual[worst]), worst + 1


def flicker_check(frames: np.ndarray, max_flicker: float) -> CheckResult:
    start = time.perf_counter()
    value, where = flicker_value(frames)
    passed = value <= max_flicker
    detail = f"brightness pop {value:.2f} grey levels at frame {where} ({'<=' if passed else '>'} {max_flicker:g})"
    return CheckResult("flicker", value, passed, max_flicker, detail, time.perf_counter() - start)


def frame_differences(frames: np.ndarray) -> np.ndarray:
    """Mean absolute luma difference of each consecutive pair (downscaled), ``(T-1,)``."""
    g = downscale(grey(frames))
    return np.abs(np.diff(g, axis=0)).mean(axis=(1, 2)).astype(np.float64)


def jump_value(frames: np.ndarray, floor: float = 2.0, window: int = 2) -> tuple[float, int]:
    """Largest ratio of a pair difference to the median of its ``window`` neighbouring pair
    differences on each side (``floor`` grey levels at least, so that near-static stretches
    with sensor noise do not divide by ~0). Smooth acceleration keeps neighbours alike; a
    cut or an inserted foreign frame is a spike against them."""
    diffs = frame_differences(frames)
    if len(diffs) < 2:
        return 0.0, -1
    ratios = np.zeros(len(diffs))
    for t in range(len(diffs)):
        neighbours = np.concatenate([diffs[max(0, t - window):t], diffs[t + 1:t + 1 + window]])
        neighbours = neighbours[neighbours > 0]  # placeholder copies of the last frame differ by 0
        reference = max(float(np.median(neighbours)) if len(neighbours) else 0.0, floor)
        ratios[t] = diffs[t] / reference
    worst = int(ratios.argmax())
    return float(ratios[worst]), worst


def jump_check(frames: np.ndarray, max_ratio: float) -> CheckResult:
    start = time.perf_counter()
    value, where = jump_value(frames)
    passed = value <= max_ratio
    detail = f"frame {where}->{where + 1} differs {value:.2f}x the median ({'<=' if passed else '>'} {max_ratio:g})"
    return CheckResult("jump", value, passed, max_ratio, detail, time.perf_counter() - start)

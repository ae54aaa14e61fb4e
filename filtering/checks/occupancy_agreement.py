"""Agreement of the clip's motion with its occupancy-rendered conditions.

The condition maps (depth and/or semantics rendered from the 4D occupancy for every frame
of the clip) say where things move: a pixel whose rendered depth or label changes between
frame ``t`` and ``t + 1`` (the gripper, the arm, a carried object). A generated clip should
move there and nowhere else. The value is the share of the clip's observed motion (pixels
whose luma changes by more than ``noise`` grey levels) that falls inside that region,
dilated by ``dilate`` pixels; motion elsewhere (melting background, an object moving on
its own, the arm in the wrong place) lowers it. When the conditions move but the clip is
frozen, the value is 0.
"""

from __future__ import annotations

import time

import numpy as np
from scipy import ndimage

from filtering.checks._util import grey
from filtering.records import CheckResult


def _align(maps: np.ndarray, num_frames: int, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resample ``(F, h, w)`` maps to ``(num_frames, height, width)``."""
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"condition maps: expected (F, H, W), got {maps.shape}")
    t_idx = np.round(np.linspace(0, maps.shape[0] - 1, num_frames)).astype(int)
    y_idx = np.minimum((np.arange(height) + 0.5) * maps.shape[1] / height, maps.shape[1] - 1).astype(int)
    x_idx = np.minimum((np.arange(width) + 0.5) * maps.shape[2] / width, maps.shape[2] - 1).astype(int)
    return maps[t_idx][:, y_idx][:, :, x_idx]


def expected_motion(conditions: dict, num_frames: int, height: int, width: int,
                    depth_tolerance: float = 0.01, dilate: int = 4) -> np.ndarray:
    """``(T-1, H, W)`` bool: where the rendered conditions change between frames."""
    moving = np.zeros((num_frames - 1, height, width), bool)
    if conditions.get("depth") is not None:
        depth = _align(conditions["depth"], num_frames, height, width).astype(np.float32)
        depth = np.where(np.isfinite(depth), depth, 0.0)
        moving |= np.abs(np.diff(depth, axis=0)) > depth_tolerance
    if conditions.get("semantics") is not None:
        semantics = _align(conditions["semantics"], num_frames, height, width)
        moving |= semantics[1:] != semantics[:-1]
    if dilate > 0:
        structure = np.zeros((3, 3, 3), bool)
        structure[1] = ndimage.generate_binary_structure(2, 1)  # dilate in space only
        moving = ndimage.binary_dilation(moving, structure=structure, iterations=dilate)
    return moving


def agreement_value(frames: np.ndarray, conditions: dict, noise: float = 12.0, dilate: int = 4,
                    depth_tolerance: float = 0.01) -> tuple[float, float]:
    """``(precision, recall)``: observed motion inside the expected region, and the expected
    region that shows motion."""
    t, height, width = frames.shape[:3]
    if t < 2:
        return 1.0, 1.0
    expected = expected_motion(conditions, t, height, width, depth_tolerance, dilate)
    observed = np.abs(np.diff(grey(frames), axis=0)) > noise
    n_obs, n_exp = int(observed.sum()), int(expected.sum())
    tiny = 1e-4 * observed.size  # below this, "no motion"
    if n_obs <= tiny:
        return (1.0, 1.0) if n_exp <= tiny else (0.0, 0.0)
    precision = float((observed & expected).sum() / n_obs)
    recall = float((observed & expected).sum() / max(n_exp, 1)) if n_exp > tiny else 0.0
    return precision, recall


def occupancy_agreement_check(frames: np.ndarray, conditions: dict, min_agreement: float,
                              dilate: int = 4, noise: float = 12.0) -> CheckResult:
    start = time.perf_counter()
    precision, recall = agreement_value(frames, conditions, noise=noise, dilate=dilate)
    passed = precision >= min_agreement
    detail = (f"{precision:.0%} of the motion where the conditions move ({'>=' if passed else '<'} "
              f"{min_agreement:.0%}); {recall:.0%} of the condition motion seen")
    return CheckResult("occupancy_agreement", precision, passed, min_agreement, detail, time.perf_counter() - start)

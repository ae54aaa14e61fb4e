"""Eq. 1 of the supplementary: least-squares scale (and optional shift) between two depth
maps of the same view, ``min_{a,b} sum_i (a * D'_i + b - D_i)^2``, to bring another
reconstruction (VGGT cameras, a depth adapter) into the anchor's (MonST3R) frame.

``numpy.linalg.lstsq`` solves it; only pixels valid in both maps count.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orv_engine.occupancy.errors import OccupancyInputError


@dataclass
class DepthAlignment:
    scale: float  # alpha
    shift: float  # beta (0 when fitted scale-only)
    num_pixels: int  # pixels used in the fit
    rmse: float  # residual root-mean-square error, in reference depth units

    def apply(self, depth):
        return self.scale * np.asarray(depth, dtype=np.float64) + self.shift


def fit_depth_alignment(source, reference, with_shift: bool = False, mask=None) -> DepthAlignment:
    """Fit ``scale * source (+ shift) ~= reference`` over pixels valid in both maps."""
    source = np.asarray(source, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    if source.shape != reference.shape:
        raise OccupancyInputError(
            f"source: shape {source.shape} differs from reference shape {reference.shape}"
        )
    valid = np.isfinite(source) & np.isfinite(reference) & (source > 0) & (reference > 0)
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != source.shape:
            raise OccupancyInputError(f"mask: expected shape {source.shape}, got {mask.shape}")
        valid &= mask
    needed = 2 if with_shift else 1
    if valid.sum() < needed:
        raise OccupancyInputError(
            f"source/reference: {int(valid.sum())} pixels valid in both maps, need {needed}"
        )
    x, y = source[valid], reference[valid]
    design = np.stack([x, np.ones_like(x)], axis=1) if with_shift else x[:, None]
    solution, *_ = np.linalg.lstsq(design, y, rcond=None)
    scale = float(solution[0])
    shift = float(solution[1]) if with_shift else 0.0
    residual = scale * x + shift - y
    return DepthAlignment(scale, shift, int(x.size), float(np.sqrt(np.mean(residual**2))))


def rescale_cameras(cam_to_world, scale: float) -> np.ndarray:
    """Scale camera positions (``(..., 4, 4)`` cam-to-world) into the anchor frame.

    Both reconstructions share the first view as their reference frame, so aligning the
    depth scale is a pure scaling of translations (the paper drops the shift in practice).
    """
    poses = np.array(cam_to_world, dtype=np.float64, copy=True)
    if poses.shape[-2:] != (4, 4):
        raise OccupancyInputError(f"cam_to_world: expected (..., 4, 4), got {poses.shape}")
    poses[..., :3, 3] *= scale
    return poses

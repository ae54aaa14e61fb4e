"""Occ2GS on the CPU, compiled with numba: the same model as ``render_occ2gs`` (torch) and
``render_dense`` (reference), two orders of magnitude faster than the torch renderer.

Same Gaussians and rules: projection as in ``projection.project`` (EWA, 0.3 px^2 dilation,
``ceil(3 sigma)`` footprint around the rounded centre, culling, stable front-to-back order),
per-pixel alpha ``min(alpha_max, opacity * exp(-d^2/2))`` with fragments under ``alpha_min``
skipped, front-to-back compositing, depth = sum(w z) / sum(w), semantics = argmax of the
composited one-hot labels (ties -> smallest label id, as ``torch.argmax``), background where
the accumulated alpha < ``background_alpha`` (depth 0, label -1); pixels stop at
transmittance < ``EARLY_STOP_T``, so alpha and depth differ from torch's by < 1e-4.

Numba rather than a library: no maintained package rasterizes Gaussians on the CPU (gsplat
and diff-gaussian-rasterization are CUDA only), and the per-pixel early stop is a
data-dependent loop that vectorised torch cannot express.

This module is the backend's per-frame pipeline; the kernels live by idea in
``numba_projection`` (records), ``numba_sorting`` (depth sort, tile binning) and
``numba_compositing`` (tile kernel), on ``numba_support`` (optional import, serial and
parallel builds). How it works and what each choice measured: docs/occupancy.md, "The
numba tile renderer". Compiled functions are cached on disk (``cache=True``).
"""

from __future__ import annotations

import numpy as np
import torch

from orv_engine.occupancy import numba_compositing, numba_projection, numba_sorting  # kernels: defined with numba only
from orv_engine.occupancy.numba_compositing import EARLY_STOP_T, compact_labels, power_threshold
from orv_engine.occupancy.numba_projection import NumbaProjected
from orv_engine.occupancy.numba_support import numba, numba_available, require_numba, variant
from orv_engine.occupancy.projection import ProjectedGaussians, SplatSettings
from orv_engine.occupancy.render_occ2gs import RenderedView, empty_view

__all__ = [  # the names other modules import from here (the stage modules hold the rest)
    "EARLY_STOP_T", "NumbaProjected", "numba", "numba_available", "project_numba", "rasterize_numba", "render_numba",
    "require_numba", "visible_depth_range_numba",
]


def _view_matrix(cam_to_world: np.ndarray) -> np.ndarray:
    """World-to-camera (3, 4) float32, computed in float64 as ``projection.project`` does."""
    pose = np.asarray(cam_to_world, np.float64)
    rotation = pose[:3, :3].T
    return np.ascontiguousarray(np.concatenate([rotation, -(rotation @ pose[:3, 3:])], 1), np.float32)


def _as_numpy(array, dtype) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.ascontiguousarray(array, dtype=dtype)


def visible_depth_range_numba(means, K, cam_to_world, height: int, width: int, near: float):
    """``projection.visible_depth_range`` in numba: (min z, max z) of centres in view, or None."""
    require_numba()
    means = _as_numpy(means, np.float32)
    K = _as_numpy(K, np.float32)
    pose = _as_numpy(cam_to_world, np.float32)  # float32 pose, like the torch version
    rotation = pose[:3, :3].T
    view = np.ascontiguousarray(np.concatenate([rotation, -(rotation @ pose[:3, 3:])], 1), np.float32)
    _, _, z, _, _, inside = variant(numba_projection.camera_pass)(means, view, K[0, 0], K[1, 1], K[0, 2], K[1, 2],
                                                                  width, height, np.float32(near))
    found, z_min, z_max = variant(numba_projection.masked_range)(z, inside, numba.get_num_threads())
    return (float(z_min), float(z_max)) if found else None


def project_numba(means, K, cam_to_world, height: int, width: int, voxel_size: float, settings: SplatSettings,
                  depth_range: tuple[float, float] | None = None) -> NumbaProjected:
    """``projection.project`` in numba: cull, project and sort front to back."""
    require_numba()
    means = _as_numpy(means, np.float32)
    K = _as_numpy(K, np.float32)
    view = _view_matrix(_as_numpy(cam_to_world, np.float64))
    f32 = np.float32
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    near = f32(settings.near)
    x, y, z, u, v, centre_in = variant(numba_projection.camera_pass)(means, view, fx, fy, cx, cy, width, height,
                                                                     near)
    if depth_range is None:
        found, z_min, z_max = variant(numba_projection.masked_range)(z, centre_in, numba.get_num_threads())
        depth_range = (float(z_min), float(z_max)) if found else (1.0, 1.0)
    z_min, z_max = depth_range
    rule = settings.scale_rule
    scale = f32(rule.k2 * (voxel_size / rule.reference_voxel_size))
    limit_x = f32(1.3) * (f32(0.5 * width) / fx)
    limit_y = f32(1.3) * (f32(0.5 * height) / fy)
    splat, pixel, keep = variant(numba_projection.footprint_pass)(
        x, y, z, u, v, fx, fy, width, height, near, f32(z_min), f32(z_max - z_min), f32(rule.k1), scale,
        f32(settings.dilation), limit_x, limit_y)
    index = np.flatnonzero(keep)
    order = variant(numba_sorting.depth_order)(z, index, numba.get_num_threads())
    rows, splat, pixel = variant(numba_sorting.gather_records)(order, index, splat, pixel)
    return NumbaProjected(rows, splat, pixel)


def rasterize_numba(projected: NumbaProjected | ProjectedGaussians, labels, height: int, width: int,
                    settings: SplatSettings) -> RenderedView:
    """Render projected Gaussians (numpy or torch ``ProjectedGaussians``); ``labels`` (N,) of all inputs."""
    require_numba()
    p = projected if isinstance(projected, NumbaProjected) else NumbaProjected.from_torch(projected)
    if p.index.size == 0:
        return empty_view(height, width)
    present, compact = compact_labels(_as_numpy(labels, np.int64), p.index)
    starts, items = variant(numba_sorting.bin_tiles)(p.pixel, height, width, numba.get_num_threads())
    f32 = np.float32
    alpha, depth, semantics = numba_compositing.composite_tiles(
        starts, items, p.splat, p.pixel, compact, present, height, width, numba.get_num_threads(),
        f32(settings.opacity), f32(settings.alpha_max), f32(settings.alpha_min), power_threshold(settings),
        f32(EARLY_STOP_T),
        f32(settings.background_alpha))
    return RenderedView(torch.from_numpy(depth), torch.from_numpy(semantics), torch.from_numpy(alpha))


def render_numba(means, labels, K, cam_to_world, height: int, width: int, voxel_size: float,
                 settings: SplatSettings, depth_range: tuple[float, float] | None = None) -> RenderedView:
    """Project and rasterize in numba (the whole per-frame pipeline of the ``numba`` backend)."""
    projected = project_numba(means, K, cam_to_world, height, width, voxel_size, settings, depth_range)
    return rasterize_numba(projected, labels, height, width, settings)

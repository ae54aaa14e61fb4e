"""Occ2GS projection in numba: ``projection.project``'s float32 formulas, in the same order,
as compiled loops over the Gaussians, writing one packed record per Gaussian.

Why packed records: the depth sort and the tile kernel then move two cache lines per
Gaussian (``splat``: depth, offset, conic, 1 / cov_yy, 1 / cov_xx; ``pixel``: centre,
radius) instead of eight arrays. Every kernel here is a ``serial_and_parallel`` pair.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orv_engine.occupancy.numba_support import numba_available, serial_and_parallel
from orv_engine.occupancy.projection import ProjectedGaussians

# record layouts (columns of NumbaProjected.splat / .pixel)
SPLAT_DEPTH, SPLAT_OFFSET_U, SPLAT_OFFSET_V, SPLAT_CONIC = 0, 1, 2, 3  # conic: columns 3, 4, 5
SPLAT_ROW_FALL = 6  # 1 / cov_yy: the brightest cell of a row dy px off the centre has power -dy^2 / 2 x this
SPLAT_COL_FALL = 7  # 1 / cov_xx: the same for a column dx px off the centre
SPLAT_COLUMNS = 8  # 32 bytes: two records per cache line
PIXEL_COL, PIXEL_ROW, PIXEL_RADIUS = 0, 1, 2
PIXEL_COLUMNS = 4


@dataclass
class NumbaProjected:
    """Gaussians in view as packed numpy records, sorted front to back (``ProjectedGaussians`` twin).

    ``splat`` (G, 8) float32 holds depth, offset_u, offset_v, conic (a, b, c), 1 / cov_yy, 1 / cov_xx;
    ``pixel`` (G, 4) int32 holds the rounded centre column and row and the footprint radius.
    """

    index: np.ndarray  # (G,) int64 rows of the input means
    splat: np.ndarray  # (G, SPLAT_COLUMNS) float32
    pixel: np.ndarray  # (G, PIXEL_COLUMNS) int32

    # the columns under ProjectedGaussians' names (views, not copies)
    depth = property(lambda self: self.splat[:, SPLAT_DEPTH])
    offset_u = property(lambda self: self.splat[:, SPLAT_OFFSET_U])
    offset_v = property(lambda self: self.splat[:, SPLAT_OFFSET_V])
    conic = property(lambda self: self.splat[:, SPLAT_CONIC:SPLAT_CONIC + 3])
    center_col = property(lambda self: self.pixel[:, PIXEL_COL])
    center_row = property(lambda self: self.pixel[:, PIXEL_ROW])
    radius = property(lambda self: self.pixel[:, PIXEL_RADIUS])

    @classmethod
    def from_torch(cls, p: ProjectedGaussians) -> "NumbaProjected":
        as_np = lambda t: t.detach().cpu().numpy()  # noqa: E731
        num = p.index.numel()
        splat = np.zeros((num, SPLAT_COLUMNS), np.float32)
        splat[:, SPLAT_DEPTH] = as_np(p.depth)
        splat[:, SPLAT_OFFSET_U] = as_np(p.offset_u)
        splat[:, SPLAT_OFFSET_V] = as_np(p.offset_v)
        splat[:, SPLAT_CONIC:SPLAT_CONIC + 3] = as_np(p.conic)
        conic = as_np(p.conic).astype(np.float64)
        splat[:, SPLAT_ROW_FALL] = conic[:, 2] - conic[:, 1] ** 2 / conic[:, 0]
        splat[:, SPLAT_COL_FALL] = conic[:, 0] - conic[:, 1] ** 2 / conic[:, 2]
        pixel = np.zeros((num, PIXEL_COLUMNS), np.int32)
        pixel[:, PIXEL_COL] = as_np(p.center_col)
        pixel[:, PIXEL_ROW] = as_np(p.center_row)
        pixel[:, PIXEL_RADIUS] = as_np(p.radius)
        return cls(np.ascontiguousarray(as_np(p.index), np.int64), splat, pixel)


if numba_available():  # optional: without numba the torch renderer is used
    from numba import prange

    @serial_and_parallel
    def camera_pass(means, view, fx, fy, cx, cy, width, height, near):
        """Camera x, y, z and image u, v of every centre (the torch formulas, float32)."""
        n = means.shape[0]
        x = np.empty(n, np.float32)
        y = np.empty(n, np.float32)
        z = np.empty(n, np.float32)
        u = np.empty(n, np.float32)
        v = np.empty(n, np.float32)
        centre_in = np.empty(n, np.bool_)
        one = np.float32(1.0)
        lo = np.float32(-0.5)
        hi_u = np.float32(width - 0.5)
        hi_v = np.float32(height - 0.5)
        for i in prange(n):
            px, py, pz = means[i, 0], means[i, 1], means[i, 2]
            cxx = view[0, 3] + (px * view[0, 0] + py * view[0, 1] + pz * view[0, 2])
            cyy = view[1, 3] + (px * view[1, 0] + py * view[1, 1] + pz * view[1, 2])
            czz = view[2, 3] + (px * view[2, 0] + py * view[2, 1] + pz * view[2, 2])
            front = czz > near
            zs = czz if front else one
            uu = fx * cxx / zs + cx
            vv = fy * cyy / zs + cy
            x[i], y[i], z[i], u[i], v[i] = cxx, cyy, czz, uu, vv
            centre_in[i] = front and uu > lo and uu < hi_u and vv > lo and vv < hi_v
        return x, y, z, u, v, centre_in

    @serial_and_parallel
    def masked_range(z, mask, chunks):
        """(any, min z, max z) over ``mask``, in ``chunks`` runs combined (parallel ones under ``parallel=True``)."""
        n = z.shape[0]
        lows = np.full(chunks, np.inf)
        highs = np.full(chunks, -np.inf)
        for t in prange(chunks):
            z_min = np.inf
            z_max = -np.inf
            for i in range(t * n // chunks, (t + 1) * n // chunks):
                if mask[i]:
                    z_min = min(z_min, np.float64(z[i]))
                    z_max = max(z_max, np.float64(z[i]))
            lows[t] = z_min
            highs[t] = z_max
        z_min = lows.min()
        z_max = highs.max()
        found = z_min <= z_max
        if not found:
            z_min = 0.0
            z_max = 0.0
        return found, np.float32(z_min), np.float32(z_max)

    @serial_and_parallel
    def footprint_pass(x, y, z, u, v, fx, fy, width, height, near, z_min, span, k1, scale, dilation,
                        limit_x, limit_y):
        """Scale rule, EWA covariance, conic, radius, centre pixel and cull test of every Gaussian.

        Writes unsorted records (``splat``, ``pixel`` rows) and the keep flags."""
        n = z.shape[0]
        splat = np.empty((n, SPLAT_COLUMNS), np.float32)
        pixel = np.empty((n, PIXEL_COLUMNS), np.int32)
        keep = np.empty(n, np.bool_)
        one = np.float32(1.0)
        zero = np.float32(0.0)
        half = np.float32(0.5)
        three = np.float32(3.0)
        for i in prange(n):
            front = z[i] > near
            zs = z[i] if front else one
            if span > 0:
                zh = (zs - z_min) / span
                zh = one + min(max(zh, zero), one)
            else:
                zh = one
            sigma = scale * zh ** k1
            tx = min(max(x[i] / zs, -limit_x), limit_x)
            ty = min(max(y[i] / zs, -limit_y), limit_y)
            s2 = sigma / zs
            s2 = s2 * s2
            cxx = s2 * fx * fx * (one + tx * tx) + dilation
            cyy = s2 * fy * fy * (one + ty * ty) + dilation
            cxy = s2 * fx * fy * tx * ty
            r = np.int32(np.ceil(three * np.sqrt(max(cxx, cyy))))
            c = np.int32(np.floor(u[i] + half))
            rr = np.int32(np.floor(v[i] + half))
            det = cxx * cyy - cxy * cxy
            splat[i, SPLAT_DEPTH] = z[i]
            splat[i, SPLAT_OFFSET_U] = u[i] - np.float32(c)
            splat[i, SPLAT_OFFSET_V] = v[i] - np.float32(rr)
            splat[i, SPLAT_CONIC] = cyy / det
            splat[i, SPLAT_CONIC + 1] = -cxy / det
            splat[i, SPLAT_CONIC + 2] = cxx / det
            splat[i, SPLAT_ROW_FALL] = one / cyy  # = c - b^2 / a of the conic (Schur complement)
            splat[i, SPLAT_COL_FALL] = one / cxx  # = a - b^2 / c
            pixel[i, PIXEL_COL] = c
            pixel[i, PIXEL_ROW] = rr
            pixel[i, PIXEL_RADIUS] = r
            pixel[i, 3] = 0
            keep[i] = front and c + r >= 0 and c - r < width and rr + r >= 0 and rr - r < height
        return splat, pixel, keep

"""Occ2GS on the CPU, compiled with numba: the same model as ``render_occ2gs`` (torch) and
``render_dense`` (reference), an order of magnitude faster.

Same Gaussians and rules: projection as in ``projection.project`` (EWA, 0.3 px^2 dilation,
``ceil(3 sigma)`` footprint around the rounded centre, culling, stable front-to-back order),
per-pixel alpha ``min(alpha_max, opacity * exp(-d^2/2))`` with fragments under ``alpha_min``
skipped, front-to-back compositing, depth = sum(w z) / sum(w), semantics = argmax of the
composited one-hot labels (ties -> smallest label id, as ``torch.argmax``), background where
the accumulated alpha < ``background_alpha`` (depth 0, label -1).

How it works:

* projection, culling and scale rule in compiled loops (float32, the torch formulas in the
  same order); the depth sort is one ``np.sort`` of 64-bit keys (order-preserving bits of z
  high, the Gaussian's position low), which gives exactly the order of torch's stable
  argsort, also for Gaussians at equal depth;
* the image is cut into bands of ``BAND_ROWS`` rows; each Gaussian is binned (in depth order)
  into the bands its footprint touches, and ``prange`` runs one loop per numba thread, thread
  t taking bands t, t + T, t + 2T, ... (interleaved, so the busy part of the image is
  shared); a band is owned by one thread at a time, so there are no write races;
* a band splats its Gaussians front to back into per-pixel accumulators (transmittance,
  sum w, sum w z, per-label weight, running argmax) held in per-thread scratch that stays in
  cache; as in diff-gaussian-rasterization, a pixel stops taking fragments once its
  transmittance is below ``EARLY_STOP_T`` (1e-4), and a band stops when all its pixels have.
  The fragment that crosses the threshold is still composited (3DGS drops it), so what is
  left out is at most ``T < 1e-4`` of the pixel's weight: alpha differs from the exhaustive
  torch renderer by < 1e-4, depth by < 1e-4 x the depth spread behind the surface, and the
  label (and the valid flag) only at near-ties;
* cells whose power is clearly below ``log(alpha_min / opacity)`` skip the ``exp``.

The running argmax is exact: per-label weights only grow, so after adding ``w`` to label
``l`` the argmax is either the previous winner or ``l`` (ties -> smaller id, like a final
``argmax``). The per-label weights of a band are a ``(L, band pixels)`` float32 array kept
zero between bands: each pixel records the labels it touched in a 64-bit mask and clears only
those (with more than 64 labels in view the band's planes are cleared whole).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from orv_engine.occupancy.projection import ProjectedGaussians, SplatSettings
from orv_engine.occupancy.render_occ2gs import BACKGROUND_LABEL, RenderedView, empty_view

try:  # optional: the torch renderer is the fallback
    import numba
    from numba import njit, prange

    NUMBA_IMPORT_ERROR: Exception | None = None
except ImportError as error:  # pragma: no cover - exercised only without numba
    numba = None
    NUMBA_IMPORT_ERROR = error

BAND_ROWS = 8  # rows per parallel work unit
EARLY_STOP_T = 1e-4  # diff-gaussian-rasterization's transmittance cut-off
MAX_DIRECT_LABEL = 1 << 20  # labels in [0, this) are compacted with a table, others with np.unique


def numba_available() -> bool:
    return numba is not None


@dataclass
class NumbaProjected:
    """Gaussians in view as numpy arrays, sorted front to back (``ProjectedGaussians`` twin)."""

    index: np.ndarray  # (G,) int64 rows of the input means
    depth: np.ndarray  # (G,) float32
    center_col: np.ndarray  # (G,) int32
    center_row: np.ndarray  # (G,) int32
    offset_u: np.ndarray  # (G,) float32
    offset_v: np.ndarray  # (G,) float32
    conic: np.ndarray  # (G, 3) float32
    radius: np.ndarray  # (G,) int32

    @classmethod
    def from_torch(cls, p: ProjectedGaussians) -> "NumbaProjected":
        as_np = lambda t, dtype: np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)  # noqa: E731
        return cls(as_np(p.index, np.int64), as_np(p.depth, np.float32), as_np(p.center_col, np.int32),
                   as_np(p.center_row, np.int32), as_np(p.offset_u, np.float32), as_np(p.offset_v, np.float32),
                   as_np(p.conic, np.float32), as_np(p.radius, np.int32))


def require_numba():
    if numba is None:
        raise RuntimeError(f"backend 'numba' needs the numba package ({NUMBA_IMPORT_ERROR}); "
                           "pip install numba, or use backend='torch'")


if numba is not None:

    @njit(cache=True)
    def _camera_pass(means, view, fx, fy, cx, cy, width, height, near):
        """Camera x, y, z and image u, v of every centre (the torch formulas, float32)."""
        n = means.shape[0]
        x = np.empty(n, np.float32)
        y = np.empty(n, np.float32)
        z = np.empty(n, np.float32)
        u = np.empty(n, np.float32)
        v = np.empty(n, np.float32)
        centre_in = np.zeros(n, np.bool_)
        one = np.float32(1.0)
        lo = np.float32(-0.5)
        hi_u = np.float32(width - 0.5)
        hi_v = np.float32(height - 0.5)
        for i in range(n):
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

    @njit(cache=True)
    def _masked_range(z, mask):
        found = False
        z_min = np.float32(0.0)
        z_max = np.float32(0.0)
        for i in range(z.shape[0]):
            if mask[i]:
                if not found:
                    z_min = z[i]
                    z_max = z[i]
                    found = True
                else:
                    z_min = min(z_min, z[i])
                    z_max = max(z_max, z[i])
        return found, z_min, z_max

    @njit(cache=True)
    def _footprint_pass(x, y, z, u, v, fx, fy, width, height, near, z_min, span, k1, scale, dilation,
                        limit_x, limit_y):
        """Scale rule, EWA covariance, radius, centre pixel and the cull test of every Gaussian."""
        n = z.shape[0]
        cov = np.empty((n, 3), np.float32)
        radius = np.empty(n, np.int32)
        col = np.empty(n, np.int32)
        row = np.empty(n, np.int32)
        keep = np.zeros(n, np.bool_)
        one = np.float32(1.0)
        zero = np.float32(0.0)
        half = np.float32(0.5)
        three = np.float32(3.0)
        for i in range(n):
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
            cov[i, 0], cov[i, 1], cov[i, 2] = cxx, cxy, cyy
            radius[i], col[i], row[i] = r, c, rr
            keep[i] = front and c + r >= 0 and c - r < width and rr + r >= 0 and rr - r < height
        return cov, radius, col, row, keep

    @njit(cache=True)
    def _sort_keys(z, index):
        """64-bit keys: order-preserving bits of z (high), position in ``index`` (low)."""
        m = index.shape[0]
        keys = np.empty(m, np.uint64)
        bits = z.view(np.uint32)
        for j in range(m):
            b = np.uint64(bits[index[j]])
            if b & np.uint64(0x80000000):
                b = b ^ np.uint64(0xFFFFFFFF)  # negative: reverse
            else:
                b = b | np.uint64(0x80000000)
            keys[j] = (b << np.uint64(32)) | np.uint64(j)
        return keys

    @njit(cache=True)
    def _gather(order, u, v, z, cov, radius, col, row):
        g = order.shape[0]
        depth = np.empty(g, np.float32)
        ccol = np.empty(g, np.int32)
        crow = np.empty(g, np.int32)
        off_u = np.empty(g, np.float32)
        off_v = np.empty(g, np.float32)
        conic = np.empty((g, 3), np.float32)
        rad = np.empty(g, np.int32)
        for j in range(g):
            i = order[j]
            depth[j] = z[i]
            ccol[j], crow[j], rad[j] = col[i], row[i], radius[i]
            off_u[j] = u[i] - np.float32(col[i])
            off_v[j] = v[i] - np.float32(row[i])
            cxx, cxy, cyy = cov[i, 0], cov[i, 1], cov[i, 2]
            det = cxx * cyy - cxy * cxy
            conic[j, 0] = cyy / det
            conic[j, 1] = -cxy / det
            conic[j, 2] = cxx / det
        return depth, ccol, crow, off_u, off_v, conic, rad

    @njit(cache=True)
    def _compact_labels(labels, max_label):
        """Compact ids (order-preserving) of non-negative labels below ``max_label``."""
        seen = np.zeros(max_label + 1, np.int32)
        for i in range(labels.shape[0]):
            seen[labels[i]] = 1
        count = 0
        for k in range(max_label + 1):
            if seen[k]:
                seen[k] = count + 1
                count += 1
        present = np.empty(count, np.int64)
        for k in range(max_label + 1):
            if seen[k]:
                present[seen[k] - 1] = k
        compact = np.empty(labels.shape[0], np.int32)
        for i in range(labels.shape[0]):
            compact[i] = seen[labels[i]] - 1
        return present, compact

    @njit(cache=True)
    def _bin_bands(crow, radius, height, band_rows):
        """Per band, the Gaussians whose footprint rows meet it, in depth order (CSR)."""
        num_bands = (height + band_rows - 1) // band_rows
        g = crow.shape[0]
        counts = np.zeros(num_bands + 1, np.int64)
        for j in range(g):
            lo = max(crow[j] - radius[j], 0) // band_rows
            hi = min(crow[j] + radius[j], height - 1) // band_rows
            for b in range(lo, hi + 1):
                counts[b + 1] += 1
        for b in range(num_bands):
            counts[b + 1] += counts[b]
        fill = counts[:-1].copy()
        items = np.empty(counts[num_bands], np.int32)
        for j in range(g):
            lo = max(crow[j] - radius[j], 0) // band_rows
            hi = min(crow[j] + radius[j], height - 1) // band_rows
            for b in range(lo, hi + 1):
                items[fill[b]] = j
                fill[b] += 1
        return counts, items

    @njit(cache=True)
    def _splat_band(row_lo, row_hi, first, last, items, depth, ccol, crow, off_u, off_v, conic, radius,
                    compact, width, opacity, alpha_max, alpha_min, stop_t, power_cut, trans, acc, depth_sum,
                    votes, best, best_label, touched):
        """Composite the Gaussians ``items[first:last]`` (depth order) into rows [row_lo, row_hi)."""
        zero = np.float32(0.0)
        one = np.float32(1.0)
        minus_half = np.float32(-0.5)
        n_here = (row_hi - row_lo) * width
        for q in range(n_here):
            trans[q] = one
            acc[q] = zero
            depth_sum[q] = zero
            best[q] = zero
            best_label[q] = -1
            touched[q] = np.uint64(0)
        remaining = n_here  # pixels still taking fragments
        for k in range(first, last):
            j = items[k]
            r = radius[j]
            cc = ccol[j]
            cr = crow[j]
            y0 = max(cr - r, row_lo)
            y1 = min(cr + r, row_hi - 1)
            x0 = max(cc - r, 0)
            x1 = min(cc + r, width - 1)
            ou = off_u[j]
            ov = off_v[j]
            ca = conic[j, 0]
            cb = conic[j, 1]
            cc2 = conic[j, 2]
            zj = depth[j]
            lab = compact[j]
            bit = np.uint64(1) << np.uint64(lab & 63)
            for yy in range(y0, y1 + 1):
                dy = np.float32(yy - cr) - ov
                base = (yy - row_lo) * width
                for xx in range(x0, x1 + 1):
                    q = base + xx
                    tq = trans[q]
                    if tq < stop_t:
                        continue
                    dx = np.float32(xx - cc) - ou
                    power = (ca * dx * dx + cc2 * dy * dy) * minus_half - cb * dx * dy
                    if power < power_cut:
                        continue
                    alpha = min(np.exp(power) * opacity, alpha_max)
                    if alpha < alpha_min:
                        continue
                    w = alpha * tq
                    acc[q] += w
                    depth_sum[q] += w * zj
                    vote = votes[lab, q] + w
                    votes[lab, q] = vote
                    if vote > best[q] or (vote == best[q] and lab < best_label[q]):
                        best[q] = vote
                        best_label[q] = lab
                    touched[q] |= bit
                    tq = tq * (one - alpha)
                    trans[q] = tq
                    if tq < stop_t:
                        remaining -= 1
            if remaining == 0:
                break

    @njit(cache=True)
    def _finish_band(row_lo, row_hi, width, background_alpha, present, use_mask, acc, depth_sum, votes,
                     best_label, touched, alpha_img, depth_img, label_img):
        """Write the band's pixels and clear the label weights it used."""
        zero = np.float32(0.0)
        n_here = (row_hi - row_lo) * width
        p0 = row_lo * width
        for q in range(n_here):
            a = acc[q]
            alpha_img[p0 + q] = a
            if a >= background_alpha:
                depth_img[p0 + q] = depth_sum[q] / a
                label_img[p0 + q] = present[best_label[q]]
            else:
                depth_img[p0 + q] = zero
                label_img[p0 + q] = BACKGROUND_LABEL
            if use_mask:
                m = touched[q]
                plane = 0
                while m != np.uint64(0):
                    if m & np.uint64(1):
                        votes[plane, q] = zero
                    m = m >> np.uint64(1)
                    plane += 1
        if not use_mask:
            votes[:, :] = zero

    @njit(cache=True, parallel=True)
    def _composite_bands(starts, items, depth, ccol, crow, off_u, off_v, conic, radius, compact, present,
                         height, width, band_rows, num_threads, opacity, alpha_max, alpha_min, stop_t,
                         background_alpha, use_mask):
        """Front-to-back splatting of every band; returns alpha, depth and label images."""
        npix = height * width
        num_labels = present.shape[0]
        num_bands = (height + band_rows - 1) // band_rows
        band_pix = band_rows * width
        alpha_img = np.empty(npix, np.float32)
        depth_img = np.empty(npix, np.float32)
        label_img = np.empty(npix, np.int64)
        # below this power, exp(power) * opacity < alpha_min for sure (1% margin): no exp needed
        power_cut = np.float32(np.log(np.float64(alpha_min) / np.float64(opacity)) - 0.01)
        for t in prange(num_threads):
            # per-thread scratch for one band at a time (stays in cache); votes kept zero
            votes = np.zeros((num_labels, band_pix), np.float32)
            trans = np.empty(band_pix, np.float32)
            acc = np.empty(band_pix, np.float32)
            depth_sum = np.empty(band_pix, np.float32)
            best = np.empty(band_pix, np.float32)
            best_label = np.empty(band_pix, np.int32)
            touched = np.empty(band_pix, np.uint64)
            for band in range(t, num_bands, num_threads):
                row_lo = band * band_rows
                row_hi = min(row_lo + band_rows, height)
                _splat_band(row_lo, row_hi, starts[band], starts[band + 1], items, depth, ccol, crow, off_u,
                            off_v, conic, radius, compact, width, opacity, alpha_max, alpha_min, stop_t, power_cut,
                            trans, acc, depth_sum, votes, best, best_label, touched)
                _finish_band(row_lo, row_hi, width, background_alpha, present, use_mask, acc, depth_sum, votes,
                             best_label, touched, alpha_img, depth_img, label_img)
        return alpha_img, depth_img, label_img


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
    _, _, z, _, _, inside = _camera_pass(means, view, K[0, 0], K[1, 1], K[0, 2], K[1, 2], width, height,
                                         np.float32(near))
    found, z_min, z_max = _masked_range(z, inside)
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
    x, y, z, u, v, centre_in = _camera_pass(means, view, fx, fy, cx, cy, width, height, near)
    if depth_range is None:
        found, z_min, z_max = _masked_range(z, centre_in)
        depth_range = (float(z_min), float(z_max)) if found else (1.0, 1.0)
    z_min, z_max = depth_range
    rule = settings.scale_rule
    scale = f32(rule.k2 * (voxel_size / rule.reference_voxel_size))
    limit_x = f32(1.3) * (f32(0.5 * width) / fx)
    limit_y = f32(1.3) * (f32(0.5 * height) / fy)
    cov, radius, col, row, keep = _footprint_pass(
        x, y, z, u, v, fx, fy, width, height, near, f32(z_min), f32(z_max - z_min), f32(rule.k1), scale,
        f32(settings.dilation), limit_x, limit_y)
    index = np.flatnonzero(keep)
    keys = np.sort(_sort_keys(z, index))
    order = index[(keys & np.uint64(0xFFFFFFFF)).astype(np.int64)]
    depth, ccol, crow, off_u, off_v, conic, rad = _gather(order, u, v, z, cov, radius, col, row)
    return NumbaProjected(order.astype(np.int64), depth, ccol, crow, off_u, off_v, conic, rad)


def _compact(labels: np.ndarray):
    if labels.size and labels.min() >= 0 and labels.max() < MAX_DIRECT_LABEL:
        return _compact_labels(labels, int(labels.max()))
    present, compact = np.unique(labels, return_inverse=True)
    return present.astype(np.int64), compact.astype(np.int32).reshape(-1)


def rasterize_numba(projected: NumbaProjected | ProjectedGaussians, labels, height: int, width: int,
                    settings: SplatSettings, band_rows: int = BAND_ROWS) -> RenderedView:
    """Render projected Gaussians (numpy or torch ``ProjectedGaussians``); ``labels`` (N,) of all inputs."""
    require_numba()
    p = projected if isinstance(projected, NumbaProjected) else NumbaProjected.from_torch(projected)
    if p.index.size == 0:
        return empty_view(height, width)
    labels = _as_numpy(labels, np.int64)
    present, compact = _compact(labels[p.index])
    starts, items = _bin_bands(p.center_row, p.radius, height, band_rows)
    f32 = np.float32
    alpha, depth, semantics = _composite_bands(
        starts, items, p.depth, p.center_col, p.center_row, p.offset_u, p.offset_v, p.conic, p.radius,
        compact, present, height, width, band_rows, numba.get_num_threads(),
        f32(settings.opacity), f32(settings.alpha_max), f32(settings.alpha_min), f32(EARLY_STOP_T),
        f32(settings.background_alpha), present.size <= 64)
    return RenderedView(torch.from_numpy(depth.reshape(height, width)),
                        torch.from_numpy(semantics.reshape(height, width)),
                        torch.from_numpy(alpha.reshape(height, width)))


def render_numba(means, labels, K, cam_to_world, height: int, width: int, voxel_size: float,
                 settings: SplatSettings, depth_range: tuple[float, float] | None = None) -> RenderedView:
    """Project and rasterize in numba (the whole per-frame pipeline of the ``numba`` backend)."""
    projected = project_numba(means, K, cam_to_world, height, width, voxel_size, settings, depth_range)
    return rasterize_numba(projected, labels, height, width, settings)

"""Occ2GS on the CPU, compiled with numba: the same model as ``render_occ2gs`` (torch) and
``render_dense`` (reference), two orders of magnitude faster than the torch renderer.

Same Gaussians and rules: projection as in ``projection.project`` (EWA, 0.3 px^2 dilation,
``ceil(3 sigma)`` footprint around the rounded centre, culling, stable front-to-back order),
per-pixel alpha ``min(alpha_max, opacity * exp(-d^2/2))`` with fragments under ``alpha_min``
skipped, front-to-back compositing, depth = sum(w z) / sum(w), semantics = argmax of the
composited one-hot labels (ties -> smallest label id, as ``torch.argmax``), background where
the accumulated alpha < ``background_alpha`` (depth 0, label -1).

Numba rather than a library: no maintained package rasterizes Gaussians on the CPU (gsplat
and diff-gaussian-rasterization are CUDA only), and the per-pixel early stop below is a
data-dependent loop that vectorised torch cannot express.

How it works (the tile renderer of 3DGS, on CPU threads):

* projection and binning in compiled float32 loops (the torch formulas in the same order),
  each compiled twice (``serial_and_parallel``): with more than one numba thread the
  ``prange`` build runs (the binning in per-thread runs), with one thread the serial one.
  On 2 idle cores that takes the projection of 100K Gaussians from ~12 to ~8 ms. On a
  machine whose cores are busy with other work every parallel region waits for a time
  slice of each of its threads, so there ``numba.set_num_threads(1)`` (or
  ``NUMBA_NUM_THREADS=1``) is faster (measured with the parallel projection under a
  neighbour's load: 45 -> 99 ms a frame). Each kept Gaussian becomes one packed record
  (``splat``: depth, offset, conic, 1 / cov_yy, 1 / cov_xx; ``pixel``: centre, radius),
  so sorting moves two cache lines per Gaussian instead of eight arrays;
* the depth sort is a stable LSD radix sort of the order-preserving bits of z (passes whose
  digit is the same for every Gaussian are skipped), which gives exactly the order of
  torch's stable argsort, also for Gaussians at equal depth;
* the image is cut into ``TILE_W`` x ``TILE_H`` tiles; a counting sort bins every
  Gaussian (in depth order) into the tiles its footprint box touches (each thread bins a
  contiguous run of Gaussians; a tile's list is the threads' runs in order, so it stays in
  depth order); ``prange`` runs one loop per numba thread, thread t taking tiles t, t + T,
  t + 2T, ... (interleaved, so the busy part of the image is shared); a tile is owned by
  one thread, so there are no write races;
* a tile splats its Gaussians front to back into per-pixel accumulators (transmittance,
  sum w, sum w z, running best label weight and label, per-label weight) held in
  per-thread scratch that stays in L1/L2. The planes store a tile as two 8-pixel-wide
  vertical strips (``STRIP_W``), each row-major, so the footprint rows of a Gaussian in one
  strip are contiguous: per strip its box meets, one branch-free pass over those cells
  (8 per row = one AVX2 register), which the compiler vectorises (two thirds of the
  (Gaussian, tile) pairs meet one strip only, so this halves their work against 16-wide
  rows): cells outside the box, under ``alpha_min`` or already saturated
  get alpha 0, which leaves every accumulator bit-identical. Every lane is float32 (cell
  rows and columns come from small tables, the stop count is a float32 sum): a 64-bit
  index or counter in the loop makes LLVM halve the vector width (measured: 4 lanes instead
  of 8 on AVX2). Rows that no cell of the footprint can reach above ``alpha_min`` (the
  brightest cell of a row dy px off the centre has power -dy^2 / 2 x 1 / cov_yy; 1% margin),
  likewise columns, and rows already saturated at the tile's top and bottom are cut before
  the pass. The record of the pair 4 ahead is prefetched (``llvm.prefetch``): a tile's
  Gaussians lie scattered over the depth-sorted records, so each read would miss the cache.
  ``exp`` is a degree-5 polynomial of ``x / 16`` raised to the 16th power
  (relative error < 3e-6 on [-8, 0]; numba cannot vectorise ``np.exp`` without Intel's
  SVML), so alpha differs from the torch renderer's by < 3e-6; whether a cell passes
  ``alpha_min`` is decided on its power against the float32 ``exp`` boundary
  (``_power_threshold``), not on the polynomial. The best label weight is stored as
  ``max(vote, best)`` (equal to the select, a label's weight only grows). This loop alone is compiled with
  ``fastmath`` (FMA contraction, reassociation: ~15% faster, 1-ulp differences);
* early termination, as in diff-gaussian-rasterization: a pixel stops taking fragments once
  its transmittance is below ``EARLY_STOP_T`` (1e-4), a tile row once all its pixels have
  (checked only after a pass that stopped a pixel), and a tile once all its rows have. The
  fragment that crosses the threshold is still composited (3DGS drops it), so what is
  left out is at most ``T < 1e-4`` of the pixel's weight: alpha differs from the
  exhaustive torch renderer by < 1e-4, depth by < 1e-4 x the
  depth spread behind the surface, and the label (and the valid flag) only at near-ties.
  (Rarely, a fragment sits on the ``alpha_min`` boundary and 1-ulp differences between the
  float32 projections decide it differently: that pixel's alpha moves by up to
  ``alpha_min * T``; measured 2.7e-3 at one pixel of the 10K benchmark scene, for this and
  the previous band kernel alike.)

The running argmax is exact: per-label weights only grow, so after adding ``w`` to label
``l`` the argmax is either the previous winner or ``l`` (ties -> smaller id, like a final
``argmax``). The per-label weights of a tile are a ``(L, tile pixels)`` float32 array kept
zero between tiles: a tile records the labels it used in a 64-bit mask and clears only those
planes (with more than 64 labels in view all planes are cleared).

The compiled functions are cached on disk (``cache=True``): numba writes them to the
``__pycache__`` next to this file (git-ignored), or, where that is read-only, to its user
cache directory; ``NUMBA_CACHE_DIR`` overrides both.
"""

from __future__ import annotations

import types
from dataclasses import dataclass

import numpy as np
import torch

from orv_engine.occupancy.projection import ProjectedGaussians, SplatSettings
from orv_engine.occupancy.render_occ2gs import BACKGROUND_LABEL, RenderedView, empty_view

try:  # optional: the torch renderer is the fallback
    import numba
    from llvmlite import ir as llvm_ir
    from numba import njit, prange
    from numba.core import cgutils
    from numba.extending import intrinsic

    NUMBA_IMPORT_ERROR: Exception | None = None
except ImportError as error:  # pragma: no cover - exercised only without numba
    numba = None
    NUMBA_IMPORT_ERROR = error

TILE_W = 16  # tile width in pixels = lanes of one vectorised row pass
TILE_H = 16  # tile height in pixels; a tile (the parallel work unit) and its scratch fit in L1/L2
PREFETCH_AHEAD = 4  # the kernel prefetches the record of the (Gaussian, tile) pair this far ahead
EARLY_STOP_T = 1e-4  # diff-gaussian-rasterization's transmittance cut-off
MAX_DIRECT_LABEL = 1 << 20  # labels in [0, this) are compacted with a table, others with np.unique
RADIX_BITS = 11  # digit of the depth radix sort: 3 passes over 32-bit keys
EXP_DOMAIN_MIN = -8.0  # the kernel's polynomial exp clamps its argument to [this, 0]

# record layouts (columns of NumbaProjected.splat / .pixel)
SPLAT_DEPTH, SPLAT_OFFSET_U, SPLAT_OFFSET_V, SPLAT_CONIC = 0, 1, 2, 3  # conic: columns 3, 4, 5
SPLAT_ROW_FALL = 6  # 1 / cov_yy: the brightest cell of a row dy px off the centre has power -dy^2 / 2 x this
SPLAT_COL_FALL = 7  # 1 / cov_xx: the same for a column dx px off the centre
SPLAT_COLUMNS = 8  # 32 bytes: two records per cache line
PIXEL_COL, PIXEL_ROW, PIXEL_RADIUS = 0, 1, 2
PIXEL_COLUMNS = 4
# per-pixel compositing state of a tile: one flat float32 buffer of planes at constant offsets
# (so the compiler sees the planes cannot overlap and vectorises a tile row without checks)
TILE_PIXELS = TILE_W * TILE_H
TRANS, ACC, DEPTH_SUM, BEST, BEST_LABEL = (plane * TILE_PIXELS for plane in range(5))
U_TRANS, U_ACC, U_DEPTH_SUM, U_BEST, U_BEST_LABEL = (np.uint64(offset) for offset in
                                                   (TRANS, ACC, DEPTH_SUM, BEST, BEST_LABEL))
STATE_PLANES = 5
STRIP_W = 8  # a tile's cells are stored as TILE_W // STRIP_W vertical strips, each row-major
STRIP_CELLS = STRIP_W * TILE_H
CELL_COL = np.concatenate([np.tile(np.arange(h * STRIP_W, (h + 1) * STRIP_W, dtype=np.float32), TILE_H)
                           for h in range(TILE_W // STRIP_W)])  # column of each stored cell of a tile
CELL_ROW = np.tile(np.repeat(np.arange(TILE_H, dtype=np.float32), STRIP_W), TILE_W // STRIP_W)  # its row


def numba_available() -> bool:
    return numba is not None


@dataclass
class NumbaProjected:
    """Gaussians in view as packed numpy records, sorted front to back (``ProjectedGaussians`` twin).

    ``splat`` (G, 8) float32 holds depth, offset_u, offset_v, conic (a, b, c), 1 / cov_yy, 1 / cov_xx;
    ``pixel`` (G, 4) int32 holds the rounded centre column and row and the footprint radius.
    """

    index: np.ndarray  # (G,) int64 rows of the input means
    splat: np.ndarray  # (G, SPLAT_COLUMNS) float32
    pixel: np.ndarray  # (G, PIXEL_COLUMNS) int32

    @property
    def depth(self) -> np.ndarray:
        return self.splat[:, SPLAT_DEPTH]

    @property
    def offset_u(self) -> np.ndarray:
        return self.splat[:, SPLAT_OFFSET_U]

    @property
    def offset_v(self) -> np.ndarray:
        return self.splat[:, SPLAT_OFFSET_V]

    @property
    def conic(self) -> np.ndarray:
        return self.splat[:, SPLAT_CONIC:SPLAT_CONIC + 3]

    @property
    def center_col(self) -> np.ndarray:
        return self.pixel[:, PIXEL_COL]

    @property
    def center_row(self) -> np.ndarray:
        return self.pixel[:, PIXEL_ROW]

    @property
    def radius(self) -> np.ndarray:
        return self.pixel[:, PIXEL_RADIUS]

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


def require_numba():
    if numba is None:
        raise RuntimeError(f"backend 'numba' needs the numba package ({NUMBA_IMPORT_ERROR}); "
                           "pip install numba, or use backend='torch'")


def serial_and_parallel(function):
    """Compile ``function`` twice: serially (``prange`` runs as ``range``) and with ``parallel=True``.

    Returns the serial dispatcher with the parallel one as its ``.parallel`` attribute; callers
    pick by ``numba.get_num_threads()`` (see ``_variant``). The parallel copy gets its own
    qualified name, so numba's on-disk cache keeps the two apart."""
    twin = types.FunctionType(function.__code__, function.__globals__, function.__name__ + "_parallel",
                              function.__defaults__, function.__closure__)
    twin.__qualname__ = function.__qualname__ + "_parallel"
    serial = njit(cache=True)(function)
    serial.parallel = njit(cache=True, parallel=True)(twin)
    return serial


def _variant(kernel):
    """The parallel build of a ``serial_and_parallel`` kernel when numba may use more than one thread."""
    return kernel.parallel if numba.get_num_threads() > 1 else kernel


if numba is not None:

    @intrinsic
    def _prefetch(typingctx, array, index):
        """Hint the CPU to fetch the cache line of ``array[index]`` (``llvm.prefetch``: read, all cache levels).

        The kernel reads one record per (Gaussian, tile) pair, and a tile's Gaussians lie
        scattered over the depth-sorted records, so each read would miss the cache; fetching
        a few pairs ahead hides that latency. Numba has no prefetch of its own."""
        def codegen(context, builder, signature, args):
            array_type = signature.args[0]
            data = context.make_array(array_type)(context, builder, args[0])
            pointer = cgutils.get_item_pointer(context, builder, array_type, data, [args[1]], wraparound=False)
            byte_pointer = llvm_ir.IntType(8).as_pointer()
            i32 = llvm_ir.IntType(32)
            prefetch = cgutils.get_or_insert_function(
                builder.module, llvm_ir.FunctionType(llvm_ir.VoidType(), [byte_pointer, i32, i32, i32]),
                "llvm.prefetch.p0i8")
            builder.call(prefetch, [builder.bitcast(pointer, byte_pointer), i32(0), i32(3), i32(1)])
            return context.get_dummy_value()

        return numba.types.void(array, index), codegen

    @serial_and_parallel
    def _camera_pass(means, view, fx, fy, cx, cy, width, height, near):
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
    def _masked_range(z, mask, chunks):
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
    def _footprint_pass(x, y, z, u, v, fx, fy, width, height, near, z_min, span, k1, scale, dilation,
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

    @serial_and_parallel
    def _depth_order(z, index, chunks):
        """Stable front-to-back order of ``z[index]`` (positions into ``index``), by LSD radix sort.

        The key is the float's bit pattern made order-preserving (negative values reversed);
        equal keys keep their input order, as torch's stable argsort does. Each pass counts and
        places ``chunks`` contiguous runs of keys separately (in parallel under the ``prange``
        build); a digit's slots take the runs in order, so every pass stays stable."""
        m = index.shape[0]
        bits = z.view(np.uint32)
        keys = np.empty(m, np.uint32)
        for j in prange(m):
            b = bits[index[j]]
            if b & np.uint32(0x80000000):
                keys[j] = b ^ np.uint32(0xFFFFFFFF)
            else:
                keys[j] = b | np.uint32(0x80000000)
        order = np.arange(m).astype(np.int32)
        keys_out = np.empty(m, np.uint32)
        order_out = np.empty(m, np.int32)
        buckets = 1 << RADIX_BITS
        mask = np.uint32(buckets - 1)
        counts = np.empty((chunks, buckets), np.int64)
        for shift in range(0, 32, RADIX_BITS):
            s = np.uint32(shift)
            for t in prange(chunks):
                counts[t, :] = 0
                for j in range(t * m // chunks, (t + 1) * m // chunks):
                    counts[t, (keys[j] >> s) & mask] += 1
            if m == 0 or counts[:, (keys[0] >> s) & mask].sum() == m:
                continue  # one digit for all: this pass keeps the order
            total = 0
            for d in range(buckets):  # counts -> first slot of each (run, digit)
                for t in range(chunks):
                    count = counts[t, d]
                    counts[t, d] = total
                    total += count
            for t in prange(chunks):
                for j in range(t * m // chunks, (t + 1) * m // chunks):
                    d = (keys[j] >> s) & mask
                    pos = counts[t, d]
                    counts[t, d] = pos + 1
                    keys_out[pos] = keys[j]
                    order_out[pos] = order[j]
            keys, keys_out = keys_out, keys
            order, order_out = order_out, order
        return order

    @serial_and_parallel
    def _gather_records(order, index, splat_all, pixel_all):
        """Records of the kept Gaussians in depth order, and their input rows."""
        g = order.shape[0]
        rows = np.empty(g, np.int64)
        splat = np.empty((g, SPLAT_COLUMNS), np.float32)
        pixel = np.empty((g, PIXEL_COLUMNS), np.int32)
        for j in prange(g):
            i = index[order[j]]
            rows[j] = i
            for c in range(SPLAT_COLUMNS):
                splat[j, c] = splat_all[i, c]
            for c in range(PIXEL_COLUMNS):
                pixel[j, c] = pixel_all[i, c]
        return rows, splat, pixel

    @njit(cache=True)
    def _compact_labels(labels, rows, max_label):
        """Compact ids (order-preserving) of ``labels[rows]``, all in ``[0, max_label]``."""
        seen = np.zeros(max_label + 1, np.int32)
        for j in range(rows.shape[0]):
            seen[labels[rows[j]]] = 1
        count = 0
        for k in range(max_label + 1):
            if seen[k]:
                seen[k] = count + 1
                count += 1
        present = np.empty(count, np.int64)
        for k in range(max_label + 1):
            if seen[k]:
                present[seen[k] - 1] = k
        compact = np.empty(rows.shape[0], np.int32)
        for j in range(rows.shape[0]):
            compact[j] = seen[labels[rows[j]]] - 1
        return present, compact

    @serial_and_parallel
    def _bin_tiles(pixel, height, width, chunks):
        """Per tile, the Gaussians whose footprint box meets it, in depth order (CSR).

        A parallel counting sort: each thread counts, then places, the (tile, Gaussian) pairs
        of its own contiguous run of Gaussians; within a tile the runs are laid out in thread
        order, so every tile's list stays in depth order."""
        tiles_x = (width + TILE_W - 1) // TILE_W
        num_tiles = tiles_x * ((height + TILE_H - 1) // TILE_H)
        g = pixel.shape[0]
        counts = np.zeros((chunks, num_tiles), np.int64)
        for t in prange(chunks):
            for j in range(t * g // chunks, (t + 1) * g // chunks):
                c, r, rad = pixel[j, PIXEL_COL], pixel[j, PIXEL_ROW], pixel[j, PIXEL_RADIUS]
                tx0 = max(c - rad, 0) // TILE_W
                tx1 = min(c + rad, width - 1) // TILE_W
                for ty in range(max(r - rad, 0) // TILE_H, min(r + rad, height - 1) // TILE_H + 1):
                    for tx in range(tx0, tx1 + 1):
                        counts[t, ty * tiles_x + tx] += 1
        starts = np.empty(num_tiles + 1, np.int64)
        fill = np.empty((chunks, num_tiles), np.int64)
        total = 0
        for tile in range(num_tiles):
            starts[tile] = total
            for t in range(chunks):
                fill[t, tile] = total
                total += counts[t, tile]
        starts[num_tiles] = total
        items = np.empty(total, np.int32)
        for t in prange(chunks):
            for j in range(t * g // chunks, (t + 1) * g // chunks):
                c, r, rad = pixel[j, PIXEL_COL], pixel[j, PIXEL_ROW], pixel[j, PIXEL_RADIUS]
                tx0 = max(c - rad, 0) // TILE_W
                tx1 = min(c + rad, width - 1) // TILE_W
                for ty in range(max(r - rad, 0) // TILE_H, min(r + rad, height - 1) // TILE_H + 1):
                    for tx in range(tx0, tx1 + 1):
                        tile = ty * tiles_x + tx
                        items[fill[t, tile]] = j
                        fill[t, tile] += 1
        return starts, items

    @njit(cache=True, inline="always")
    def _cell(row, col):
        """Position of a tile's cell (row, col) in the strip layout of the per-pixel planes."""
        return (col // STRIP_W) * STRIP_CELLS + row * STRIP_W + col % STRIP_W

    @njit(cache=True, inline="always", fastmath=True)
    def _exp_nonpositive(x):
        """exp(x) for x in [-8, 0] (clamped) in float32, relative error < 3e-6, without a libm call.

        Degree-5 polynomial fit of exp(x / 16), then squared four times: plain arithmetic,
        so a tile row of these vectorises (numba cannot vectorise ``np.exp`` without SVML)."""
        y = min(max(x, np.float32(-8.0)), np.float32(0.0)) * np.float32(0.0625)
        p = np.float32(0.006473124492913485)  # fit to exp on [-0.5, 0] (relative error weighted)
        p = p * y + np.float32(0.040642447769641876)
        p = p * y + np.float32(0.16639898717403412)
        p = p * y + np.float32(0.4999677836894989)
        p = p * y + np.float32(0.9999985694885254)
        p = p * y + np.float32(1.0)
        p = p * p
        p = p * p
        p = p * p
        return p * p

    @njit(cache=True, fastmath=True, error_model="numpy")  # numpy errors: no zero-division branches
    def _splat_tile(col_lo, row_lo, tile_w, tile_h, first, last, items, splat, pixel, compact, opacity,
                    alpha_max, power_min, stop_t, skip_power, state, votes, row_live):
        """Composite the Gaussians ``items[first:last]`` (depth order) into one tile.

        The rows of a footprint in the tile are one branch-free pass over the contiguous
        cells ``[first row * TILE_W, (last row + 1) * TILE_W)``: cells outside the footprint
        box, fainter than ``alpha_min`` or already saturated get alpha 0, which leaves every
        accumulator bit-identical (adds 0, multiplies by 1), so the pass vectorises, and its
        independent cells keep the SIMD units busy (one row at a time is bound by the latency
        of the exp polynomial). Every lane is float32 (8 per AVX2 register): cell rows and
        columns come from tables, not from integer index arithmetic. Returns the bit mask of
        the label planes used."""
        zero = np.float32(0.0)
        one = np.float32(1.0)
        minus_half = np.float32(-0.5)
        trans = state[TRANS:TRANS + TILE_PIXELS]
        acc = state[ACC:ACC + TILE_PIXELS]
        depth_sum = state[DEPTH_SUM:DEPTH_SUM + TILE_PIXELS]
        best = state[BEST:BEST + TILE_PIXELS]
        best_label = state[BEST_LABEL:BEST_LABEL + TILE_PIXELS]
        for q in range(TILE_PIXELS):
            # cells outside a partial tile start saturated: they never take a fragment and count as stopped
            inside = CELL_COL[q] < np.float32(tile_w)
            trans[q] = one if inside else zero
            acc[q] = zero
            depth_sum[q] = zero
            best[q] = zero
            best_label[q] = np.float32(-1.0)
        for rl in range(tile_h):
            row_live[rl] = 1
        live_lo, live_hi = 0, tile_h - 1  # first and last row with a pixel still taking fragments
        live_rows = tile_h
        used = np.uint64(0)
        for k in range(first, last):
            j = items[k]
            if k + PREFETCH_AHEAD < last:
                ahead = items[k + PREFETCH_AHEAD]
                _prefetch(splat[ahead], 0)
                _prefetch(pixel[ahead], 0)
            cc = pixel[j, PIXEL_COL] - col_lo  # centre column in tile coordinates
            cr = pixel[j, PIXEL_ROW] - row_lo
            rad = pixel[j, PIXEL_RADIUS]
            ov = splat[j, SPLAT_OFFSET_V]
            # rows whose brightest cell has power -row_fall * dy^2 below -skip_power (alpha_min with a
            # 1% margin) take nothing: |dy| <= reach
            row_fall = np.float32(0.5) * splat[j, SPLAT_ROW_FALL]
            reach = np.sqrt(skip_power / row_fall)
            centre = np.float32(cr) + ov
            y0 = max(cr - rad, live_lo, np.int64(np.ceil(centre - reach)))
            y1 = min(cr + rad, live_hi, np.int64(np.floor(centre + reach)))
            if y0 > y1:
                continue
            # the same cut for columns (a tile met only by a corner of the box may get nothing)
            ou = splat[j, SPLAT_OFFSET_U]
            reach_x = np.sqrt(skip_power / (np.float32(0.5) * splat[j, SPLAT_COL_FALL]))
            centre_x = np.float32(cc) + ou
            x0 = max(cc - rad, 0, np.int64(np.ceil(centre_x - reach_x)))
            x1 = min(cc + rad, tile_w - 1, np.int64(np.floor(centre_x + reach_x)))
            if x0 > x1:
                continue
            zj = splat[j, SPLAT_DEPTH]
            ca = splat[j, SPLAT_CONIC]
            cb = splat[j, SPLAT_CONIC + 1]
            cc2 = splat[j, SPLAT_CONIC + 2]
            row_off = np.float32(cr)
            f_x0 = np.float32(x0)
            f_x1 = np.float32(x1)
            lab = compact[j]
            flab = np.float32(lab)
            used |= np.uint64(1) << np.uint64(lab & 63)
            newly = zero  # pixels that saturate in this pass (a float32 sum keeps the lanes 32-bit)
            for strip in range(x0 // STRIP_W, x1 // STRIP_W + 1):  # only the strips the box meets
                lo = strip * STRIP_CELLS + y0 * STRIP_W
                n = (y1 + 1 - y0) * STRIP_W
                t_v = trans[lo:lo + n]
                a_v = acc[lo:lo + n]
                d_v = depth_sum[lo:lo + n]
                b_v = best[lo:lo + n]
                l_v = best_label[lo:lo + n]
                v_v = votes[lab, lo:lo + n]
                col_v = CELL_COL[lo:lo + n]
                row_v = CELL_ROW[lo:lo + n]
                for c in range(n):
                    tq = t_v[c]
                    dx = (col_v[c] - np.float32(cc)) - ou
                    dy = (row_v[c] - row_off) - ov
                    power = (ca * dx * dx + cc2 * dy * dy) * minus_half - cb * dx * dy
                    alpha = min(_exp_nonpositive(power) * opacity, alpha_max)
                    # alpha >= alpha_min decided on the power (the float32 exp boundary), not the polynomial
                    take = (col_v[c] >= f_x0) & (col_v[c] <= f_x1) & (power >= power_min) & (tq >= stop_t)
                    alpha = alpha if take else zero
                    w = alpha * tq
                    a_v[c] += w
                    d_v[c] += w * zj
                    vote = v_v[c] + w
                    v_v[c] = vote
                    old_best = b_v[c]
                    old_label = l_v[c]
                    wins = take & ((vote > old_best) | ((vote == old_best) & (flab < old_label)))
                    b_v[c] = max(vote, old_best)  # = the winner's weight (the label's weight only grows)
                    l_v[c] = flab if wins else old_label
                    t_new = tq * (one - alpha)
                    t_v[c] = t_new
                    newly += one if take & (t_new < stop_t) else zero
            if newly > zero:  # some pixels stopped: retire rows whose pixels all have
                for rl in range(y0, y1 + 1):
                    if row_live[rl]:
                        dead = zero
                        for c in range(TILE_W):
                            dead += one if trans[_cell(rl, c)] < stop_t else zero
                        if dead == np.float32(TILE_W):
                            row_live[rl] = 0
                            live_rows -= 1
                if live_rows == 0:
                    break
                while row_live[live_lo] == 0:
                    live_lo += 1
                while row_live[live_hi] == 0:
                    live_hi -= 1
        return used

    @njit(cache=True)
    def _finish_tile(col_lo, row_lo, tile_w, tile_h, background_alpha, present, state, used, votes, alpha_img,
                     depth_img, label_img):
        """Write the tile's pixels and clear the label planes it used."""
        zero = np.float32(0.0)
        for rl in range(tile_h):
            yy = row_lo + rl
            for cl in range(tile_w):
                q = _cell(rl, cl)
                xx = col_lo + cl
                a = state[ACC + q]
                alpha_img[yy, xx] = a
                if a >= background_alpha:
                    depth_img[yy, xx] = state[DEPTH_SUM + q] / a
                    label_img[yy, xx] = present[np.int64(state[BEST_LABEL + q])]
                else:
                    depth_img[yy, xx] = zero
                    label_img[yy, xx] = BACKGROUND_LABEL
        if votes.shape[0] > 64:
            votes[:, :] = zero
        else:
            for plane in range(votes.shape[0]):
                if used & (np.uint64(1) << np.uint64(plane)):
                    votes[plane, :] = zero

    @njit(cache=True, parallel=True, error_model="numpy")
    def _composite_tiles(starts, items, splat, pixel, compact, present, height, width, num_threads, opacity,
                         alpha_max, alpha_min, power_min, stop_t, background_alpha):
        """Front-to-back splatting of every tile; returns alpha, depth and label images."""
        num_labels = present.shape[0]
        tiles_x = (width + TILE_W - 1) // TILE_W
        num_tiles = tiles_x * ((height + TILE_H - 1) // TILE_H)
        # rows whose brightest cell has power below -skip_power have opacity * exp(power) < alpha_min
        # everywhere (1% margin for float32 rounding)
        skip_power = np.float32(0.01 - np.log(np.float64(alpha_min) / np.float64(opacity)))
        alpha_img = np.empty((height, width), np.float32)
        depth_img = np.empty((height, width), np.float32)
        label_img = np.empty((height, width), np.int64)
        for t in prange(num_threads):
            # per-thread scratch for one tile at a time (stays in cache); votes kept zero
            votes = np.zeros((num_labels, TILE_PIXELS), np.float32)
            state = np.empty(STATE_PLANES * TILE_PIXELS, np.float32)
            row_live = np.empty(TILE_H, np.int64)
            for index in range(t, num_tiles, num_threads):
                row_lo = (index // tiles_x) * TILE_H
                col_lo = (index % tiles_x) * TILE_W
                tile_w = min(TILE_W, width - col_lo)
                tile_h = min(TILE_H, height - row_lo)
                used = _splat_tile(col_lo, row_lo, tile_w, tile_h, starts[index], starts[index + 1], items, splat,
                                   pixel, compact, opacity, alpha_max, power_min, stop_t, skip_power, state, votes,
                                   row_live)
                _finish_tile(col_lo, row_lo, tile_w, tile_h, background_alpha, present, state, used, votes,
                             alpha_img, depth_img, label_img)
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
    _, _, z, _, _, inside = _variant(_camera_pass)(means, view, K[0, 0], K[1, 1], K[0, 2], K[1, 2], width, height,
                                         np.float32(near))
    found, z_min, z_max = _variant(_masked_range)(z, inside, numba.get_num_threads())
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
    x, y, z, u, v, centre_in = _variant(_camera_pass)(means, view, fx, fy, cx, cy, width, height, near)
    if depth_range is None:
        found, z_min, z_max = _variant(_masked_range)(z, centre_in, numba.get_num_threads())
        depth_range = (float(z_min), float(z_max)) if found else (1.0, 1.0)
    z_min, z_max = depth_range
    rule = settings.scale_rule
    scale = f32(rule.k2 * (voxel_size / rule.reference_voxel_size))
    limit_x = f32(1.3) * (f32(0.5 * width) / fx)
    limit_y = f32(1.3) * (f32(0.5 * height) / fy)
    splat, pixel, keep = _variant(_footprint_pass)(
        x, y, z, u, v, fx, fy, width, height, near, f32(z_min), f32(z_max - z_min), f32(rule.k1), scale,
        f32(settings.dilation), limit_x, limit_y)
    index = np.flatnonzero(keep)
    order = _variant(_depth_order)(z, index, numba.get_num_threads())
    rows, splat, pixel = _variant(_gather_records)(order, index, splat, pixel)
    return NumbaProjected(rows, splat, pixel)


def _power_threshold(settings: SplatSettings) -> np.float32:
    """Smallest float32 power whose float32 ``exp(power) * opacity`` reaches ``alpha_min``.

    The kernel tests ``power >= this`` instead of comparing its polynomial alpha with
    ``alpha_min``, so which fragments are composited is decided as with a float32 ``exp``."""
    f32 = np.float32
    opacity, alpha_min = f32(settings.opacity), f32(settings.alpha_min)
    if not (0 < alpha_min <= min(opacity, f32(settings.alpha_max))):
        raise ValueError(f"settings: the numba renderer needs 0 < alpha_min <= min(opacity, alpha_max), got "
                         f"alpha_min={settings.alpha_min}, opacity={settings.opacity}, alpha_max={settings.alpha_max}")
    passes = lambda power: f32(np.exp(power) * opacity) >= alpha_min  # noqa: E731
    power = f32(np.log(np.float64(alpha_min) / np.float64(opacity)))
    while passes(np.nextafter(power, f32(-np.inf))):
        power = np.nextafter(power, f32(-np.inf))
    while not passes(power):
        power = np.nextafter(power, f32(np.inf))
    if power < EXP_DOMAIN_MIN:
        raise ValueError(f"settings: opacity {settings.opacity} / alpha_min {settings.alpha_min} need exp below "
                         f"{EXP_DOMAIN_MIN}, outside the numba renderer's exp; use backend='torch'")
    return power


def _compact(labels: np.ndarray, rows: np.ndarray):
    """(present label ids, compact id of every row) of ``labels[rows]``."""
    if labels.size and labels.min() >= 0 and labels.max() < MAX_DIRECT_LABEL:
        return _compact_labels(labels, rows, int(labels.max()))
    present, compact = np.unique(labels[rows], return_inverse=True)
    return present.astype(np.int64), compact.astype(np.int32).reshape(-1)


def rasterize_numba(projected: NumbaProjected | ProjectedGaussians, labels, height: int, width: int,
                    settings: SplatSettings) -> RenderedView:
    """Render projected Gaussians (numpy or torch ``ProjectedGaussians``); ``labels`` (N,) of all inputs."""
    require_numba()
    p = projected if isinstance(projected, NumbaProjected) else NumbaProjected.from_torch(projected)
    if p.index.size == 0:
        return empty_view(height, width)
    present, compact = _compact(_as_numpy(labels, np.int64), p.index)
    starts, items = _variant(_bin_tiles)(p.pixel, height, width, numba.get_num_threads())
    f32 = np.float32
    alpha, depth, semantics = _composite_tiles(
        starts, items, p.splat, p.pixel, compact, present, height, width, numba.get_num_threads(),
        f32(settings.opacity), f32(settings.alpha_max), f32(settings.alpha_min), _power_threshold(settings),
        f32(EARLY_STOP_T),
        f32(settings.background_alpha))
    return RenderedView(torch.from_numpy(depth), torch.from_numpy(semantics), torch.from_numpy(alpha))


def render_numba(means, labels, K, cam_to_world, height: int, width: int, voxel_size: float,
                 settings: SplatSettings, depth_range: tuple[float, float] | None = None) -> RenderedView:
    """Project and rasterize in numba (the whole per-frame pipeline of the ``numba`` backend)."""
    projected = project_numba(means, K, cam_to_world, height, width, voxel_size, settings, depth_range)
    return rasterize_numba(projected, labels, height, width, settings)

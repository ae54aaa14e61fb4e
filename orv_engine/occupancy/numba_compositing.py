"""Occ2GS compositing in numba: the tile kernel of 3DGS on CPU threads, and the label
compaction and fragment threshold it needs.

Why this shape (details and measurements in docs/occupancy.md, "The numba tile renderer"):
``prange`` runs one loop per numba thread over interleaved tiles (a tile is owned by one
thread: no write races); a tile splats its depth-ordered Gaussians front to back into
per-pixel planes that stay in L1/L2, laid out as two 8-pixel-wide strips so a footprint's
rows in a strip are one branch-free, float32-only pass that LLVM vectorises; ``exp`` is a
polynomial because numba cannot vectorise ``np.exp`` without SVML; pixels, rows and tiles
stop once their transmittance is below ``EARLY_STOP_T``, as diff-gaussian-rasterization.
"""

from __future__ import annotations

import numpy as np

from orv_engine.occupancy.numba_projection import (
    PIXEL_COL, PIXEL_RADIUS, PIXEL_ROW, SPLAT_COL_FALL, SPLAT_CONIC, SPLAT_DEPTH, SPLAT_OFFSET_U, SPLAT_OFFSET_V,
    SPLAT_ROW_FALL,
)
from orv_engine.occupancy.numba_sorting import TILE_H, TILE_W
from orv_engine.occupancy.numba_support import numba, numba_available
from orv_engine.occupancy.projection import SplatSettings
from orv_engine.occupancy.render_occ2gs import BACKGROUND_LABEL

PREFETCH_AHEAD = 4  # the kernel prefetches the record of the (Gaussian, tile) pair this far ahead
EARLY_STOP_T = 1e-4  # diff-gaussian-rasterization's transmittance cut-off
MAX_DIRECT_LABEL = 1 << 20  # labels in [0, this) are compacted with a table, others with np.unique
EXP_DOMAIN_MIN = -8.0  # the kernel's polynomial exp clamps its argument to [this, 0]
# per-pixel compositing state of a tile: one flat float32 buffer of planes at constant offsets
# (so the compiler sees the planes cannot overlap and vectorises a tile row without checks)
TILE_PIXELS = TILE_W * TILE_H
TRANS, ACC, DEPTH_SUM, BEST, BEST_LABEL = (plane * TILE_PIXELS for plane in range(5))
STATE_PLANES = 5
STRIP_W = 8  # a tile's cells are stored as TILE_W // STRIP_W vertical strips, each row-major
STRIP_CELLS = STRIP_W * TILE_H
CELL_COL = np.concatenate([np.tile(np.arange(h * STRIP_W, (h + 1) * STRIP_W, dtype=np.float32), TILE_H)
                           for h in range(TILE_W // STRIP_W)])  # column of each stored cell of a tile
CELL_ROW = np.tile(np.repeat(np.arange(TILE_H, dtype=np.float32), STRIP_W), TILE_W // STRIP_W)  # its row


if numba_available():  # optional: without numba the torch renderer is used
    from llvmlite import ir as llvm_ir
    from numba import njit, prange
    from numba.core import cgutils
    from numba.extending import intrinsic

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
    def composite_tiles(starts, items, splat, pixel, compact, present, height, width, num_threads, opacity,
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

    @njit(cache=True)
    def _label_table(labels, rows, max_label):
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


def power_threshold(settings: SplatSettings) -> np.float32:
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


def compact_labels(labels: np.ndarray, rows: np.ndarray):
    """(present label ids, compact id of every row) of ``labels[rows]``."""
    if labels.size and labels.min() >= 0 and labels.max() < MAX_DIRECT_LABEL:
        return _label_table(labels, rows, int(labels.max()))
    present, compact = np.unique(labels[rows], return_inverse=True)
    return present.astype(np.int64), compact.astype(np.int32).reshape(-1)

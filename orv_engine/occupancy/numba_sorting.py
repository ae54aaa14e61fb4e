"""Ordering in numba: the stable front-to-back depth sort of the projected Gaussians, the
gather of their records in that order, and the binning of them into image tiles.

Why radix sorts: an LSD radix sort of the order-preserving bits of z gives exactly torch's
stable argsort (also at equal depths) in three passes, skipping passes whose digit is the
same for every Gaussian; a counting sort bins every Gaussian into the tiles its footprint
box touches, in depth order. Both count and place contiguous runs of Gaussians per thread
(a digit's or tile's slots take the runs in order), so they stay stable under ``prange``.
"""

from __future__ import annotations

import numpy as np

from orv_engine.occupancy.numba_projection import PIXEL_COL, PIXEL_COLUMNS, PIXEL_RADIUS, PIXEL_ROW, SPLAT_COLUMNS
from orv_engine.occupancy.numba_support import numba_available, serial_and_parallel

TILE_W = 16  # tile width in pixels = lanes of one vectorised row pass
TILE_H = 16  # tile height in pixels; a tile (the parallel work unit) and its scratch fit in L1/L2
RADIX_BITS = 11  # digit of the depth radix sort: 3 passes over 32-bit keys


if numba_available():  # optional: without numba the torch renderer is used
    from numba import prange

    @serial_and_parallel
    def depth_order(z, index, chunks):
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
    def gather_records(order, index, splat_all, pixel_all):
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

    @serial_and_parallel
    def bin_tiles(pixel, height, width, chunks):
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
        # deliberate copy: the placing pass walks the same (Gaussian, tile) pairs as the counting
        # pass above, kept inline and verbatim (the kernels' code was left as measured)
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

"""How well a painted first frame follows its maps and its prompt (benchmarks/small_painter.py
and the CI test share these).

- :func:`layout_f1`: edges of the frame against the boundaries of the maps, F-score with a
  tolerance of ``tol`` pixels (Euclidean; 1 px is the headline: at 64x64 a 2-px disk around
  one-pixel boundaries covers a third of the frame and even noise scores 0.46 there).
  Map boundaries (one pixel thick): a change of semantic label between 4-neighbours, or a
  depth step of more than :data:`DEPTH_STEP` (relative). Frame edges: the ``k`` pixels of
  largest colour-gradient magnitude, ``k`` = twice the number of boundary pixels (a colour
  step gives a two-pixel-wide Sobel response; with ``k`` = once, a perfectly painted square
  scores 0.72), so the score does not depend on a contrast threshold (a flat or noisy frame
  gets chance-level edges, a frame whose colour changes where the maps change gets them on
  the boundaries).
- :func:`region_r2`: the share of the frame's colour variance that the semantic regions
  explain (1 - within-region / total), i.e. per-region colour consistency.
- :func:`region_colour_error`: mean over semantic regions of the distance between the mean
  colours of two frames in that region (0-255 units): do the table, towel and cubes get the
  colours the prompt names.
- :func:`psnr`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

DEPTH_STEP = 0.03  # relative depth change between neighbours that counts as a boundary
EDGES_PER_BOUNDARY = 2  # frame edge pixels taken per boundary pixel (see layout_f1)
MIN_REGION = 4  # pixels; smaller regions are too few to have a colour


def map_boundaries(depth: np.ndarray, semantics: np.ndarray) -> np.ndarray:
    """(H, W) bool, one pixel thick: the lower/right pixel of each 4-neighbour pair whose
    semantic labels differ or whose depths differ by more than :data:`DEPTH_STEP` (relative)."""
    out = np.zeros(semantics.shape, bool)
    d = np.asarray(depth, np.float64)
    for axis in (0, 1):
        a = [slice(None)] * 2
        b = [slice(None)] * 2
        a[axis], b[axis] = slice(1, None), slice(None, -1)
        s_change = semantics[tuple(a)] != semantics[tuple(b)]
        da, db = d[tuple(a)], d[tuple(b)]
        d_change = np.abs(da - db) > DEPTH_STEP * np.maximum(np.maximum(da, db), 1e-6)
        out[tuple(a)] |= s_change | d_change  # one side only: a two-pixel band would halve what tol means
    return out


def gradient_magnitude(frame: np.ndarray) -> np.ndarray:
    """(H, W) Sobel magnitude of the colour frame (max over channels), borders not counted."""
    x = np.asarray(frame, np.float64)
    mags = [np.hypot(ndimage.sobel(x[..., c], 0), ndimage.sobel(x[..., c], 1)) for c in range(x.shape[-1])]
    mag = np.max(mags, axis=0)
    mag[[0, -1], :] = 0
    mag[:, [0, -1]] = 0
    return mag


def frame_edges(frame: np.ndarray, k: int) -> np.ndarray:
    mag = gradient_magnitude(frame).ravel()
    edges = np.zeros(mag.shape, bool)
    if k > 0:
        edges[np.argsort(-mag, kind="stable")[:k]] = True
    return edges.reshape(frame.shape[:2])


def tolerance_disk(tol: int) -> np.ndarray:
    """Pixels within Euclidean distance ``tol`` (1: the 4-neighbours, 2: a 13-pixel disk)."""
    y, x = np.mgrid[-tol:tol + 1, -tol:tol + 1]
    return x * x + y * y <= tol * tol


def layout_f1(frame: np.ndarray, depth: np.ndarray, semantics: np.ndarray, tol: int = 2) -> float:
    """F-score of the frame's edges against the maps' boundaries, ``tol`` pixels of tolerance."""
    boundaries = map_boundaries(depth, semantics)
    k = int(boundaries.sum())
    if k == 0:
        return float("nan")
    edges = frame_edges(frame, EDGES_PER_BOUNDARY * k)
    structure = tolerance_disk(tol)
    near_boundary = ndimage.binary_dilation(boundaries, structure)
    near_edge = ndimage.binary_dilation(edges, structure)
    precision = (edges & near_boundary).sum() / max(1, edges.sum())
    recall = (boundaries & near_edge).sum() / k
    return float(0 if precision + recall == 0 else 2 * precision * recall / (precision + recall))


def _regions(semantics: np.ndarray):
    for label in np.unique(semantics):
        mask = semantics == label
        if mask.sum() >= MIN_REGION:
            yield mask


def region_r2(frame: np.ndarray, semantics: np.ndarray) -> float:
    x = np.asarray(frame, np.float64).reshape(-1, 3)
    total = ((x - x.mean(0)) ** 2).sum()
    if total <= 0:
        return 0.0
    within = 0.0
    for mask in _regions(semantics):
        v = x[mask.ravel()]
        within += ((v - v.mean(0)) ** 2).sum()
    small = ~np.isin(semantics, [l for l in np.unique(semantics) if (semantics == l).sum() >= MIN_REGION])
    if small.any():  # pixels of tiny regions count as unexplained
        v = x[small.ravel()]
        within += ((v - x.mean(0)) ** 2).sum()
    return float(1 - within / total)


def region_colour_error(frame: np.ndarray, reference: np.ndarray, semantics: np.ndarray) -> float:
    a = np.asarray(frame, np.float64).reshape(-1, 3)
    b = np.asarray(reference, np.float64).reshape(-1, 3)
    errors = [np.linalg.norm(a[m.ravel()].mean(0) - b[m.ravel()].mean(0)) for m in _regions(semantics)]
    return float(np.mean(errors)) if errors else float("nan")


def psnr(frame: np.ndarray, reference: np.ndarray) -> float:
    mse = np.mean((np.asarray(frame, np.float64) - np.asarray(reference, np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


OBJECT_MAX_AREA = 0.05  # a semantic region smaller than this share of the frame is an object (cube, towel)


def object_contrast(frame: np.ndarray, semantics: np.ndarray, ring: int = 2) -> float:
    """Mean over the maps' objects (regions under :data:`OBJECT_MAX_AREA` of the frame) of the
    colour distance (0-255) between the object's pixels and a ``ring``-pixel band around it.

    Why besides :func:`layout_f1`: at 64x64 the arm and the table's outline hold most boundary
    pixels and sit in the same place in every scene, so a painter that ignores the maps still
    scores on them; this one asks whether something of its own colour is painted where each
    cube and towel is (the true render's value is the scale; noise and misplaced blobs average out)."""
    x = np.asarray(frame, np.float64)
    values = []
    for label in np.unique(semantics):
        mask = semantics == label
        if label < 0 or not MIN_REGION <= mask.sum() <= OBJECT_MAX_AREA * mask.size:
            continue
        band = ndimage.binary_dilation(mask, iterations=ring) & ~mask
        if band.any():
            values.append(float(np.linalg.norm(x[mask].mean(0) - x[band].mean(0))))
    return float(np.mean(values)) if values else float("nan")

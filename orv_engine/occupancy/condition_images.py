"""Condition maps -> the RGB images the VAE encodes, in one fixed way that training,
validation and inference share (and the contact sheets show):

- depth: per clip, valid depths mapped linearly to ``[0.1, 1]`` with near = bright (2nd and
  98th percentile of the clip), background 0; repeated to 3 channels;
- semantics: label id ``k`` -> ``PALETTE[k % len(PALETTE)]``, background black.
"""

from __future__ import annotations

import numpy as np

PALETTE = np.array(
    [[70, 70, 70], [160, 120, 60], [210, 210, 210], [220, 40, 40], [40, 170, 70], [240, 200, 30],
     [40, 90, 220], [170, 60, 200], [60, 200, 200], [250, 140, 40], [120, 200, 90], [200, 120, 160]],
    np.uint8,
)



def depth_image(depth: np.ndarray) -> np.ndarray:
    """(T, H, W) metres (0 = no depth) -> (T, H, W, 3) uint8, near bright, background black."""
    depth = np.asarray(depth, np.float32)
    valid = depth > 0
    lo, hi = np.percentile(depth[valid], [2, 98]) if valid.any() else (0.0, 1.0)
    value = 1.0 - 0.9 * np.clip((depth - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    gray = np.where(valid, value, 0.0)
    return np.repeat((gray * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def semantic_image(labels: np.ndarray) -> np.ndarray:
    """(T, H, W) int label ids (< 0 = background) -> (T, H, W, 3) uint8 palette colours."""
    labels = np.asarray(labels)
    out = PALETTE[np.mod(labels, len(PALETTE))]
    out[labels < 0] = 0
    return out


def condition_images(maps: dict[str, np.ndarray], kinds) -> dict[str, np.ndarray]:
    """{kind: raw map (T, H, W)} -> {kind: (T, H, W, 3) uint8} for each of ``kinds``."""
    convert = {"depth": depth_image, "semantics": semantic_image}
    return {kind: convert[kind](maps[kind]) for kind in kinds}

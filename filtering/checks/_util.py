"""Shared helpers of the cheap checks."""

from __future__ import annotations

import numpy as np


def grey(frames: np.ndarray) -> np.ndarray:
    """``(T, H, W, 3) uint8`` -> ``(T, H, W) float32`` luma (BT.601), 0..255."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected (T, H, W, 3), got {frames.shape}")
    return frames @ np.array([0.299, 0.587, 0.114], np.float32)


def downscale(images: np.ndarray, max_side: int = 160) -> np.ndarray:
    """Block-average ``(T, H, W)`` images so the longer side is at most ``max_side``."""
    t, h, w = images.shape
    k = max(1, int(np.ceil(max(h, w) / max_side)))
    if k == 1:
        return images
    h2, w2 = h // k * k, w // k * k
    return images[:, :h2, :w2].reshape(t, h2 // k, k, w2 // k, k).mean(axis=(2, 4))

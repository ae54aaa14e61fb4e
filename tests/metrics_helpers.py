"""Shared helpers for tests/test_metrics*.py: synthetic clips and random-weight networks.

The networks are the real architectures with random weights, saved in the real on-disk
formats (see benchmarks.metrics.stand_ins) once per test session, since building the
I3D TorchScript takes seconds on CPU.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import numpy as np

_WEIGHTS_DIR = Path(tempfile.mkdtemp(prefix="orv_metrics_weights_"))
atexit.register(shutil.rmtree, _WEIGHTS_DIR, ignore_errors=True)


def smooth_clip(frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """A moving colour pattern, ``(T, H, W, 3) uint8`` (smooth, so video codecs keep it)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    phase = rng.uniform(0, 2 * np.pi, 3)
    freq = rng.uniform(0.05, 0.2, (3, 2))
    out = []
    for t in range(frames):
        channels = [
            127.5 + 120 * np.sin(freq[c, 0] * x + freq[c, 1] * y + phase[c] + 0.3 * t) for c in range(3)
        ]
        out.append(np.stack(channels, axis=-1))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def noisy(frames: np.ndarray, amplitude: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(frames.astype(np.int16) + rng.integers(-amplitude, amplitude + 1, frames.shape), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=None)
def fid_inception_weights() -> Path:
    from benchmarks.metrics import stand_ins

    return stand_ins.save_fid_inception(_WEIGHTS_DIR / "pt_inception-2015-12-05-random.pth")


@functools.lru_cache(maxsize=None)
def i3d_torchscript() -> Path:
    from benchmarks.metrics import stand_ins

    return stand_ins.save_i3d_torchscript(_WEIGHTS_DIR / "i3d_torchscript.pt", frames=16)


@functools.lru_cache(maxsize=None)
def i3d_state_dict() -> Path:
    from benchmarks.metrics import stand_ins

    return stand_ins.save_i3d_state_dict(_WEIGHTS_DIR / "i3d_pretrained_400.pt")


@functools.lru_cache(maxsize=None)
def alexnet_weights() -> Path:
    from benchmarks.metrics import stand_ins

    return stand_ins.save_alexnet(_WEIGHTS_DIR / "alexnet-owt-7be5be79.pth")

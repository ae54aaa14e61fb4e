"""PSNR and SSIM per frame, on RGB uint8 frames, batched in torch so they run on the GPU.

Definitions (the same numbers as ``skimage.metrics`` on the same frames; the tests check
agreement to 1e-10):

* PSNR = 10 log10(255² / MSE), MSE over all pixels and the 3 channels of one frame
  (``peak_signal_noise_ratio(gt, gen, data_range=255)``). Identical frames give +inf.
* SSIM of Wang et al. 2004 on RGB: per channel, Gaussian window sigma 1.5 truncated at
  3.5 sigma (11 taps), K1 0.01, K2 0.03, data range 255, population covariances; the mean
  over the valid interior of each channel (5-pixel border dropped), then over channels
  (``structural_similarity(gt, gen, channel_axis=-1, data_range=255,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False)``).

Why hand-written: scikit-image is CPU-only, one frame at a time; torchmetrics' SSIM runs
batched on GPU but differs from scikit-image by ~4e-4 (its padding scheme). A separable
valid convolution with scikit-image's kernel is 25 lines and exact: torch convolutions on
a GPU, scipy.ndimage on CPU (torch's float64 CPU convolution is ~6x slower). Float64:
the variance terms E[x²] - E[x]² lose precision in float32 at the 0-255 scale, and the
cost is negligible next to FID/FVD.

Averaging (as the paper does): per frame, then the mean over a clip's frames, then the
mean over clips. Identical frames (PSNR = inf) are left out of PSNR means and counted
instead (``identical_frames``); a clip whose every frame is identical has PSNR inf and is
left out of the mean over clips, likewise counted. If nothing finite is left the mean is
inf. Clipping inf to an arbitrary cap (100 dB is common) would let a few copied frames,
e.g. a conditioning frame, dominate the average.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

DATA_RANGE = 255.0
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _as_nchw(frames: np.ndarray | torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, 3, H, W) float64 in 0..255 on ``device``."""
    t = torch.as_tensor(frames)
    if t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"frames must be (T, H, W, 3), got {tuple(t.shape)}")
    return t.to(device=device).permute(0, 3, 1, 2).to(torch.float64)


def _check_same(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> None:
    if tuple(a.shape) != tuple(b.shape):
        raise ValueError(f"frame stacks differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")


def psnr_frames(generated, ground_truth, device: torch.device | str = "cpu") -> np.ndarray:
    """PSNR in dB of each frame pair, ``(T,)`` float64; inf where frames are identical."""
    _check_same(generated, ground_truth)
    x, y = _as_nchw(generated, device), _as_nchw(ground_truth, device)
    mse = ((x - y) ** 2).mean(dim=(1, 2, 3))
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(DATA_RANGE**2 / mse.cpu().numpy())


def _gaussian_kernel(dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    radius = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    taps = torch.arange(-radius, radius + 1, dtype=dtype, device=device)
    kernel = torch.exp(-(taps**2) / (2 * SSIM_SIGMA**2))
    return kernel / kernel.sum()


def _blur_torch(z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian over the valid interior (= scikit-image's filter, then crop)."""
    channels = z.shape[1]
    kx = g.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    ky = g.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    return F.conv2d(F.conv2d(z, kx, groups=channels), ky, groups=channels)


def _blur_scipy(z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """The same on CPU through scipy.ndimage, which is ~6x faster than torch's float64 conv."""
    r = (g.numel() - 1) // 2
    a = z.numpy()
    weights = g.numpy()
    a = ndimage.correlate1d(a, weights, axis=-1, mode="reflect")[..., r:-r]
    a = ndimage.correlate1d(a, weights, axis=-2, mode="reflect")[..., r:-r, :]
    return torch.from_numpy(np.ascontiguousarray(a))


def ssim_frames(generated, ground_truth, device: torch.device | str = "cpu", *, backend: str = "auto") -> np.ndarray:
    """SSIM of each frame pair, ``(T,)`` float64 (1.0 for identical frames).

    ``backend``: ``"auto"`` blurs with scipy on CPU and torch convolutions elsewhere;
    ``"torch"``/``"scipy"`` force one (the tests check both against scikit-image).
    """
    _check_same(generated, ground_truth)
    x, y = _as_nchw(generated, device), _as_nchw(ground_truth, device)
    g = _gaussian_kernel(x.dtype, x.device)
    if min(x.shape[-2:]) < g.numel():
        raise ValueError(f"SSIM needs frames of at least {g.numel()}x{g.numel()} pixels, got {tuple(x.shape[-2:])}")
    if backend == "auto":
        backend = "scipy" if x.device.type == "cpu" else "torch"
    if backend == "scipy" and x.device.type != "cpu":
        raise ValueError("the scipy SSIM backend runs on CPU tensors only")

    def blur(z: torch.Tensor) -> torch.Tensor:  # the valid region only = scikit-image's crop
        return _blur_scipy(z, g) if backend == "scipy" else _blur_torch(z, g)

    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    c1, c2 = (SSIM_K1 * DATA_RANGE) ** 2, (SSIM_K2 * DATA_RANGE) ** 2
    ssim_map = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return ssim_map.mean(dim=(1, 2, 3)).cpu().numpy()


def finite_mean(values) -> tuple[float, int]:
    """Mean over the finite values and how many were inf; inf if none is finite."""
    v = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(v)
    if np.isnan(v).any():
        raise ValueError("NaN in PSNR values")
    n_inf = int((~finite).sum())
    return (float(v[finite].mean()) if finite.any() else math.inf), n_inf

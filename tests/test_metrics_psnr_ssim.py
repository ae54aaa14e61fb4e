"""PSNR/SSIM against scikit-image on the same frames (orv_engine.evaluation.psnr_ssim)."""

import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from orv_engine.evaluation.psnr_ssim import finite_mean, psnr_frames, ssim_frames
from metrics_helpers import noisy, smooth_clip


def _reference(gen, gt):
    psnr = [peak_signal_noise_ratio(b, a, data_range=255) for a, b in zip(gen, gt)]
    ssim = [
        structural_similarity(b, a, channel_axis=-1, data_range=255, gaussian_weights=True, sigma=1.5,
                              use_sample_covariance=False)
        for a, b in zip(gen, gt)
    ]
    return np.array(psnr), np.array(ssim)


@pytest.mark.parametrize("shape", [(4, 48, 64), (3, 11, 11), (2, 37, 23)])
@pytest.mark.parametrize("amplitude", [3, 40])
def test_matches_scikit_image(shape, amplitude):
    gt = smooth_clip(*shape, seed=sum(shape))
    gen = noisy(gt, amplitude)
    psnr_ref, ssim_ref = _reference(gen, gt)
    np.testing.assert_allclose(psnr_frames(gen, gt), psnr_ref, rtol=0, atol=1e-10)
    for backend in ("scipy", "torch"):  # CPU route and the GPU route (run here on CPU)
        np.testing.assert_allclose(ssim_frames(gen, gt, backend=backend), ssim_ref, rtol=0, atol=1e-10)


def test_random_noise_frames_match_scikit_image():
    rng = np.random.default_rng(0)
    gt = rng.integers(0, 256, (3, 32, 40, 3), dtype=np.uint8)
    gen = rng.integers(0, 256, (3, 32, 40, 3), dtype=np.uint8)
    psnr_ref, ssim_ref = _reference(gen, gt)
    np.testing.assert_allclose(psnr_frames(gen, gt), psnr_ref, atol=1e-10)
    np.testing.assert_allclose(ssim_frames(gen, gt), ssim_ref, atol=1e-10)
    np.testing.assert_allclose(ssim_frames(gen, gt, backend="torch"), ssim_ref, atol=1e-10)


def test_identical_frames_give_inf_psnr_and_unit_ssim():
    gt = smooth_clip(3, 24, 24)
    gen = gt.copy()
    gen[1] = noisy(gt[1:2], 5)[0]
    psnr = psnr_frames(gen, gt)
    assert math.isinf(psnr[0]) and math.isinf(psnr[2]) and math.isfinite(psnr[1])
    np.testing.assert_allclose(ssim_frames(gt, gt), 1.0, atol=1e-12)
    mean, n_inf = finite_mean(psnr)
    assert n_inf == 2 and mean == pytest.approx(psnr[1])
    assert finite_mean(psnr_frames(gt, gt)) == (math.inf, 3)


def test_shape_errors():
    a = smooth_clip(2, 16, 16)
    with pytest.raises(ValueError, match="differ in shape"):
        psnr_frames(a, a[:1])
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_frames(a[:, :8, :8], a[:, :8, :8])

"""The Fréchet distance between two Gaussians fitted to network features (FID and FVD).

    d² = ||mu1 - mu2||² + Tr(S1 + S2 - 2 (S1 S2)^½)

Hand-written (about 30 lines) rather than taken from pytorch-fid's
``calculate_frechet_distance`` because FID and FVD share it here and need two things that
function does not do: it raises on small imaginary parts of ``sqrtm`` that appear with
few samples (rank-deficient covariances, the normal case for a small evaluation split),
and it passes scipy's deprecated ``disp`` argument. The numerics are the same: scipy's
``sqrtm`` of the product, and the same ``eps`` diagonal offset when the product is
singular enough to make ``sqrtm`` non-finite.

With fewer samples than feature dimensions (FVD on a few hundred clips: 400-d; FID on a
small split: 2048-d) the covariances have low rank and ``sqrtm`` of a 2048x2048 product
is both slow (about a minute on 2 CPU cores) and ill-conditioned. There the same number
comes exactly from the centred features: with S1 = AᵀA and S2 = BᵀB, the eigenvalues of
S1 S2 are the squared singular values of A Bᵀ, so Tr (S1 S2)^½ is the nuclear norm of
the small matrix A Bᵀ (``frechet_distance_of_features`` picks this route by itself).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg


def gaussian_stats(features: np.ndarray, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Mean and covariance of ``(N, D)`` features, in float64.

    ``ddof=1`` is the unbiased covariance that pytorch-fid uses for FID; ``ddof=0`` is the
    biased one StyleGAN-V uses for FVD (its ``FeatureStats.get_mean_cov``).
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"features must be (N, D), got shape {x.shape}")
    if x.shape[0] < 2:
        raise ValueError(
            f"a covariance needs at least 2 samples, got {x.shape[0]}: "
            "score more clips (FID counts frames, FVD counts clips)"
        )
    mu = x.mean(axis=0)
    sigma = np.cov(x, rowvar=False, ddof=ddof)
    return mu, np.atleast_2d(sigma)


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, eps: float = 1e-6
) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2).

    The result is clipped at 0: for identical sets it is 0 up to round-off, which can come
    out as -1e-10.
    """
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    sigma1, sigma2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise ValueError(
            f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, sigma {sigma1.shape} vs {sigma2.shape}"
        )
    diff = mu1 - mu2
    covmean = scipy.linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        offset = np.eye(sigma1.shape[0]) * eps
        covmean = scipy.linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    # Imaginary parts are numerical noise from a (nearly) singular product: the exact
    # square root of a product of two PSD matrices has a real trace.
    covmean = np.real(covmean)
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean)
    return float(max(value, 0.0))


def _frechet_low_rank(a: np.ndarray, b: np.ndarray, ddof: int) -> float:
    """Exact Fréchet distance from the features when samples < dimensions (see above)."""
    ca = (a - a.mean(axis=0)) / np.sqrt(a.shape[0] - ddof)
    cb = (b - b.mean(axis=0)) / np.sqrt(b.shape[0] - ddof)
    diff = a.mean(axis=0) - b.mean(axis=0)
    nuclear = scipy.linalg.svdvals(ca @ cb.T).sum()
    value = diff @ diff + np.sum(ca * ca) + np.sum(cb * cb) - 2.0 * nuclear
    return float(max(value, 0.0))


def frechet_distance_of_features(a: np.ndarray, b: np.ndarray, ddof: int = 1) -> float:
    """Fit a Gaussian to each ``(N, D)`` feature set and return their Fréchet distance."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    for x in (a, b):
        if x.ndim != 2 or x.shape[0] < 2:
            raise ValueError(f"features must be (N >= 2, D): got shape {x.shape}; score at least 2 "
                             "samples (FID counts frames, FVD counts clips)")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"mismatched feature sizes: {a.shape[1]} vs {b.shape[1]}")
    if max(a.shape[0], b.shape[0]) <= a.shape[1]:
        return _frechet_low_rank(a, b, ddof)
    return frechet_distance(*gaussian_stats(a, ddof), *gaussian_stats(b, ddof))

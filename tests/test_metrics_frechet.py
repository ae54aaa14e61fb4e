"""Known answers for the Fréchet distance (benchmarks.metrics.frechet)."""

import numpy as np
import pytest
import scipy.linalg

from benchmarks.metrics.frechet import frechet_distance, frechet_distance_of_features, gaussian_stats


def _random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.1 * np.eye(d)


def _direct(mu1, s1, mu2, s2):
    """The symmetric form Tr(S1 + S2 - 2 (S1^½ S2 S1^½)^½), computed independently."""
    r1 = scipy.linalg.sqrtm(s1).real
    cross = scipy.linalg.sqrtm(r1 @ s2 @ r1).real
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(cross))


@pytest.mark.parametrize("dim", [1, 3, 16, 64])
def test_matches_direct_scipy_on_random_gaussians(dim):
    rng = np.random.default_rng(dim)
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    s1, s2 = _random_spd(rng, dim), _random_spd(rng, dim)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(_direct(mu1, s1, mu2, s2), rel=1e-8, abs=1e-8)


def test_diagonal_covariances_closed_form():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(0.1, 3, 10), rng.uniform(0.1, 3, 10)
    mu1, mu2 = rng.normal(size=10), rng.normal(size=10)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_features_of_samples_match_direct_computation():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(500, 8))
    y = rng.normal(loc=0.5, scale=1.5, size=(400, 8))
    expected = _direct(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))
    assert frechet_distance_of_features(x, y) == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("n,d", [(200, 8), (5, 40)])  # (5, 40): rank-deficient covariances, as with few clips
def test_identical_sets_are_zero(n, d):
    x = np.random.default_rng(2).normal(size=(n, d))
    for ddof in (0, 1):
        assert frechet_distance_of_features(x, x, ddof=ddof) == pytest.approx(0.0, abs=1e-6)


def test_gaussian_stats_ddof_and_too_few_samples():
    x = np.random.default_rng(3).normal(size=(10, 4))
    mu, s1 = gaussian_stats(x, ddof=1)
    _, s0 = gaussian_stats(x, ddof=0)
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(s1, np.cov(x, rowvar=False))
    np.testing.assert_allclose(s0 * 10 / 9, s1)
    with pytest.raises(ValueError, match="at least 2 samples"):
        gaussian_stats(x[:1])
    with pytest.raises(ValueError, match="mismatched"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


@pytest.mark.parametrize("n1,n2,d", [(30, 20, 64), (5, 9, 40)])
def test_low_rank_route_equals_sqrtm_route(n1, n2, d):
    rng = np.random.default_rng(n1)
    a = rng.normal(size=(n1, d)) @ rng.normal(size=(d, d))
    b = rng.normal(loc=0.3, size=(n2, d)) @ rng.normal(size=(d, d))
    for ddof in (0, 1):
        via_sqrtm = frechet_distance(*gaussian_stats(a, ddof), *gaussian_stats(b, ddof))
        assert frechet_distance_of_features(a, b, ddof=ddof) == pytest.approx(via_sqrtm, rel=1e-6)


def test_too_few_samples_is_a_clear_error():
    x = np.zeros((1, 4))
    with pytest.raises(ValueError, match="at least 2"):
        frechet_distance_of_features(x, np.ones((3, 4)))

"""The numba Occ2GS backend renders the same model as the torch renderer and the dense
reference: same projection, same fragments, same compositing (up to the T < 1e-4 early stop,
which moves alpha and depth by < 1e-4 and can flip only borderline pixels)."""

import numpy as np
import pytest
import torch

from occupancy_scenes import IDENTITY, K, SIZE, VOXEL, grid, occupancy_from_depths, plane
from orv_engine.occupancy import (
    GaussianScaleRule, Occupancy4D, SplatSettings, ViewCamera, depth_to_points, render_condition_maps,
    render_views, voxelize,
)
from orv_engine.occupancy import condition_maps, render_numba
from orv_engine.occupancy.cameras import look_at, pinhole
from orv_engine.occupancy.projection import project
from orv_engine.occupancy.render_dense import rasterize_dense
from orv_engine.occupancy.render_occ2gs import rasterize

pytestmark = pytest.mark.skipif(not render_numba.numba_available(), reason="numba is not installed")

CAMERA = ViewCamera(K, IDENTITY, SIZE, SIZE)
BORDERLINE = 2e-4  # |alpha - background_alpha| under which the valid mask may differ
MAX_BORDERLINE_FRACTION = 0.002  # of all pixels


def _random_scene(seed, n=1200, num_labels=5):
    rng = np.random.default_rng(seed)
    means = torch.tensor(rng.uniform([-0.05, -0.05, 0.08], [0.05, 0.05, 0.2], (n, 3)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, num_labels, n))
    return means, labels


def _random_camera():
    pose = look_at([0.02, -0.03, 0.0], [0.0, 0.0, 0.14], up=(0, -1, 0))
    k = pinhole(60.0, 70.0, 23.5, 19.5)  # non-square pixels, off-centre principal point
    return torch.tensor(k), torch.tensor(pose)


def assert_same_render(depth, semantics, alpha, ref_depth, ref_semantics, ref_alpha, background_alpha=0.1):
    """Tight agreement; returns the fraction of pixels whose valid flag differs (all borderline)."""
    depth, ref_depth, alpha, ref_alpha = (np.asarray(a, np.float64) for a in (depth, ref_depth, alpha, ref_alpha))
    semantics, ref_semantics = np.asarray(semantics), np.asarray(ref_semantics)
    # the early stop leaves out at most T < 1e-4 of a pixel's weight (+ float32 rounding)
    np.testing.assert_allclose(alpha, ref_alpha, atol=render_numba.EARLY_STOP_T + 5e-6, rtol=0)
    valid, ref_valid = semantics >= 0, ref_semantics >= 0
    both = valid & ref_valid
    assert np.abs(depth[both] - ref_depth[both]).max(initial=0.0) <= 1e-4
    assert (semantics[both] == ref_semantics[both]).all()
    differ = valid != ref_valid
    assert (np.abs(ref_alpha[differ] - background_alpha) < BORDERLINE).all()
    assert differ.mean() <= MAX_BORDERLINE_FRACTION
    assert (depth[~valid] == 0).all() and (semantics[~valid] == -1).all()
    return float(differ.mean())


@pytest.mark.parametrize("seed, num_labels", [(0, 5), (1, 5), (2, 80)])  # 80 labels: > 64, no label mask
def test_numba_rasterizer_matches_torch_and_dense_on_the_same_projection(seed, num_labels):
    means, labels = _random_scene(seed, num_labels=num_labels)
    k, pose = _random_camera()
    settings = SplatSettings(scale_rule=GaussianScaleRule(3.2, 0.00047))
    projected = project(means, k, pose, 40, 48, 0.002, settings)
    fast = rasterize(projected, labels, 40, 48, settings)
    dense = rasterize_dense(projected, labels, 40, 48, settings, chunk=1024)
    for band_rows in (8, 3):  # 3: bands that do not divide the height
        view = render_numba.rasterize_numba(projected, labels, 40, 48, settings, band_rows=band_rows)
        assert view.semantics.dtype == torch.long and view.valid.float().mean() > 0.5
        for ref in (fast, dense):
            assert_same_render(view.depth, view.semantics, view.alpha, ref.depth, ref.semantics, ref.alpha)


def test_numba_projection_matches_the_torch_projection():
    means, _ = _random_scene(3, n=3000)
    k, pose = _random_camera()
    settings = SplatSettings(scale_rule=GaussianScaleRule(3.2, 0.00047))
    ref = project(means, k, pose, 40, 48, 0.002, settings)
    got = render_numba.project_numba(means, k, pose, 40, 48, 0.002, settings)
    assert np.array_equal(got.index, ref.index.numpy())  # same culling, same stable depth order
    assert np.array_equal(got.radius, ref.radius.numpy()) and np.array_equal(got.center_col, ref.center_col.numpy())
    assert np.array_equal(got.center_row, ref.center_row.numpy())
    np.testing.assert_allclose(got.depth, ref.depth.numpy(), rtol=1e-6)
    np.testing.assert_allclose(got.offset_u, ref.offset_u.numpy(), atol=1e-4)
    np.testing.assert_allclose(got.offset_v, ref.offset_v.numpy(), atol=1e-4)
    np.testing.assert_allclose(got.conic, ref.conic.numpy(), rtol=1e-4)


def test_numba_renderer_keeps_the_depth_sort_stable_on_equal_depths():
    # one plane at one depth: every Gaussian has the same z, so only a stable sort gives the
    # torch order (and the same label votes)
    occ = occupancy_from_depths([plane(0.1)], [np.arange(SIZE * SIZE).reshape(SIZE, SIZE) % 3])
    means, labels = torch.from_numpy(occ.centers(0)).float(), torch.from_numpy(occ.labels[0]).long()
    settings = SplatSettings()
    ref = project(means, torch.tensor(K), torch.tensor(IDENTITY), SIZE, SIZE, VOXEL, settings)
    got = render_numba.project_numba(means, K, IDENTITY, SIZE, SIZE, VOXEL, settings)
    assert np.array_equal(got.index, ref.index.numpy())


def _occlusion_occupancy(num_frames=2):
    g = grid()
    coords, labels = [], []
    for t in range(num_frames):
        far, near = plane(0.15 + 0.01 * t), plane(0.1 + 0.005 * t)
        near[:, SIZE // 2 + 4 * t:] = np.nan  # the near plane covers (a bit more than) the left half
        cs, ls = [], []
        for depth, label in ((far, 2), (near, 1)):
            frame = depth_to_points(depth, K, IDENTITY, np.full(depth.shape, label))
            c, lab, _ = voxelize(frame.points, frame.labels, g)
            cs.append(c)
            ls.append(lab)
        coords.append(np.concatenate(cs))
        labels.append(np.concatenate(ls))
    return Occupancy4D(g, coords, labels, ("table", "cup", "bowl"))


def test_numba_backend_matches_torch_on_sequences_and_views():
    side = ViewCamera(pinhole(80, 80, 31.5, 23.5),
                      np.stack([look_at([0.03, 0, 0.0], [0, 0, 0.11], up=(0, -1, 0))] * 2), 48, 64)
    scenes = [  # (the torch renderer is slow on the oblique side view of the full planes: anchor only)
        (occupancy_from_depths([plane(0.1), plane(0.12)], [np.zeros((SIZE, SIZE), int)] * 2), SplatSettings(),
         "frame", {"anchor": CAMERA}),
        (_occlusion_occupancy(), SplatSettings(scale_rule=GaussianScaleRule.preset("droid")), "sequence",
         {"anchor": CAMERA, "side": side}),
    ]
    for occ, settings, normalization, cameras in scenes:
        ref = render_views(occ, cameras, settings=settings, backend="torch", depth_normalization=normalization)
        got = render_views(occ, cameras, settings=settings, backend="numba", depth_normalization=normalization)
        for name in cameras:
            r, g = ref[name], got[name]
            assert g.depth.shape == r.depth.shape and g.semantics.dtype == np.int32 and g.valid.any()
            for t in range(len(r)):
                assert_same_render(g.depth[t], g.semantics[t], g.alpha[t], r.depth[t], r.semantics[t],
                                   r.alpha[t])
            assert np.array_equal(g.valid, g.semantics >= 0)


def test_numba_backend_known_depth_occlusion_and_early_stop():
    occ = _occlusion_occupancy(num_frames=1)
    maps = render_condition_maps(occ, CAMERA, backend="numba")
    left, right = (slice(2, -2), slice(2, SIZE // 2 - 3)), (slice(2, -2), slice(SIZE // 2 + 3, -2))
    assert (maps.semantics[0][left] == 1).all() and (maps.semantics[0][right] == 2).all()
    assert np.abs(maps.depth[0][left] - 0.1).max() <= 2 * VOXEL
    assert np.abs(maps.depth[0][right] - 0.15).max() <= 2 * VOXEL
    # behind the opaque near plane, transmittance drops below 1e-4: alpha saturates at 1 - T
    assert maps.alpha[0][left].min() > 1 - 2e-4


def test_auto_backend_prefers_numba_and_falls_back_to_torch(monkeypatch):
    occ = occupancy_from_depths([plane(0.1)], [np.zeros((SIZE, SIZE), int)])
    calls = []
    real = condition_maps.render_numba
    monkeypatch.setattr(condition_maps, "render_numba", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert render_condition_maps(occ, CAMERA, backend="auto").valid.any() and calls
    calls.clear()
    monkeypatch.setattr(condition_maps, "numba_available", lambda: False)
    assert render_condition_maps(occ, CAMERA, backend="auto").valid.any() and not calls  # torch
    monkeypatch.setattr(render_numba, "numba", None)
    with pytest.raises(RuntimeError, match="numba"):
        render_condition_maps(occ, CAMERA, backend="numba")

"""Occ2GS rendering on analytic scenes: known depths, occlusion, the dense reference,
render -> back-project -> voxelize round trip, sequences, views and bad input."""

import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from occupancy_scenes import IDENTITY, K, SIZE, VOXEL, grid, occupancy_from_depths, plane
from orv_engine.occupancy import (
    BACKGROUND_LABEL, GaussianScaleRule, Occupancy4D, OccupancyInputError, SplatSettings, ViewCamera,
    depth_to_points, render_condition_maps, render_views, voxelize,
)
from orv_engine.occupancy.cameras import look_at, pinhole
from orv_engine.occupancy.projection import project
from orv_engine.occupancy.render_dense import rasterize_dense
from orv_engine.occupancy import condition_maps, render_occ2gs
from orv_engine.occupancy.render_occ2gs import rasterize

CAMERA = ViewCamera(K, IDENTITY, SIZE, SIZE)


def test_plane_renders_to_its_depth_within_a_voxel():
    occ = occupancy_from_depths([plane(0.1), plane(0.12)], [np.zeros((SIZE, SIZE), int)] * 2)
    maps = render_condition_maps(occ, CAMERA, backend="torch")
    assert maps.depth.shape == (2, SIZE, SIZE) and maps.semantics.dtype == np.int32
    inner = (slice(2, -2), slice(2, -2))  # plane borders may fall just outside voxels
    assert maps.valid[0][inner].all() and maps.valid[1][inner].all()
    assert np.abs(maps.depth[0][inner] - 0.1).max() <= VOXEL
    assert np.abs(maps.depth[1][inner] - 0.12).max() <= VOXEL
    assert (maps.semantics[0][inner] == 0).all()


def test_nearer_voxels_occlude_farther_ones():
    far = plane(0.15)
    near = plane(0.1)
    near[:, SIZE // 2:] = np.nan  # the near plane covers the left half only
    g = grid()
    coords, labels = [], []
    for depth, label in ((far, 2), (near, 1)):
        frame = depth_to_points(depth, K, IDENTITY, np.full(depth.shape, label))
        c, lab, _ = voxelize(frame.points, frame.labels, g)
        coords.append(c)
        labels.append(lab)
    occ = Occupancy4D(g, [np.concatenate(coords)], [np.concatenate(labels)], ("table", "cup", "bowl"))
    maps = render_condition_maps(occ, CAMERA, backend="torch")
    left, right = (slice(2, -2), slice(2, SIZE // 2 - 3)), (slice(2, -2), slice(SIZE // 2 + 3, -2))
    assert (maps.semantics[0][left] == 1).all() and (maps.semantics[0][right] == 2).all()
    assert np.abs(maps.depth[0][left] - 0.1).max() <= 2 * VOXEL  # ~1% bleed from behind (alpha <= 0.99)
    assert np.abs(maps.depth[0][right] - 0.15).max() <= 2 * VOXEL


def test_background_where_nothing_is_seen():
    depth = np.full((SIZE, SIZE), np.nan)
    depth[20:40, 20:40] = 0.1
    occ = occupancy_from_depths([depth], [np.zeros((SIZE, SIZE), int)])
    maps = render_condition_maps(occ, CAMERA, backend="torch")
    assert (maps.semantics[0][:10] == BACKGROUND_LABEL).all() and (maps.depth[0][:10] == 0).all()
    assert not maps.valid[0][:10].any() and maps.valid[0][25:35, 25:35].all()
    assert (maps.alpha[0][maps.valid[0]] >= 0.1).all() and (maps.alpha[0][~maps.valid[0]] < 0.1).all()


def _random_scene(seed, n=1200):
    rng = np.random.default_rng(seed)
    means = torch.tensor(rng.uniform([-0.05, -0.05, 0.08], [0.05, 0.05, 0.2], (n, 3)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 5, n))
    return means, labels


@pytest.mark.parametrize("seed, window_cells", [(0, 16_000_000), (1, 2_000)])
def test_fast_renderer_matches_the_dense_reference(seed, window_cells, monkeypatch):
    monkeypatch.setattr(render_occ2gs, "MAX_WINDOW_CELLS", window_cells)  # 2_000: many small batches
    means, labels = _random_scene(seed)
    pose = look_at([0.02, -0.03, 0.0], [0.0, 0.0, 0.14], up=(0, -1, 0))
    k = pinhole(60.0, 70.0, 23.5, 19.5)  # non-square pixels, off-centre principal point
    settings = SplatSettings(scale_rule=GaussianScaleRule(3.2, 0.00047))
    projected = project(means, torch.tensor(k), torch.tensor(pose), 40, 48, 0.002, settings)
    fast = rasterize(projected, labels, 40, 48, settings)
    dense = rasterize_dense(projected, labels, 40, 48, settings, chunk=1024)
    assert fast.valid.float().mean() > 0.5
    torch.testing.assert_close(fast.alpha, dense.alpha, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(fast.depth, dense.depth, atol=1e-4, rtol=1e-4)
    assert (fast.semantics != dense.semantics).float().mean() < 0.01  # argmax near-ties only


def test_scale_rule_grows_with_normalised_depth():
    rule = GaussianScaleRule.preset("bridge")
    sigma = rule.sigma(torch.tensor([1.0, 1.5, 2.0]), (1.0, 2.0), voxel_size=0.001)
    torch.testing.assert_close(sigma, torch.tensor([0.00023, 0.00023 * 1.5**3.7, 0.00023 * 2**3.7]))
    assert GaussianScaleRule.preset("droid") == GaussianScaleRule(3.2, 0.00047)
    doubled = rule.sigma(torch.tensor([1.0]), (1.0, 2.0), voxel_size=0.002)
    assert doubled.item() == pytest.approx(0.00046)


def _round_trip(settings):
    """Render a tilted, bent two-label surface, back-project the depth map, voxelize it."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    depth = 0.1 + 0.0004 * (cols - SIZE / 2) + 0.01 * np.exp(-((rows - 32) ** 2 + (cols - 32) ** 2) / 200)
    labels = np.zeros((SIZE, SIZE), int)
    labels[20:34, 20:34] = 1
    occ = occupancy_from_depths([depth], [labels])
    maps = render_condition_maps(occ, CAMERA, settings=settings, backend="torch")
    rendered = np.where(maps.valid[0], maps.depth[0], np.nan)
    frame = depth_to_points(rendered, K, IDENTITY, np.where(maps.valid[0], maps.semantics[0], 0))
    distance, nearest = cKDTree(occ.centers(0)).query(frame.points)
    coords, voxel_labels, _ = voxelize(frame.points, frame.labels, occ.grid)
    return occ, frame, distance, nearest, coords, voxel_labels


def test_render_back_project_voxelize_round_trip_within_a_voxel():
    # Gaussians no wider than half a voxel (k1 = 1): every back-projected pixel lies within
    # one voxel of an occupied voxel centre and carries that voxel's label
    small = SplatSettings(scale_rule=GaussianScaleRule(k1=1.0, k2=0.00023))
    occ, frame, distance, nearest, coords, voxel_labels = _round_trip(small)
    assert frame.points.shape[0] > 0.9 * SIZE * SIZE
    assert distance.max() <= VOXEL
    assert np.mean(frame.labels == occ.labels[0][nearest]) > 0.97  # label borders may mix
    original = set(map(tuple, occ.coords[0].tolist()))
    recovered = set(map(tuple, coords.tolist()))
    assert len(recovered & original) / len(original) > 0.6


def test_round_trip_with_the_paper_scale_rule_is_within_its_gaussian_size():
    # BridgeV2 preset: the farthest Gaussians reach sigma = k2 * 2^k1 ~ 3 voxels, and front-to-
    # back compositing leans towards nearer neighbours; the surface comes back within that
    _, frame, distance, _, _, _ = _round_trip(SplatSettings())
    sigma_max = 0.00023 * 2**3.7
    assert np.percentile(distance, 50) <= VOXEL and distance.max() <= sigma_max


def test_sequence_and_multiple_views():
    occ = occupancy_from_depths([plane(0.1), plane(0.11), plane(0.12)], [np.zeros((SIZE, SIZE), int)] * 3)
    side = ViewCamera(pinhole(80, 80, 31.5, 23.5),
                      np.stack([look_at([0.03, 0, 0.0], [0, 0, 0.11], up=(0, -1, 0))] * 3), 48, 64)
    maps = render_views(occ, {"anchor": CAMERA, "side": side}, backend="torch", depth_normalization="sequence")
    assert maps["anchor"].depth.shape == (3, SIZE, SIZE) and maps["side"].depth.shape == (3, 48, 64)
    assert maps["side"].valid.mean() > 0.3
    means = [maps["anchor"].depth[t][maps["anchor"].valid[t]].mean() for t in range(3)]
    assert means[0] < means[1] < means[2]
    clip = maps["anchor"].frames(1, 3)
    assert len(clip) == 2 and np.array_equal(clip.as_dict()["depth"], maps["anchor"].depth[1:3])


def test_bad_render_input():
    empty = Occupancy4D(grid(), [np.zeros((0, 3), np.int32)], [np.zeros(0, np.int32)])
    with pytest.raises(OccupancyInputError, match="occupancy"):
        render_condition_maps(empty, CAMERA)
    occ = occupancy_from_depths([plane(0.1)] * 2, [np.zeros((SIZE, SIZE), int)] * 2)
    with pytest.raises(OccupancyInputError, match="camera.intrinsics"):
        render_condition_maps(occ, ViewCamera(np.stack([K] * 3), IDENTITY, SIZE, SIZE))
    with pytest.raises(OccupancyInputError, match="camera.cam_to_world"):
        render_condition_maps(occ, ViewCamera(K, np.eye(3), SIZE, SIZE))
    with pytest.raises(OccupancyInputError, match="backend"):
        render_condition_maps(occ, CAMERA, backend="opengl")


def test_camera_looking_away_renders_background():
    occ = occupancy_from_depths([plane(0.1)], [np.zeros((SIZE, SIZE), int)])
    away = look_at([0, 0, 0], [0, 0, -1], up=(0, -1, 0))
    maps = render_condition_maps(occ, ViewCamera(K, away, SIZE, SIZE), backend="torch")
    assert not maps.valid.any() and (maps.semantics == BACKGROUND_LABEL).all()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only error path")
def test_gsplat_backend_without_cuda_says_so():
    occ = occupancy_from_depths([plane(0.1)], [np.zeros((SIZE, SIZE), int)])
    with pytest.raises(RuntimeError, match="CUDA"):
        render_condition_maps(occ, CAMERA, backend="gsplat")
    assert render_condition_maps(occ, CAMERA, backend="auto").valid.any()  # auto falls back to torch


def test_backend_registry_names_and_auto_order(monkeypatch):
    # one renderer per backend name; "auto" takes gsplat where it runs, else numba, else torch
    assert condition_maps.BACKENDS == ("auto", "torch", "numba", "gsplat")
    renderers = condition_maps.RENDERERS
    assert condition_maps.renderer_for("torch") is renderers["torch"]
    gsplat_here = dataclasses.replace(renderers["gsplat"], available=lambda: True, require=lambda: None)
    monkeypatch.setitem(renderers, "gsplat", gsplat_here)
    assert condition_maps.renderer_for("auto") is gsplat_here
    monkeypatch.setitem(renderers, "gsplat", dataclasses.replace(gsplat_here, available=lambda: False))
    monkeypatch.setitem(renderers, "numba", dataclasses.replace(renderers["numba"], available=lambda: False))
    assert condition_maps.renderer_for("auto") is renderers["torch"]

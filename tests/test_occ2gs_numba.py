"""The numba Occ2GS backend renders the same model as the torch renderer and the dense
reference: same projection, same fragments, same compositing (up to the T < 1e-4 early stop,
which moves alpha and depth by < 1e-4 and can flip only borderline pixels)."""

import dataclasses

import numpy as np
import pytest
import torch

from occupancy_scenes import IDENTITY, K, SIZE, VOXEL, grid, occupancy_from_depths, plane
from orv_engine.occupancy import (
    GaussianScaleRule, Occupancy4D, SplatSettings, ViewCamera, depth_to_points, render_condition_maps,
    render_views, voxelize,
)
from orv_engine.occupancy import (
    condition_maps, numba_compositing, numba_projection, numba_sorting, numba_support, render_numba,
)
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
    view = render_numba.rasterize_numba(projected, labels, 40, 48, settings)  # 40 rows: partial tiles
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
    real = condition_maps.RENDERERS["numba"]
    spy = dataclasses.replace(real, render=lambda *a, **k: calls.append(1) or real.render(*a, **k))
    monkeypatch.setitem(condition_maps.RENDERERS, "numba", spy)
    assert render_condition_maps(occ, CAMERA, backend="auto").valid.any() and calls
    calls.clear()
    monkeypatch.setitem(condition_maps.RENDERERS, "numba", dataclasses.replace(spy, available=lambda: False))
    assert condition_maps.renderer_for("auto") is condition_maps.RENDERERS["torch"]
    assert render_condition_maps(occ, CAMERA, backend="auto").valid.any() and not calls  # torch
    monkeypatch.setattr(numba_support, "numba", None)
    with pytest.raises(RuntimeError, match="numba"):
        render_condition_maps(occ, CAMERA, backend="numba")


def test_polynomial_exp_of_the_tile_kernel_is_accurate():
    # the kernel's vectorisable exp: relative error < 3e-6 on [-8, 0] (alpha moves by < 3e-6)
    x = np.linspace(-8.0, 0.0, 100_001).astype(np.float32)
    got = np.array([numba_compositing._exp_nonpositive(np.float32(v)) for v in x[::97]], np.float64)
    ref = np.exp(x[::97].astype(np.float64))
    assert np.abs(got / ref - 1).max() < 3e-6
    assert numba_compositing._exp_nonpositive(np.float32(-50.0)) < 1.0 / 255.0  # clamped far tail stays below alpha_min


def _thinned_wall_scene(seed, keep=0.35):
    """An opaque back wall (label 0) behind two thinned boxes (labels 1, 2) on a 1 mm grid."""
    rng = np.random.default_rng(seed)
    axis = (np.arange(-36, 36) + 0.5) * VOXEL
    a, b = np.meshgrid(axis, axis, indexing="ij")
    wall = np.stack([a.ravel(), b.ravel(), np.full(a.size, 0.16)], 1)
    boxes = []
    for label, (x0, depth) in enumerate(((-0.02, 0.11), (0.005, 0.13)), start=1):
        u = (np.arange(20) + 0.5) * VOXEL
        uu, vv, ww = np.meshgrid(u + x0, u - 0.01, u[:8] + depth, indexing="ij")
        box = np.stack([uu.ravel(), vv.ravel(), ww.ravel()], 1)
        box = box[rng.random(box.shape[0]) < keep]
        boxes.append((box, label))
    means = np.concatenate([wall] + [box for box, _ in boxes])
    labels = np.concatenate([np.zeros(wall.shape[0], np.int64)] + [np.full(box.shape[0], lab) for box, lab in boxes])
    order = rng.permutation(means.shape[0])  # input order must not matter
    return torch.tensor(means[order], dtype=torch.float32), torch.tensor(labels[order])


@pytest.mark.parametrize("height, width", [(37, 45), (48, 64)])  # 37 x 45: partial tiles on both sides
def test_tile_kernel_matches_the_dense_reference_on_a_thinned_scene(height, width):
    means, labels = _thinned_wall_scene(0)
    k = torch.tensor(pinhole(2.5 * width, 2.5 * width, (width - 1) / 2 + 1.3, (height - 1) / 2 - 0.7))
    pose = torch.tensor(look_at([0.01, -0.02, 0.0], [0.0, 0.0, 0.14], up=(0, -1, 0)))
    settings = SplatSettings()
    view = render_numba.render_numba(means, labels, k, pose, height, width, VOXEL, settings)
    dense = rasterize_dense(project(means, k, pose, height, width, VOXEL, settings), labels, height, width,
                            settings, chunk=1024)
    assert_same_render(view.depth, view.semantics, view.alpha, dense.depth, dense.semantics, dense.alpha)
    valid = view.valid.numpy() & dense.valid.numpy()
    assert valid.mean() > 0.9 and {0, 1, 2} <= set(view.semantics[view.valid].unique().tolist())
    assert np.abs(view.depth.numpy() - dense.depth.numpy())[valid].max() < VOXEL  # depth within a voxel
    assert (view.semantics.numpy() == dense.semantics.numpy()).mean() > 0.99


def test_early_termination_drops_only_what_is_hidden():
    # the same front plane with and without a crowd of Gaussians behind it: once every pixel of
    # a tile is saturated (T < 1e-4) the hidden ones are skipped, and the image moves by < T
    front = plane(0.1)
    occ = occupancy_from_depths([front], [np.full((SIZE, SIZE), 1)])
    means, labels = torch.from_numpy(occ.centers(0)).float(), torch.from_numpy(occ.labels[0]).long()
    rng = np.random.default_rng(0)
    hidden = torch.tensor(rng.uniform([-0.03, -0.03, 0.11], [0.03, 0.03, 0.14], (4000, 3)), dtype=torch.float32)
    both_means = torch.cat([hidden, means])
    both_labels = torch.cat([torch.full((hidden.shape[0],), 2), labels])
    settings = SplatSettings(scale_rule=GaussianScaleRule(3.7, 0.0012))  # ~1 px Gaussians: the plane is opaque
    depth_range = (0.1, 0.2)  # same Gaussian sizes in both renders
    alone = render_numba.render_numba(means, labels, K, IDENTITY, SIZE, SIZE, VOXEL, settings, depth_range)
    crowd = render_numba.render_numba(both_means, both_labels, K, IDENTITY, SIZE, SIZE, VOXEL, settings, depth_range)
    inner = (slice(3, -3), slice(3, -3))  # the plane's border pixels are not saturated
    assert alone.alpha[inner].min() > 1 - render_numba.EARLY_STOP_T
    assert (crowd.semantics[inner] == 1).all()
    assert torch.abs(crowd.alpha[inner] - alone.alpha[inner]).max() <= render_numba.EARLY_STOP_T
    assert torch.abs(crowd.depth[inner] - alone.depth[inner]).max() <= render_numba.EARLY_STOP_T * 0.1
    # the exhaustive torch renderer (no early stop) agrees everywhere
    exhaustive = rasterize(project(both_means, torch.tensor(K), torch.tensor(IDENTITY), SIZE, SIZE, VOXEL, settings,
                                   depth_range), both_labels, SIZE, SIZE, settings)
    assert_same_render(crowd.depth, crowd.semantics, crowd.alpha, exhaustive.depth, exhaustive.semantics,
                       exhaustive.alpha)


def test_fragment_threshold_is_the_float32_exp_boundary_and_bad_settings_are_refused():
    settings = SplatSettings()
    power = numba_compositing.power_threshold(settings)
    below = np.nextafter(power, np.float32(-np.inf))
    assert np.float32(np.exp(power)) >= np.float32(settings.alpha_min) > np.float32(np.exp(below))
    with pytest.raises(ValueError, match="alpha_min"):  # no fragment could ever pass
        numba_compositing.power_threshold(SplatSettings(opacity=0.001))
    with pytest.raises(ValueError, match="opacity"):  # would need exp below the kernel's domain
        numba_compositing.power_threshold(SplatSettings(opacity=1e5, alpha_max=0.99))


def test_tile_binning_keeps_depth_order_in_every_tile_for_any_chunking():
    # the counting sort may bin contiguous runs of Gaussians separately (one per thread): a
    # tile's list must still be every Gaussian whose footprint box meets it, in depth order
    rng = np.random.default_rng(4)
    num, height, width = 3000, 37, 45
    pixel = np.zeros((num, numba_projection.PIXEL_COLUMNS), np.int32)
    pixel[:, numba_projection.PIXEL_COL] = rng.integers(-6, width + 6, num)
    pixel[:, numba_projection.PIXEL_ROW] = rng.integers(-6, height + 6, num)
    pixel[:, numba_projection.PIXEL_RADIUS] = rng.integers(1, 9, num)
    c, r, rad = pixel[:, 0], pixel[:, 1], pixel[:, 2]
    pixel = pixel[(c + rad >= 0) & (c - rad < width) & (r + rad >= 0) & (r - rad < height)]  # the projection's cull
    tiles_x = -(-width // numba_sorting.TILE_W)
    starts, items = numba_sorting.bin_tiles(pixel, height, width, 1)
    for tile in range(starts.size - 1):
        col_lo, row_lo = (tile % tiles_x) * numba_sorting.TILE_W, (tile // tiles_x) * numba_sorting.TILE_H
        c, r, rad = pixel[:, 0], pixel[:, 1], pixel[:, 2]
        meets = ((c + rad >= col_lo) & (c - rad < col_lo + numba_sorting.TILE_W)
                 & (r + rad >= row_lo) & (r - rad < row_lo + numba_sorting.TILE_H))
        assert np.array_equal(items[starts[tile]:starts[tile + 1]], np.flatnonzero(meets))
    for chunks in (2, 3):
        got_starts, got_items = numba_sorting.bin_tiles(pixel, height, width, chunks)
        assert np.array_equal(got_starts, starts) and np.array_equal(got_items, items)


@pytest.mark.skipif(render_numba.numba is None or render_numba.numba.config.NUMBA_NUM_THREADS < 2,
                    reason="needs numba with at least 2 threads")
def test_parallel_and_serial_builds_project_and_render_the_same():
    # with more than one numba thread the projection and binning run their prange builds;
    # they must give exactly what the serial builds give (same records, same order, same image)
    means, labels = _random_scene(11, n=4000, num_labels=7)
    k, pose = _random_camera()
    numba = render_numba.numba
    previous = numba.get_num_threads()
    try:
        outputs = []
        for threads in (1, 2):
            numba.set_num_threads(threads)
            projected = render_numba.project_numba(means, k, pose, 40, 48, VOXEL, SplatSettings())
            outputs.append((projected, render_numba.rasterize_numba(projected, labels, 40, 48, SplatSettings())))
    finally:
        numba.set_num_threads(previous)
    (serial, serial_view), (parallel, parallel_view) = outputs
    assert serial.index.size > 1000  # most of the scene is in view
    assert np.array_equal(serial.index, parallel.index)
    assert np.array_equal(serial.splat, parallel.splat) and np.array_equal(serial.pixel, parallel.pixel)
    for name in ("depth", "semantics", "alpha"):
        assert torch.equal(getattr(serial_view, name), getattr(parallel_view, name))


def test_depth_order_is_a_stable_argsort_for_any_chunking():
    # many equal depths, negative and positive values, and a subset of the inputs
    rng = np.random.default_rng(7)
    z = rng.choice(np.float32([-0.5, 0.0, 0.25, 0.3, 1.5, 2.0]), 5000) + rng.choice(np.float32([0, 1e-3]), 5000)
    z = z.astype(np.float32)
    index = np.flatnonzero(rng.random(5000) < 0.8)
    expected = np.argsort(z[index], kind="stable")
    for build in (numba_sorting.depth_order, numba_sorting.depth_order.parallel):
        for chunks in (1, 2, 3):
            assert np.array_equal(build(z, index, chunks), expected)

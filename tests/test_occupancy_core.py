"""Points, voxelization (majority vote, bounds), Occupancy4D, storage, Eq. 1 alignment, Episode."""

import numpy as np
import pytest

from occupancy_scenes import IDENTITY, K, VOXEL, grid, occupancy_from_depths, plane
from orv_engine.data.episode import Episode, EpisodeMeta
from orv_engine.occupancy import (
    Occupancy4D, OccupancyInputError, VoxelGrid, depth_to_points, fit_depth_alignment,
    load_occupancy, occupancy_from_episode, point_map_to_points, rescale_cameras, save_occupancy,
    voxelize,
)


def test_depth_to_points_back_projects_pixels_to_known_rays():
    depth = plane(0.2, 8)
    pose = IDENTITY.copy()
    pose[:3, 3] = [1.0, 2.0, 3.0]
    frame = depth_to_points(depth, K, pose)
    assert frame.points.shape == (64, 3) and frame.num_invalid == 0
    # pixel (row 0, col 7): x = (7 - cx) / f * z, y = (0 - cy) / f * z
    expected = np.array([(7 - K[0, 2]) / K[0, 0] * 0.2, (0 - K[1, 2]) / K[1, 1] * 0.2, 0.2]) + [1, 2, 3]
    np.testing.assert_allclose(frame.points[7], expected)


def test_nan_and_nonpositive_depth_are_masked_and_counted():
    depth = plane(0.2, 4)
    depth[0, 0] = np.nan
    depth[1, 1] = -1.0
    depth[2, 2] = np.inf
    frame = depth_to_points(depth, K, IDENTITY)
    assert frame.num_invalid == 3
    assert frame.points.shape == (13, 3) and np.all(np.isfinite(frame.points))


@pytest.mark.parametrize("intrinsics, field", [(np.eye(3)[:2], "intrinsics"), (np.zeros((3, 3)), "intrinsics")])
def test_bad_intrinsics_name_the_field(intrinsics, field):
    with pytest.raises(OccupancyInputError, match=field):
        depth_to_points(plane(0.2, 4), intrinsics, IDENTITY)


def test_mismatched_labels_and_point_map_shapes_are_errors():
    with pytest.raises(OccupancyInputError, match="labels"):
        depth_to_points(plane(0.2, 4), K, IDENTITY, labels=np.zeros((3, 4), int))
    with pytest.raises(OccupancyInputError, match="point_map"):
        point_map_to_points(np.zeros((4, 4, 2)))


def test_point_map_confidence_filter_and_camera_transform():
    point_map = np.zeros((2, 2, 3))
    point_map[..., 2] = 1.0
    pose = IDENTITY.copy()
    pose[:3, 3] = [0.5, 0, 0]
    frame = point_map_to_points(point_map, cam_to_world=pose, confidence=np.array([[1, 0], [1, 1]]),
                                min_confidence=0.5)
    assert frame.num_invalid == 1
    np.testing.assert_allclose(frame.points, [[0.5, 0, 1]] * 3)


def test_majority_vote_and_ties_go_to_smallest_label():
    g = VoxelGrid((0.0, 0.0, 0.0), 1.0, (4, 4, 4))
    points = np.array([[0.1, 0.1, 0.1], [0.2, 0.2, 0.2], [0.9, 0.9, 0.9],  # voxel (0,0,0): 2, 2, 5
                       [1.5, 0.5, 0.5], [1.6, 0.5, 0.5]])  # voxel (1,0,0): 7 vs 3 tie
    labels = np.array([2, 2, 5, 7, 3])
    coords, voxel_labels, stats = voxelize(points, labels, g)
    assert coords.tolist() == [[0, 0, 0], [1, 0, 0]]
    assert voxel_labels.tolist() == [2, 3]
    assert (stats.num_points, stats.num_outside, stats.num_voxels) == (5, 0, 2)


def test_points_outside_bounds_are_counted_not_kept():
    g = VoxelGrid((0.0, 0.0, 0.0), 0.5, (2, 2, 2))
    points = np.array([[0.2, 0.2, 0.2], [1.0, 0.2, 0.2], [-0.01, 0.2, 0.2], [np.nan, 0, 0], [0.99, 0.99, 0.99]])
    coords, _, stats = voxelize(points, np.zeros(5, int), g)
    assert stats.num_outside == 3
    assert coords.tolist() == [[0, 0, 0], [1, 1, 1]]


def test_no_points_give_an_empty_frame():
    g = VoxelGrid((0.0, 0.0, 0.0), 1.0, (2, 2, 2))
    coords, labels, stats = voxelize(np.zeros((0, 3)), np.zeros(0, int), g)
    assert coords.shape == (0, 3) and labels.shape == (0,) and stats.num_voxels == 0
    with pytest.raises(OccupancyInputError, match="points"):
        voxelize(np.zeros((4, 2)), np.zeros(4, int), g)


def test_grid_presets_match_the_paper():
    bridge = VoxelGrid.preset("bridge", center=(0, 0, 0))
    droid = VoxelGrid.preset("droid", center=(0, 0, 0))
    assert bridge.voxel_size == 0.001 and bridge.shape == (400, 400, 400)
    assert droid.shape == (400, 400, 600) and VoxelGrid.preset("rt1", (0, 0, 0)).shape == (400, 400, 600)
    np.testing.assert_allclose(bridge.origin, (-0.2, -0.2, -0.2))
    with pytest.raises(OccupancyInputError, match="dataset"):
        VoxelGrid.preset("unknown", (0, 0, 0))


def test_occupancy_record_validates_coords_and_labels():
    g = VoxelGrid((0.0, 0.0, 0.0), 1.0, (2, 2, 2))
    with pytest.raises(OccupancyInputError, match="coords"):
        Occupancy4D(g, [np.array([[2, 0, 0]], np.int32)], [np.zeros(1, np.int32)])
    with pytest.raises(OccupancyInputError, match="label"):
        Occupancy4D(g, [np.array([[1, 0, 0]], np.int32)], [np.array([3], np.int32)], ("a", "b"))


def test_storage_round_trips_exactly(tmp_path):
    depth = plane(0.12)
    labels = np.zeros(depth.shape, int)
    labels[:, 32:] = 2
    occ = occupancy_from_depths([depth, plane(0.14), np.full(depth.shape, np.nan)], [labels, labels, labels])
    path = save_occupancy(occ, tmp_path / "episode_0")
    assert path.suffix == ".npz"
    back = load_occupancy(path)
    assert back.grid == occ.grid and back.label_names == occ.label_names
    assert back.num_frames == 3 and back.num_voxels(2) == 0
    for a, b, la, lb in zip(occ.coords, back.coords, occ.labels, back.labels):
        assert np.array_equal(a, b) and np.array_equal(la, lb) and b.dtype == np.int32


def test_storage_keeps_voxelize_counts(tmp_path):
    g = grid()
    from orv_engine.occupancy.points import FramePoints
    frames = [FramePoints(np.array([[0.0, 0.0, 0.15], [5.0, 0, 0]]), np.array([1, 1]), 0)]
    occ = Occupancy4D.from_points(frames, g, ("a", "b"))
    back = load_occupancy(save_occupancy(occ, tmp_path / "o.npz"))
    assert back.stats[0].num_outside == 1 and back.stats[0].num_points == 2


def test_load_rejects_other_files(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.zeros(2))
    with pytest.raises(OccupancyInputError, match="not an"):
        load_occupancy(tmp_path / "x.npz")


@pytest.mark.parametrize("with_shift", [False, True])
def test_alignment_recovers_known_scale_and_shift(with_shift):
    rng = np.random.default_rng(0)
    reference = rng.uniform(0.5, 2.0, (32, 32))
    shift = 0.3 if with_shift else 0.0
    source = (reference - shift) / 2.5 + rng.normal(0, 1e-4, reference.shape)
    source[0, :5] = np.nan  # invalid pixels are ignored
    fit = fit_depth_alignment(source, reference, with_shift=with_shift)
    assert fit.scale == pytest.approx(2.5, rel=1e-3)
    assert fit.shift == pytest.approx(shift, abs=1e-3)
    assert fit.num_pixels == 32 * 32 - 5 and fit.rmse < 1e-3
    poses = rescale_cameras(np.stack([np.eye(4)] * 2), fit.scale)
    assert poses.shape == (2, 4, 4) and poses[0, 0, 3] == 0


def test_alignment_bad_input():
    with pytest.raises(OccupancyInputError, match="shape"):
        fit_depth_alignment(np.ones((2, 2)), np.ones((3, 2)))
    with pytest.raises(OccupancyInputError, match="valid"):
        fit_depth_alignment(np.full((2, 2), np.nan), np.ones((2, 2)))


def _episode(num_frames=2, size=32):
    depth = np.full((num_frames, size, size), 0.1, np.float32)
    depth[1, :, :8] = 0.09  # frame 1: something nearer on the left
    seg = np.zeros((num_frames, size, size), np.int32)
    seg[:, :, 16:] = 7
    meta = EpisodeMeta(dataset="bridge", episode_id="test/0", source_file="none", index_in_file=0)
    return Episode(
        frames={"image_0": np.zeros((num_frames, size, size, 3), np.uint8)},
        actions=np.zeros((num_frames, 7), np.float32), states=np.zeros((num_frames, 7), np.float32),
        instruction="", meta=meta, depth={"image_0": depth}, segmentation={"image_0": seg},
        intrinsics={"image_0": K}, extrinsics={"image_0": np.eye(4)},
    )


def test_occupancy_from_episode_with_depth_and_segmentation():
    episode = _episode()
    label_map = np.zeros(8, int)
    label_map[7] = 1
    occ = occupancy_from_episode(episode, label_names=("table", "cup"), label_map=label_map)
    assert occ.num_frames == 2 and occ.grid.shape == (400, 400, 400)
    centers = occ.centers(0)
    assert np.all(np.abs(centers[:, 2] - 0.1) <= VOXEL)
    assert set(occ.labels[0].tolist()) == {0, 1}
    assert abs(occ.centers(1)[:, 2].min() - 0.09) <= VOXEL


def test_occupancy_from_episode_bad_input():
    episode = _episode()
    episode.intrinsics = {"image_0": np.eye(3)[None].repeat(5, 0)}
    with pytest.raises(OccupancyInputError, match=r"episode.intrinsics\['image_0'\]"):
        occupancy_from_episode(episode)
    rgb_only = _episode()
    rgb_only.depth = None
    with pytest.raises(OccupancyInputError, match="episode.depth"):
        occupancy_from_episode(rgb_only)

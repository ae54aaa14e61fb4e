"""Simulated episodes: generated here on the CPU simulator, written as RLDS, read back."""

from __future__ import annotations

import json

import numpy as np
import pytest

from orv_engine.data import RLDSReader
from orv_engine.sim.assets import SimAssetError, require_asset


def backproject(depth, intrinsics, cam_to_base):
    """(H, W) metres -> (H*W, 3) points in the robot-base frame (OpenCV camera axes)."""
    h, w = depth.shape
    v, u = np.mgrid[0:h, 0:w]
    z = depth.reshape(-1)
    x = (u.reshape(-1) + 0.5 - intrinsics[0, 2]) / intrinsics[0, 0] * z
    y = (v.reshape(-1) + 0.5 - intrinsics[1, 2]) / intrinsics[1, 1] * z
    points = np.stack([x, y, z, np.ones_like(z)], axis=1) @ cam_to_base.T
    return points[:, :3]


def test_missing_asset_names_the_download_command_and_cleans_up(tmp_path):
    empty = tmp_path / "data" / "robots" / "widowx"
    empty.mkdir(parents=True)  # what a failed ManiSkill download leaves behind
    with pytest.raises(SimAssetError, match="download_asset widowx250s"):
        require_asset("orv_widowx250s", tmp_path)
    assert not (tmp_path / "data" / "robots").exists()


def test_shared_widowx_asset_is_found(shared_data):
    assert require_asset("orv_widowx250s", shared_data / "maniskill").name == "wx250s.urdf"


@pytest.fixture(scope="module")
def panda_dataset(tmp_path_factory):
    pytest.importorskip("mani_skill")
    from orv_engine.sim.generate import write_sim_dataset

    path, stats = write_sim_dataset(tmp_path_factory.mktemp("sim"), robot="panda", episodes=2, camera_size=96,
                                    num_cameras=2)
    return path, stats


def test_generated_episodes_have_the_bridge_schema_plus_geometry(panda_dataset):
    path, stats = panda_dataset
    assert stats.episodes == 2 and stats.steps > 20
    reader = RLDSReader(path, cameras=["image_0", "image_1"])
    assert reader.schema.kind == "sim"
    steps = reader.builder.info.features["steps"].feature
    for key in ("image_0", "image_1", "state", "depth_0", "segmentation_1", "camera_intrinsics_0", "camera_extrinsics_1"):
        assert key in steps["observation"].keys()
    for key in ("action", "language_instruction", "is_first", "is_last", "is_terminal", "reward", "discount"):
        assert key in steps.keys()
    # the BridgeV2 reader reads it as Bridge too (Octo/OpenVLA-style consumers)
    as_bridge = list(RLDSReader(path, dataset="bridge"))
    assert len(as_bridge) == 2 and as_bridge[0].depth is None

    for ep in reader:
        assert ep.meta.extra["success"] and ep.instruction.startswith("put the ")
        n = len(ep)
        assert ep.frames["image_0"].shape == (n, 96, 96, 3) and ep.depth["image_1"].shape == (n, 96, 96)
        assert ep.labels[:4] == ["background", "floor", "table", "robot"]
        # Octo/OpenVLA relabelling: action[t] = state[t+1] - state[t] (angles wrapped)
        delta = ep.states[1:, :6] - ep.states[:-1, :6]
        delta[:, 3:] = (delta[:, 3:] + np.pi) % (2 * np.pi) - np.pi
        np.testing.assert_allclose(ep.actions[:-1, :6], delta, atol=2e-5)
        assert set(np.unique(ep.actions[:, 6])) == {0.0, 1.0}  # it opened and closed the gripper
        assert ep.states[:, 6].min() < 0.9 and ep.states[0, 6] > 0.9  # open at start, closed on the cube


def test_depth_and_segmentation_agree_in_3d(panda_dataset):
    path, _ = panda_dataset
    ep = next(iter(RLDSReader(path)))
    cam = "image_0"
    depth, seg = ep.depth[cam][0], ep.segmentation[cam][0]
    points = backproject(depth, ep.intrinsics[cam][0], ep.extrinsics[cam][0])
    labels = seg.reshape(-1)
    names = ep.labels
    table = points[labels == names.index("table")]
    assert len(table) > 500 and np.abs(np.median(table[:, 2])) < 0.004  # table top at z = 0
    source = ep.instruction[len("put the "):].split(" on the ")[0]
    cube = points[labels == names.index(source)]
    assert len(cube) > 5
    extent = np.percentile(cube, 95, axis=0) - np.percentile(cube, 5, axis=0)  # edge pixels mix depths
    assert (extent < 0.045).all() and 0.0 <= np.median(cube[:, 2]) <= 0.045  # a 4 cm cube on the table
    # at the last step the cube lies on the towel
    last = backproject(ep.depth[cam][-1], ep.intrinsics[cam][-1], ep.extrinsics[cam][-1])
    last_labels = ep.segmentation[cam][-1].reshape(-1)
    towel = last[last_labels == names.index("blue towel")]
    cube_end = last[last_labels == names.index(source)]
    assert len(cube_end) > 5 and np.linalg.norm(np.median(cube_end[:, :2], 0) - np.median(towel[:, :2], 0)) < 0.06


def test_widowx_episode_succeeds(shared_data):
    pytest.importorskip("mani_skill")
    from orv_engine.sim.generate import GenerationStats, record_episodes

    stats = GenerationStats()
    (episode,) = list(record_episodes("widowx", episodes=1, camera_size=64, first_seed=3, stats=stats))
    assert episode.meta.extra["success"] and episode.meta.extra["robot"] == "orv_widowx250s"
    assert 15 < len(episode) < 60 and stats.failures <= 2


def test_simulator_refuses_a_process_with_tensorflow():
    from orv_engine import import_order
    from orv_engine.sim.generate import make_env

    import_order.tensorflow()
    with pytest.raises(RuntimeError, match="own process"):
        make_env("panda")


def test_embedded_demo_dataset():
    from pathlib import Path

    import orv_engine

    path = Path(orv_engine.__file__).parent / "demo_data" / "orv_tabletop" / "1.0.0"
    reader = RLDSReader(path)
    episodes = list(reader)
    assert len(episodes) == 12 and len(list(RLDSReader(path, split="val"))) == 4
    assert all(ep.meta.extra["success"] for ep in episodes)
    assert all(json.loads(ep.meta.extra["semantic_names"])[0] == "background" for ep in episodes)
    size = sum(f.stat().st_size for f in path.iterdir())
    assert size < 10 * 2**20


def test_occupancy_of_a_simulated_episode_keeps_object_labels(panda_dataset):
    """Depth back-projected into 4D occupancy: the object's voxels carry the object's label."""
    from orv_engine.occupancy import occupancy_from_episode

    path, _ = panda_dataset
    episode = next(iter(RLDSReader(path)))
    occupancy = occupancy_from_episode(episode)
    assert occupancy.num_frames == len(episode) and occupancy.label_names == tuple(episode.labels)
    source = episode.instruction[len("put the "):].split(" on the ")[0]
    cube_label = episode.labels.index(source)
    table_label = episode.labels.index("table")
    first = occupancy.centers(0)
    cube = first[occupancy.labels[0] == cube_label]
    table = first[occupancy.labels[0] == table_label]
    assert len(cube) > 10 and len(table) > 100
    assert np.abs(np.median(table[:, 2])) < 0.004  # table top at z = 0 in the robot-base frame
    assert 0.0 < np.median(cube[:, 2]) < 0.045  # the 4 cm cube stands on it
    # the cube's voxels sit where its pixels back-project to
    cam = "image_0"
    points = backproject(episode.depth[cam][0], episode.intrinsics[cam][0], episode.extrinsics[cam][0])
    cube_pixels = points[episode.segmentation[cam][0].reshape(-1) == cube_label]
    assert np.linalg.norm(np.median(cube, 0) - np.median(cube_pixels, 0)) < 0.01

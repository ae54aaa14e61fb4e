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


# ------------------------------------------------------------------ appearance randomisation


def test_sampled_appearances_are_valid_and_recorded_as_json():
    from orv_engine.sim.appearance import CUBE_COLORS, TOWEL_COLORS, Appearance, sample_appearance

    draws = [sample_appearance(np.random.default_rng(s)) for s in range(40)]
    assert sample_appearance(np.random.default_rng(3)) == draws[3]  # a function of the seed
    for a in draws:
        assert len(set(a.cube_colors)) == 3 and set(a.cube_colors) <= set(CUBE_COLORS)
        assert a.towel_color in TOWEL_COLORS and a.towel_color not in a.cube_colors
        assert a.table_color != a.floor_color
        assert Appearance.from_json(a.to_json()) == a
        assert a.cube_name(0) in a.prompt() and a.towel_name in a.prompt()
    assert len({a.table_color for a in draws}) > 5 and len({a.light_azimuth for a in draws}) == 40
    assert Appearance.fixed().is_fixed and not draws[0].is_fixed


def _mean_colour(frames, mask):
    return frames[mask].reshape(-1, 3).astype(np.float64).mean(0)


def test_randomized_episodes_render_and_record_their_appearance(shared_data, tmp_path, monkeypatch):
    """Two seeds, two looks: the drawn colours are what the camera sees, the instruction names
    the drawn colour of the cube to move, and everything survives the RLDS round trip."""
    pytest.importorskip("mani_skill")
    monkeypatch.setenv("MS_ASSET_DIR", str(shared_data / "maniskill"))
    from orv_engine.data.rlds_writer import write_rlds
    from orv_engine.sim.appearance import CUBE_COLORS, Appearance
    from orv_engine.sim.generate import record_episodes
    from orv_engine.sim.rlds_schema import DATASET_NAME, episode_to_rlds, sim_features

    recorded = record_episodes("widowx", episodes=2, camera_size=96, first_seed=7, max_steps=2,
                               keep_failures=True, appearance="randomized")  # the look is set at reset
    rows = [episode_to_rlds(e, jpeg_quality=95) for e in recorded]
    path = write_rlds(tmp_path, DATASET_NAME, sim_features(1, (96, 96)), {"train": rows})
    episodes = list(RLDSReader(path))
    looks = [Appearance.from_json(ep.meta.extra["appearance"]) for ep in episodes]
    assert looks[0] != looks[1]
    for ep, look in zip(episodes, looks):
        assert ep.labels == ["background", "floor", "table", "robot", "cube 1", "cube 2", "cube 3", "towel"]
        source = [i for i in range(3) if look.cube_name(i) in ep.instruction]
        assert len(source) == 1 and ep.instruction.endswith(f"on the {look.towel_name}")
        frames, seg = ep.frames["image_0"][0], ep.segmentation["image_0"][0]
        for slot in range(3):  # each cube's pixels are nearest (in chromaticity) to its drawn colour
            seen = _mean_colour(frames, seg == ep.labels.index(f"cube {slot + 1}"))
            drawn = {name: np.asarray(CUBE_COLORS[name]) ** (1 / 2.2) for name in look.cube_colors}  # linear -> sRGB
            chroma = lambda c: c / (np.linalg.norm(c) + 1e-6)  # noqa: E731
            nearest = min(drawn, key=lambda n: np.linalg.norm(chroma(seen) - chroma(drawn[n])))
            assert nearest == look.cube_colors[slot], (slot, seen, look.cube_colors)
    tables = [_mean_colour(ep.frames["image_0"][0], ep.segmentation["image_0"][0] == 2) for ep in episodes]
    assert np.abs(tables[0] - tables[1]).max() > 10  # the table looks different


def test_killing_the_caller_stops_the_simulator_process(shared_data, tmp_path):
    """A killed orv-sim must not leave its simulator child running (it used to, at 100% CPU)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    pytest.importorskip("mani_skill")
    script = (
        "import multiprocessing, sys, time\n"
        "from orv_engine.sim.generate import record_episodes\n"
        "it = record_episodes('widowx', episodes=50, camera_size=64)\n"
        "next(it)\n"
        "print(multiprocessing.active_children()[0].pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    env = {**os.environ, "MS_ASSET_DIR": str(shared_data / "maniskill")}
    caller = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True, env=env)
    child = int(caller.stdout.readline())
    os.kill(caller.pid, signal.SIGKILL)
    caller.wait()
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        with open(f"/proc/{child}/stat") as f:
            if f.read().split()[2] == "Z":  # exited, not yet reaped by init
                return
        time.sleep(0.5)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the simulator process outlived its killed caller by 60 s")

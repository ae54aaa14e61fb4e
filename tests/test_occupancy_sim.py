"""End to end on a real simulated episode (ManiSkill3 tabletop, the repo's demo RLDS data):
Episode depth + segmentation -> Occupancy4D -> Occ2GS from the same camera agrees with
the simulator's own depth and labels."""

from pathlib import Path

import numpy as np
import pytest

from orv_engine.occupancy import ViewCamera, occupancy_from_episode, render_condition_maps

DEMO = Path(__file__).resolve().parents[1] / "orv_engine" / "demo_data" / "orv_tabletop"


@pytest.fixture(scope="module")
def sim_episode():
    if not (DEMO / "1.0.0" / "dataset_info.json").is_file():
        pytest.skip(f"demo simulation data not found at {DEMO}")
    from orv_engine.data.rlds_reader import RLDSReader

    episode = next(iter(RLDSReader(DEMO)))
    if episode.depth is None:
        pytest.skip("demo episode has no depth")
    return episode


def test_simulated_episode_renders_back_to_its_depth_and_labels(sim_episode):
    camera = next(iter(sim_episode.depth))
    frames = slice(0, 6)
    sim_episode.depth = {camera: sim_episode.depth[camera][frames]}
    sim_episode.segmentation = {camera: sim_episode.segmentation[camera][frames]}
    sim_episode.intrinsics = {camera: np.asarray(sim_episode.intrinsics[camera])[frames]}
    sim_episode.extrinsics = {camera: np.asarray(sim_episode.extrinsics[camera])[frames]}
    sim_episode.actions = sim_episode.actions[frames]
    occ = occupancy_from_episode(sim_episode, cameras=[camera])
    assert occ.label_names == tuple(sim_episode.labels)
    assert all(s.num_outside > 0 for s in occ.stats)  # far floor/background is outside the bounds, counted
    depth = sim_episode.depth[camera]
    height, width = depth.shape[1:]
    maps = render_condition_maps(occ, ViewCamera(sim_episode.intrinsics[camera], sim_episode.extrinsics[camera],
                                                 height, width), backend="torch")
    seen = maps.valid & (depth > 0)
    assert seen.mean() > 0.2
    error = np.abs(maps.depth - depth)[seen]
    assert np.median(error) < 3 * occ.grid.voxel_size and np.percentile(error, 90) < 0.01
    assert (maps.semantics[seen] == sim_episode.segmentation[camera][seen]).mean() > 0.9

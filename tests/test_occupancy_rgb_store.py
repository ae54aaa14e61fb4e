"""``orv-occupancy`` on the repo's simulated episodes: the RGB path with the simulator's own
depth and segmentation standing in for the models gives the geometry path's occupancy
(the oracle equivalence), and the store survives what a user does to it (resume, deleted
or truncated episode files, shards, a second config)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from orv_engine.config_validation import ConfigError
from orv_engine.data.rlds_reader import RLDSReader
from orv_engine.occupancy import OccupancyInputError, occupancy_from_episode
from orv_engine.occupancy.from_rgb.pipeline import label_ids, occupancy_from_video, rendered_maps
from orv_engine.occupancy.store.cli import main as occupancy_cli
from orv_engine.occupancy.store.config import job_config_from_dict
from orv_engine.occupancy.store.job import OccupancyJob, summary
from orv_engine.occupancy.store.store import DONE, SKIPPED, OccupancyStore

DEMO = Path(__file__).resolve().parents[1] / "orv_engine" / "demo_data" / "orv_tabletop" / "1.0.0"
STEPS = 8


def _short(episode, steps=STEPS):
    """The episode cut to its first ``steps`` steps (keeps the tests quick)."""
    cut = slice(0, steps)
    for name in ("frames", "depth", "segmentation", "intrinsics", "extrinsics"):
        value = getattr(episode, name)
        setattr(episode, name, {k: np.asarray(v)[cut] if np.ndim(v) >= 3 else v for k, v in value.items()})
    episode.actions, episode.states = episode.actions[cut], episode.states[cut]
    return episode


@pytest.fixture(scope="module")
def sim_episodes():
    if not (DEMO / "dataset_info.json").is_file():
        pytest.skip(f"demo simulation data not found at {DEMO}")
    return [_short(e) for e in RLDSReader(DEMO, split="val")]


def _voxel_sets(occupancy, t):
    return {tuple(c) for c in occupancy.coords[t]}


def test_rgb_path_with_recorded_depth_and_segmentation_equals_geometry_path(sim_episodes):
    for episode in sim_episodes[:2]:
        camera = episode.cameras[0]
        reference = occupancy_from_episode(episode, cameras=[camera])
        result = occupancy_from_video(episode, camera)  # depth, camera and labels all recorded
        assert result.sources == {"depth": "recorded", "camera": "dataset", "segmentation": "recorded"}
        assert result.occupancy.grid == reference.grid
        for t in range(reference.num_frames):
            a, b = _voxel_sets(result.occupancy, t), _voxel_sets(reference, t)
            assert len(a & b) / len(a | b) >= 0.95
            # and the labels by voxel agree (names: the RGB path appends "unknown" to the episode's)
            ref = dict(zip(map(tuple, reference.coords[t]), reference.labels[t]))
            names = result.occupancy.label_names
            got = {tuple(c): names[lab] for c, lab in zip(result.occupancy.coords[t], result.occupancy.labels[t])}
            same = [got[k] == reference.label_names[v] for k, v in ref.items() if k in got]
            assert np.mean(same) >= 0.95


def test_label_ids_map_classes_and_background_into_the_label_set():
    seg = np.array([[0, 1, -1], [2, 1, 0]])
    ids = label_ids(seg, ["pot", "spoon", "dragon"], ("spoon", "pot", "towel", "unknown"))
    np.testing.assert_array_equal(ids, [[1, 0, 3], [3, 0, 1]])  # "dragon" is not in the set -> unknown


class _FakeSegmenter:
    """Stands in for a model: paints class ``index`` where the recorded segmentation has ``seg_id``."""

    name = "fake"

    def __init__(self, episode, seg_id=None):
        self.seg = episode.segmentation[episode.cameras[0]]
        self.seg_id = seg_id

    def segment(self, frames, class_names):
        out = np.full(frames.shape[:3], -1, dtype=np.int64)
        if self.seg_id is not None:
            out[self.seg == self.seg_id] = 0
        return out


def test_model_segmenter_labels_and_no_instance_is_a_named_error(sim_episodes):
    episode = sim_episodes[0]
    robot = episode.labels.index("robot")
    result = occupancy_from_video(episode, segmenter=_FakeSegmenter(episode, robot), class_names=["robot"],
                                  label_names=("table", "robot"))
    assert result.occupancy.label_names == ("table", "robot", "unknown")
    assert result.sources["segmentation"] == "fake"
    maps = rendered_maps(result, *result.image_size, steps=[0], backend="torch")
    seg0 = episode.segmentation[episode.cameras[0]][0]
    robot_pixels = (seg0 == robot) & (maps["depth"][0] > 0)
    assert (maps["semantics"][0][robot_pixels] == 1).mean() > 0.8
    with pytest.raises(OccupancyInputError, match=f"episode {episode.meta.episode_id}.*no instance of robot"):
        occupancy_from_video(episode, segmenter=_FakeSegmenter(episode), class_names=["robot"])


def test_all_nan_depth_is_a_named_error(sim_episodes):
    episode = sim_episodes[0]
    camera = episode.cameras[0]
    saved = episode.depth[camera]
    episode.depth = {camera: np.full_like(saved, np.nan)}
    try:
        with pytest.raises(OccupancyInputError, match="no valid depth on the first frame"):
            occupancy_from_video(episode)
    finally:
        episode.depth = {camera: saved}


def _config(**overrides):
    values = {"dataset": {"path": str(DEMO), "split": "val"}, "depth": {"kind": "recorded"},
              "segmenter": {"kind": "recorded"}, "report_episodes": 2}
    for key, value in overrides.items():
        values.setdefault(key, {}).update(value) if isinstance(value, dict) else values.__setitem__(key, value)
    return job_config_from_dict(values)


@pytest.fixture(scope="module")
def store(tmp_path_factory, sim_episodes):
    root = tmp_path_factory.mktemp("store") / "orv_tabletop_occupancy"
    assert occupancy_cli(["run", "--config", _write(root.parent / "job.yaml", _config()), "--store", str(root),
                          "--no-progress"]) == 0
    return root


def _write(path, config):
    config.save(path)
    return str(path)


def test_store_holds_every_episode_with_maps_like_the_geometry_path(store, sim_episodes):
    result = summary(OccupancyStore(store))
    assert result["counts"] == {DONE: len(sim_episodes)}
    reader = RLDSReader(DEMO, split="val")
    episode = next(iter(reader))
    from orv_engine.data.sharding import episode_key

    key = episode_key(reader.files[0], 0)
    entry = OccupancyStore(store).read_episode(key)
    assert entry.camera == episode.cameras[0] and entry.image_size == episode.frames[entry.camera].shape[1:3]
    assert entry.occupancy.num_frames == len(episode)
    reference = occupancy_from_episode(episode, cameras=[entry.camera])
    assert all(_voxel_sets(entry.occupancy, t) == _voxel_sets(reference, t) for t in (0, len(episode) - 1))
    report = (store / "report" / "index.html").read_text()
    assert "Sampled episodes" in report and report.count("<img") == 2
    assert all((store / "report" / f"{k}.png").is_file() for k in report.split("<h3>")[1:2][0].split()[0:1])


def test_resume_redoes_only_deleted_or_damaged_episodes(store, tmp_path):
    copy = tmp_path / "moved_store"
    shutil.copytree(store, copy)  # a moved store still reads: nothing in it is an absolute path
    keys = sorted(OccupancyStore(copy).records())
    shutil.rmtree(OccupancyStore(copy).episode_dir(keys[0]))
    damaged = OccupancyStore(copy).episode_dir(keys[1]) / "occupancy.npz"
    damaged.write_bytes(damaged.read_bytes()[:100])  # truncated
    with pytest.raises(OccupancyInputError, match=f"{keys[1]}.*unreadable occupancy"):
        OccupancyStore(copy).read_episode(keys[1])
    with pytest.raises(OccupancyInputError, match=f"no occupancy for episode {keys[0]}"):
        OccupancyStore(copy).read_episode(keys[0])
    damaged.unlink()  # what a user does with a file the reader calls unreadable
    before = {k: (OccupancyStore(copy).episode_dir(k) / "meta.json").stat().st_mtime_ns for k in keys[2:]}
    logs = []
    job = OccupancyJob(_config(), copy, progress=False, log=logs.append)
    job.run(report=False)
    assert "2 episode(s) recorded as done have no files" in logs[0]
    for key in keys:
        OccupancyStore(copy).read_episode(key)
    assert before == {k: (OccupancyStore(copy).episode_dir(k) / "meta.json").stat().st_mtime_ns for k in keys[2:]}


def test_another_config_is_refused_and_shards_cover_the_dataset(store, tmp_path):
    with pytest.raises(ConfigError, match="another config.*voxel_size"):
        OccupancyJob(_config(voxel_size=0.002), store, progress=False)
    root = tmp_path / "sharded"
    for i in range(2):
        OccupancyJob(_config(), root, (i, 2), progress=False).run(report=False)
    records = OccupancyStore(root).records()
    assert sorted(records) == sorted(OccupancyStore(store).records())
    manifests = [json.loads(p.read_text()) for p in sorted((root / "manifest").glob("*.json"))]
    assert [m["shard"] for m in manifests] == [[0, 2], [1, 2]]
    assert sum(len(m["episodes"]) for m in manifests) == len(records)


def test_an_episode_that_cannot_be_built_is_a_counted_skip_with_its_reason(tmp_path):
    # depth.kind recorded on an RGB-only dataset: every episode skipped, named, nothing raised
    from rlds_fixtures import bridge_episode, write_bridge

    data = write_bridge(tmp_path / "rgb_only", {"train": [bridge_episode(4, seed=i) for i in range(2)]})
    config = job_config_from_dict({"dataset": {"path": str(data)}, "depth": {"kind": "recorded"},
                                   "segmenter": {"kind": "recorded"}})
    result = OccupancyJob(config, tmp_path / "store", progress=False).run()
    assert result["counts"] == {SKIPPED: 2}
    assert all("records no depth for camera" in reason for reason in result["skipped"].values())
    assert "records no depth" in (tmp_path / "store" / "report" / "index.html").read_text()


def test_config_names_missing_inputs(tmp_path):
    with pytest.raises(ConfigError, match="depth.model_path: empty"):
        OccupancyJob(job_config_from_dict({"dataset": {"path": str(DEMO)}, "segmenter": {"kind": "recorded"}}),
                     tmp_path / "s")
    with pytest.raises(ConfigError, match="labels.model: empty"):
        OccupancyJob(job_config_from_dict({"dataset": {"path": str(DEMO)}, "depth": {"kind": "recorded"},
                                           "segmenter": {"kind": "sam3_video", "model_path": str(tmp_path)}}),
                     tmp_path / "s")
    assert occupancy_cli(["run", "--config", _write(tmp_path / "bad.yaml", _config(dataset={"path": str(tmp_path / "nope")})),
                          "--store", str(tmp_path / "s2")]) == 2


def test_orv_augment_renders_its_conditions_from_the_store(tmp_path, sim_episodes):
    """source.occupancy: the sources stage reads the store instead of the episodes' geometry;
    with a store built from that geometry the maps are the same."""
    from augment.config import config_from_dict
    from augment.demo import write_demo_models
    from augment.runner import AugmentRun
    from augment.sources import load_source
    from test_augment_loop import small_config

    models = write_demo_models(tmp_path / "models")
    store = tmp_path / "store"
    OccupancyJob(_config(dataset={"split": "train", "max_episodes": 2}), store, progress=False).run(report=False)
    runs = {}
    for name, extra in (("geometry", {}), ("store", {"occupancy": str(store)})):
        run = AugmentRun(config_from_dict(small_config(models, **extra)), tmp_path / f"run_{name}", progress=False)
        run.run(stages=["sources"])
        runs[name] = {k: load_source(run.run_dir, k) for k in run.manifest.episodes}
    assert sorted(runs["store"]) == sorted(runs["geometry"]) and len(runs["store"]) == 2
    for key, source in runs["store"].items():
        reference = runs["geometry"][key].conditions
        assert set(source.conditions) == {"depth", "semantics"}
        np.testing.assert_allclose(source.conditions["depth"], reference["depth"], atol=1e-5)
        np.testing.assert_array_equal(source.conditions["semantics"], reference["semantics"])
    # an episode the store lacks is a skip with the store's reason, not a crash
    shutil.rmtree(OccupancyStore(store).episode_dir(sorted(runs["store"])[0]))
    run = AugmentRun(config_from_dict(small_config(models, occupancy=str(store))), tmp_path / "lacking", progress=False)
    run.run(stages=["sources"])
    reasons = [r["reason"] for r in run.manifest.episodes.values() if r["status"] == "skipped"]
    assert len(reasons) == 1 and "no occupancy for episode" in reasons[0]


def test_training_clips_take_their_conditions_from_the_store(tmp_path):
    from orv_engine.data.clips import clip_config
    from orv_engine.training.data import TrainClipDataset

    store = tmp_path / "store"
    OccupancyJob(_config(), store, progress=False).run(report=False)
    clip = clip_config("sim", num_frames=5, height=32, width=32, placeholder_frame=False, clip_interval=8)
    common = dict(split="val", shuffle=False, as_clips=True, condition_kinds=["depth", "semantics"])
    geometry = list(TrainClipDataset(DEMO, clip, **common))
    stored_ds = TrainClipDataset(DEMO, clip, occupancy_store=store, **common)
    stored = list(stored_ds)
    assert len(stored) == len(geometry) > 0 and not stored_ds.store_skips
    for a, b in zip(stored, geometry):
        for kind in ("depth", "semantics"):
            np.testing.assert_array_equal(a.conditions[kind], b.conditions[kind])
    keys = sorted(OccupancyStore(store).records())
    shutil.rmtree(OccupancyStore(store).episode_dir(keys[0]))
    lacking = TrainClipDataset(DEMO, clip, occupancy_store=store, **common)
    assert len(list(lacking)) < len(stored) and lacking.store_skips.total == 1


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_store(store, tmp_path):
    import os
    import signal
    import subprocess
    import sys
    import time

    root = tmp_path / "killed"
    config = _write(tmp_path / "job.yaml", _config())
    proc = subprocess.Popen([sys.executable, "-m", "orv_engine.occupancy.store.cli", "run", "--config", config,
                             "--store", str(root), "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = root / "manifest" / "shard-00000-of-00001.json"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        try:
            if any(r.get("status") == DONE for r in json.loads(manifest.read_text())["episodes"].values()):
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = sum(r.get("status") == DONE for r in json.loads(manifest.read_text())["episodes"].values())
    assert killed and done_at_kill < len(OccupancyStore(store).records()), "the run finished before the kill"
    OccupancyJob(_config(), root, progress=False).run(report=False)
    resumed, reference = OccupancyStore(root), OccupancyStore(store)
    assert sorted(resumed.records()) == sorted(reference.records())
    for key in reference.records():
        a, b = resumed.read_episode(key).occupancy, reference.read_episode(key).occupancy
        assert all(np.array_equal(x, y) for x, y in zip(a.coords, b.coords))
        assert all(np.array_equal(x, y) for x, y in zip(a.labels, b.labels))
    assert not list(root.rglob(".*.tmp*"))


def test_ray_runs_every_shard_and_gives_the_same_store(store, tmp_path):
    import ray

    from orv_engine.occupancy.store.job import run_with_ray

    try:
        result = run_with_ray(_config(), tmp_path / "ray_store", workers=2)
    finally:
        ray.shutdown()
    assert result["counts"] == {DONE: len(OccupancyStore(store).records())}
    manifests = sorted(p.name for p in (tmp_path / "ray_store" / "manifest").glob("*.json"))
    assert manifests == ["shard-00000-of-00002.json", "shard-00001-of-00002.json"]
    for key in OccupancyStore(store).records():
        a = OccupancyStore(tmp_path / "ray_store").read_episode(key).occupancy
        b = OccupancyStore(store).read_episode(key).occupancy
        assert all(np.array_equal(x, y) for x, y in zip(a.coords, b.coords))
    assert (tmp_path / "ray_store" / "report" / "index.html").is_file()

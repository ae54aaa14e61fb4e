"""The real BridgeV2 episodes (RGB only, ../shared/data/bridge_debug) through every stage of
``orv-occupancy`` with tiny random-weight models in the real formats (Depth Pro, SAM3 video,
Grounding DINO + SAM2 video, a VLM), then ``orv-augment`` on them with conditions from the
store. Random weights paint arbitrary masks, so these tests check the plumbing and the
failure handling; the numbers are checked where the models are (test_occupancy_rgb_*.py)."""

from __future__ import annotations

import numpy as np
import pytest

from filtering.backends.base import VLMBackend, VLMResponse
from orv_engine.occupancy.store.cli import main as occupancy_cli
from orv_engine.occupancy.store.config import job_config_from_dict
from orv_engine.occupancy.store.job import OccupancyJob
from orv_engine.occupancy.store.store import DONE, SKIPPED, OccupancyStore
from orv_engine.testing.tiny_depth import build_tiny_depth_pro
from orv_engine.testing.tiny_segmenters import build_tiny_grounding_dino, build_tiny_sam2_video, build_tiny_sam3_video

EPISODES = 2


class _ListingVLM(VLMBackend):
    """A VLM that lists objects like Qwen does (``answer``), or fails."""

    def __init__(self, answer: str | None):
        self.answer = answer
        self.requests = []

    def _generate(self, requests):
        self.requests += requests
        if self.answer is None:
            return [VLMResponse(text=None, error="ConnectionError: refused") for _ in requests]
        return [VLMResponse(text=self.answer, finish_reason="stop") for _ in requests]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("occupancy_models")
    return {"depth_pro": build_tiny_depth_pro(root / "depth_pro"), "sam3": build_tiny_sam3_video(root / "sam3"),
            "gdino": build_tiny_grounding_dino(root / "gdino", vocab=("robot", "pot", "spoon", "table")),
            "sam2": build_tiny_sam2_video(root / "sam2")}


def _values(bridge_debug, models, **segmenter):
    return {"dataset": {"path": str(bridge_debug), "max_episodes": EPISODES, "max_steps": 8},
            "depth": {"kind": "depth_pro", "model_path": str(models["depth_pro"])},
            "segmenter": {"kind": "sam3_video", "model_path": str(models["sam3"]), "score_threshold": 0.0, **segmenter},
            "labels": {"backend": "openai", "model": "served-vlm", "keyframes": 2, "num_clusters": 2},
            "report_episodes": 2}


@pytest.fixture(scope="module")
def bridge_store(bridge_debug, models, tmp_path_factory):
    """The store of the first Bridge episodes: objects listed by a VLM, label set clustered."""
    vlm = _ListingVLM("1. Robot\n2. Pot\n3. Spoon\n4. Table")
    mp = pytest.MonkeyPatch()
    mp.setattr("filtering.backends.make_backend", lambda config: vlm)
    try:
        root = tmp_path_factory.mktemp("bridge") / "bridge_occupancy"
        OccupancyJob(job_config_from_dict(_values(bridge_debug, models)), root, progress=False).run()
    finally:
        mp.undo()
    return root, vlm


def test_every_stage_runs_on_real_bridge_episodes(bridge_store, bridge_debug):
    root, vlm = bridge_store
    store = OccupancyStore(root)
    records = store.records()
    assert len(records) == EPISODES
    assert len(vlm.requests) == 2 * EPISODES and all(r.frames.shape[0] == 1 for r in vlm.requests)
    assert set(store.label_set().names) <= {"robot", "pot", "spoon", "table"} and len(store.label_set().names) == 2
    done = [k for k, r in records.items() if r["status"] == DONE]
    assert done, records
    for key in done:
        entry = store.read_episode(key)
        assert entry.sources == {"depth": "depth_pro", "camera": "depth_model", "segmentation": "sam3_video"}
        assert entry.image_size == (64, 64) and entry.occupancy.num_frames == records[key]["steps"]
        assert entry.occupancy.label_names[-1] == "unknown" and not entry.occupancy.is_empty
        assert entry.cameras.intrinsics.shape == (entry.occupancy.num_frames, 3, 3)
        np.testing.assert_array_equal(entry.cameras.extrinsics, np.broadcast_to(np.eye(4), entry.cameras.extrinsics.shape))
    report = (root / "report" / "index.html").read_text()
    assert "Label set (2)" in report and report.count("<img") == min(2, len(done))


def test_grounded_sam2_video_is_the_papers_alternative(bridge_debug, models, tmp_path):
    values = _values(bridge_debug, models, kind="grounded_sam2_video", grounding_dino_path=str(models["gdino"]),
                     sam2_path=str(models["sam2"]), box_threshold=0.0, text_threshold=0.0)
    values["dataset"]["max_episodes"] = 1
    values["labels"] = {"names": ["robot", "pot"]}  # a fixed label set: no VLM
    result = OccupancyJob(job_config_from_dict(values), tmp_path / "store", progress=False).run(report=False)
    assert result["episodes"] == 1 and result["label_set"] == ["robot", "pot"]
    for key, record in OccupancyStore(tmp_path / "store").records().items():
        if record["status"] == DONE:
            assert record["sources"]["segmentation"] == "grounded_sam2_video"
        else:  # random boxes may find nothing: then a skip that says so
            assert "found no instance" in record["reason"]


def test_a_vlm_that_answers_nothing_usable_stops_at_the_label_set_with_the_reasons(bridge_debug, models, tmp_path,
                                                                                  monkeypatch, capsys):
    monkeypatch.setattr("filtering.backends.make_backend", lambda config: _ListingVLM(None))
    config = tmp_path / "job.yaml"
    job_config_from_dict(_values(bridge_debug, models)).save(config)
    assert occupancy_cli(["run", "--config", str(config), "--store", str(tmp_path / "store"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert f"none of the {EPISODES} episodes gave a usable object name" in err and "ConnectionError: refused" in err


def test_a_segmenter_that_finds_nothing_is_a_counted_skip_per_episode(bridge_debug, models, tmp_path, monkeypatch):
    # what SAM3 returns above every score (test_occupancy_rgb_instances.py checks that it does)
    monkeypatch.setattr("orv_engine.occupancy.from_rgb.instances.Sam3VideoSegmenter.segment",
                        lambda self, frames, class_names: np.full(frames.shape[:3], -1, np.int64))
    values = _values(bridge_debug, models)
    values["labels"] = {"names": ["robot"]}
    values["dataset"]["max_episodes"] = 2
    result = OccupancyJob(job_config_from_dict(values), tmp_path / "store", progress=False).run()
    assert result["counts"] == {SKIPPED: 2}
    assert all("the segmenter found no instance of robot" in r for r in result["skipped"].values())


def test_orv_augment_runs_end_to_end_on_real_bridge_with_the_store(bridge_store, bridge_debug, tmp_path):
    from augment.config import config_from_dict
    from augment.demo import write_demo_models
    from augment.runner import AugmentRun
    from test_augment_loop import small_config

    root, _ = bridge_store
    done = sorted(k for k, r in OccupancyStore(root).records().items() if r["status"] == DONE)
    values = small_config(write_demo_models(tmp_path / "models"), occupancy=str(root), dataset="bridge")
    values["source"].update(path=str(bridge_debug), max_episodes=EPISODES)
    summary = AugmentRun(config_from_dict(values), tmp_path / "run", progress=False).run()
    manifest = AugmentRun(config_from_dict(values), tmp_path / "run", progress=False).manifest
    ready = sorted(k for k, r in manifest.episodes.items() if r["status"] == "ready")
    assert ready == done  # every episode the store holds is augmented; the others are skipped with its reason
    assert all("occupancy" in r["reason"] for r in manifest.episodes.values() if r["status"] != "ready")
    assert summary["units"].get("scored", 0) == 2 * len(done) and summary["export"]


def test_real_480x640_bridge_video_through_the_models(shared_data, models):
    """A real 480x640 Bridge clip (no actions, no geometry) through depth, camera, instances and
    voxels; the maps rendered back at the model's resolution line up with the frames."""
    from orv_engine.data.clip_files import read_clip
    from orv_engine.data.episode import Episode, EpisodeMeta
    from orv_engine.occupancy.from_rgb.depth import load_depth_estimator
    from orv_engine.occupancy.from_rgb.instances import Sam3VideoSegmenter
    from orv_engine.occupancy.from_rgb.pipeline import occupancy_from_video, rendered_maps

    path = shared_data / "bridge_real" / "bridge_real_1.mp4"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    frames = read_clip(path)[:4]
    assert frames.shape[1:] == (480, 640, 3)
    episode = Episode(frames={"image_0": frames}, actions=np.zeros((4, 7), np.float32),
                      states=np.zeros((4, 7), np.float32), instruction="",
                      meta=EpisodeMeta("bridge", "bridge_real_1", str(path), 0))
    result = occupancy_from_video(episode, "image_0", load_depth_estimator(models["depth_pro"]),
                                  Sam3VideoSegmenter(models["sam3"], score_threshold=0.0), ["robot", "pot"],
                                  ("robot", "pot", "table"))
    assert result.image_size == (480, 640) and result.occupancy.num_frames == 4
    K = result.cameras.intrinsics[0]
    assert K[0, 0] == K[1, 1] > 0 and abs(K[0, 2] - 319.5) < 1e-6 and abs(K[1, 2] - 239.5) < 1e-6
    maps = rendered_maps(result, 60, 80)
    assert maps["depth"].shape == (4, 60, 80) and (maps["depth"] > 0).mean() > 0.2
    assert set(np.unique(maps["semantics"])) <= {-1, 0, 1, 2, 3}

"""Reading RLDS episodes: real Bridge episodes, self-written datasets, and bad input."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from orv_engine.data import DatasetError, RLDSReader, SkipReport
from orv_engine.data.rlds_writer import bridge_features, write_rlds
from rlds_fixtures import bridge_episode, frame_for_step, write_bridge


def test_reads_real_bridge_episodes(bridge_debug):
    reader = RLDSReader(bridge_debug)
    episodes = list(reader)
    assert reader.schema.kind == "bridge"
    assert len(episodes) == reader.num_episodes == 25
    for ep in episodes:
        assert list(ep.frames) == ["image_0"]  # only the camera asked for is decoded
        assert ep.frames["image_0"].shape == (10, 64, 64, 3) and ep.frames["image_0"].dtype == np.uint8
        assert ep.actions.shape == (10, 7) and ep.actions.dtype == np.float32
        assert ep.states.shape == (10, 7)
        assert ep.instruction and ep.meta.source_file.endswith("tfrecord-00000-of-00001")
    ids = [ep.meta.episode_id for ep in episodes]
    assert len(set(ids)) == 25
    # Bridge gripper actions live in [0, 1]; EEF deltas are small.
    acts = np.concatenate([ep.actions for ep in episodes])
    assert acts[:, 6].min() >= 0 and acts[:, 6].max() <= 1 and np.abs(acts[:, :3]).max() < 0.1


def test_absent_camera_is_known_as_absent(bridge_debug):
    # In the Octo debug fixture image_3 is all zeros (and has_image_k is False everywhere,
    # even for cameras that did record: pixels decide).
    episodes = list(RLDSReader(bridge_debug, cameras=["image_0", "image_3"]))
    assert all("image_3" in ep.meta.absent_cameras for ep in episodes)
    assert all(list(ep.frames) == ["image_0"] for ep in episodes)
    assert episodes[0].meta.extra["has_image_0"] is False  # metadata kept as the dataset says


def test_self_written_dataset_round_trips(tiny_bridge):
    reader = RLDSReader(tiny_bridge)
    assert len(reader.files) == 3
    episodes = sorted(reader, key=lambda ep: ep.meta.extra["episode_id"])
    assert [len(ep) for ep in episodes] == [20, 12, 9, 5, 16, 11]
    expected = bridge_episode(12, seed=1)
    np.testing.assert_allclose(episodes[1].actions, [s["action"] for s in expected["steps"]])
    np.testing.assert_allclose(episodes[1].states, [s["observation"]["state"] for s in expected["steps"]])
    video = episodes[1].frames["image_0"]
    assert np.abs(video[:, 0, 0, 0].astype(int) - [frame_for_step(t)[0, 0, 0] for t in range(12)]).max() <= 3


def test_missing_directory_is_a_clear_error(tmp_path):
    with pytest.raises(DatasetError, match="not found: .*nowhere"):
        RLDSReader(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no dataset_info.json"):
        RLDSReader(tmp_path)


def test_unknown_split_and_camera(bridge_debug):
    with pytest.raises(DatasetError, match="no split 'test'.*train"):
        RLDSReader(bridge_debug, split="test")
    with pytest.raises(DatasetError, match="camera.*wrist.*image_0"):
        RLDSReader(bridge_debug, cameras=["wrist"])


def test_missing_feature_key_names_the_field(tmp_path):
    tf_import = __import__("orv_engine.import_order", fromlist=["x"])
    tf, tfds = tf_import.tensorflow(), tf_import.tensorflow_datasets()
    f = tfds.features
    features = f.FeaturesDict({"steps": f.Dataset({
        "observation": f.FeaturesDict({"image_0": f.Image(shape=(8, 8, 3), dtype=tf.uint8)}),
        "action": f.Tensor(shape=(7,), dtype=tf.float32),
        "language_instruction": f.Text(),
    })})
    episode = {"steps": [{"observation": {"image_0": np.zeros((8, 8, 3), np.uint8)},
                          "action": np.zeros(7, np.float32), "language_instruction": "x"}]}
    path = write_rlds(tmp_path, "bridge_dataset", features, {"train": [episode]})
    with pytest.raises(DatasetError, match="missing feature.*steps/observation/state"):
        RLDSReader(path)


def test_truncated_tfrecord(bridge_debug, tmp_path):
    copy = tmp_path / "bridge_dataset" / "1.0.0"
    shutil.copytree(bridge_debug, copy)
    record = copy / "bridge_dataset-train.tfrecord-00000-of-00001"
    data = record.read_bytes()
    record.chmod(0o644)
    record.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match="corrupt or truncated tfrecord .*bridge_dataset-train.tfrecord-00000"):
        list(RLDSReader(copy, on_bad="raise"))
    report = SkipReport()
    episodes = list(RLDSReader(copy, report=report))
    assert 0 < len(episodes) < 25
    assert report.counts["corrupt or truncated tfrecord (rest of the file skipped)"] == 1


def test_nan_actions_are_a_counted_skip_or_an_error(tmp_path):
    good = bridge_episode(6, seed=0)
    bad = bridge_episode(6, seed=1)
    bad["steps"][3]["action"] = np.array([0, 0, np.nan, 0, 0, 0, 1], np.float32)
    bad_state = bridge_episode(6, seed=2)
    bad_state["steps"][1]["observation"]["state"] = np.array([np.inf, 0, 0, 0, 0, 0, 1], np.float32)
    path = write_bridge(tmp_path, {"train": [good, bad, bad_state]})
    report = SkipReport()
    episodes = list(RLDSReader(path, report=report))
    assert len(episodes) == 1
    assert report.counts["non-finite action (NaN/inf)"] == 1
    assert report.counts["non-finite state (NaN/inf)"] == 1
    assert "step 3, dim 2" in report.format()
    with pytest.raises(DatasetError, match="step 3, dim 2: non-finite action"):
        list(RLDSReader(path, on_bad="raise"))


def test_images_of_wrong_shape_are_skipped(tmp_path):
    import io

    from PIL import Image

    tfds = __import__("orv_engine.import_order", fromlist=["x"]).tensorflow_datasets()
    del tfds
    # Encoded JPEG bytes bypass tfds' shape check, as a broken converter's output would.
    good = bridge_episode(4, seed=0)
    bad = bridge_episode(4, seed=1)
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 24, 3), np.uint8) + 50).save(buf, format="JPEG")
    bad["steps"][2]["observation"]["image_0"] = buf.getvalue()
    path = write_bridge(tmp_path, {"train": [good, bad]})
    report = SkipReport()
    episodes = list(RLDSReader(path, report=report))
    assert len(episodes) == 1 and report.counts["image_0 image of wrong shape"] == 1
    assert "step 2: (16, 24, 3), expected (32, 32, 3)" in report.format()


def test_features_of_bridge_writer_match_the_real_dataset(bridge_debug):
    tfds = __import__("orv_engine.import_order", fromlist=["x"]).tensorflow_datasets()
    real = tfds.builder_from_directory(str(bridge_debug)).info.features
    ours = bridge_features((64, 64))
    assert set(ours["steps"].feature.keys()) == set(real["steps"].feature.keys())
    assert set(ours["steps"].feature["observation"].keys()) == set(real["steps"].feature["observation"].keys())

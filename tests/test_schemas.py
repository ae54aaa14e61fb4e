"""Standardization of the DROID and RT-1 Open-X schemas (datasets written here with tfds)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from orv_engine import import_order
from orv_engine.data import RLDSReader
from orv_engine.data.rlds_writer import write_rlds
from orv_engine.data.schemas import relative_to_absolute_gripper, schema_for


def test_relative_gripper_commands_become_absolute():
    # +1 close, -1 open, 0 keep -> 1 open, 0 closed; before the first command: its opposite
    rel = np.array([0, 0, 1, 0, 0, -1, 0, 1])
    np.testing.assert_array_equal(relative_to_absolute_gripper(rel), [1, 1, 0, 0, 0, 1, 1, 0])
    np.testing.assert_array_equal(relative_to_absolute_gripper(np.zeros(3)), [1, 1, 1])
    np.testing.assert_array_equal(relative_to_absolute_gripper(np.array([0, -1, 0])), [0, 1, 1])


def test_schema_lookup():
    assert schema_for("bridge_orig").kind == "bridge"
    assert schema_for("fractal20220817_data").kind == "rt1"
    assert schema_for("droid").kind == "droid"
    with pytest.raises(KeyError, match="no standardization for dataset 'kuka'"):
        schema_for("kuka")


def test_rt1_schema(tmp_path):
    tf, tfds = import_order.tensorflow(), import_order.tensorflow_datasets()
    f = tfds.features
    features = f.FeaturesDict({"steps": f.Dataset({
        "observation": f.FeaturesDict({
            "image": f.Image(shape=(16, 20, 3), dtype=tf.uint8),
            "base_pose_tool_reached": f.Tensor(shape=(7,), dtype=tf.float32),
            "gripper_closed": f.Tensor(shape=(1,), dtype=tf.float32),
            "natural_language_instruction": f.Text(),
        }),
        "action": f.FeaturesDict({
            "world_vector": f.Tensor(shape=(3,), dtype=tf.float32),
            "rotation_delta": f.Tensor(shape=(3,), dtype=tf.float32),
            "gripper_closedness_action": f.Tensor(shape=(1,), dtype=tf.float32),
        }),
        "is_first": f.Scalar(dtype=tf.bool),
    })})
    rpy = np.array([0.1, -0.2, 0.3])
    quat = Rotation.from_euler("xyz", rpy).as_quat().astype(np.float32)  # xyzw
    steps = [{
        "observation": {
            "image": np.full((16, 20, 3), 100, np.uint8),
            "base_pose_tool_reached": np.concatenate([[0.5, 0.1, 0.2 + t], quat]).astype(np.float32),
            "gripper_closed": np.array([float(t >= 2)], np.float32),
            "natural_language_instruction": "pick coke can",
        },
        "action": {
            "world_vector": np.array([0.01 * t, 0, 0], np.float32),
            "rotation_delta": np.array([0, 0.02, 0], np.float32),
            "gripper_closedness_action": np.array([1.0 if t == 1 else 0.0], np.float32),
        },
        "is_first": t == 0,
    } for t in range(4)]
    path = write_rlds(tmp_path, "fractal20220817_data", features, {"train": [{"steps": steps}]})
    (episode,) = list(RLDSReader(path))
    assert episode.meta.dataset == "rt1" and episode.instruction == "pick coke can"
    assert episode.frames["image"].shape == (4, 16, 20, 3)
    np.testing.assert_allclose(episode.states[:, 3:6], np.tile(rpy, (4, 1)), atol=1e-5)
    np.testing.assert_allclose(episode.states[:, 2], [0.2, 1.2, 2.2, 3.2], atol=1e-6)
    np.testing.assert_array_equal(episode.states[:, 6], [1, 1, 0, 0])  # 1 = open
    np.testing.assert_array_equal(episode.actions[:, 6], [1, 0, 0, 0])  # close command at t=1
    np.testing.assert_allclose(episode.actions[:, 0], [0, 0.01, 0.02, 0.03], atol=1e-7)


def test_droid_schema(tmp_path):
    tf, tfds = import_order.tensorflow(), import_order.tensorflow_datasets()
    f = tfds.features
    cams = ("exterior_image_1_left", "exterior_image_2_left", "wrist_image_left")
    features = f.FeaturesDict({"steps": f.Dataset({
        "observation": f.FeaturesDict({
            **{c: f.Image(shape=(18, 32, 3), dtype=tf.uint8) for c in cams},
            "cartesian_position": f.Tensor(shape=(6,), dtype=tf.float64),
            "gripper_position": f.Tensor(shape=(1,), dtype=tf.float64),
        }),
        "action_dict": f.FeaturesDict({
            "cartesian_velocity": f.Tensor(shape=(6,), dtype=tf.float64),
            "gripper_position": f.Tensor(shape=(1,), dtype=tf.float64),
        }),
        "language_instruction": f.Text(),
        "language_instruction_2": f.Text(),
    })})
    steps = [{
        "observation": {
            "exterior_image_1_left": np.full((18, 32, 3), 80, np.uint8),
            "exterior_image_2_left": np.full((18, 32, 3), 90, np.uint8),
            "wrist_image_left": np.zeros((18, 32, 3), np.uint8),  # not recorded
            "cartesian_position": np.arange(6, dtype=np.float64) + t,
            "gripper_position": np.array([0.25 * t]),
        },
        "action_dict": {"cartesian_velocity": np.full(6, 0.1 * t), "gripper_position": np.array([0.5])},
        "language_instruction": "", "language_instruction_2": "open the drawer",
    } for t in range(3)]
    path = write_rlds(tmp_path, "droid", features, {"train": [{"steps": steps}]})
    (episode,) = list(RLDSReader(path, cameras=["exterior_image_2_left", "wrist_image_left"]))
    assert episode.instruction == "open the drawer"
    assert list(episode.frames) == ["exterior_image_2_left"] and episode.meta.absent_cameras == ("wrist_image_left",)
    np.testing.assert_allclose(episode.states[:, 6], [1.0, 0.75, 0.5])
    np.testing.assert_allclose(episode.actions[:, 6], [0.5, 0.5, 0.5])
    np.testing.assert_allclose(episode.actions[2, :6], 0.2)

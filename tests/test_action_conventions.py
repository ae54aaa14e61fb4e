"""Upstream ORV's eef-frame actions, checked against an independent implementation with
explicit rotation matrices (R = Rz(yaw) Ry(pitch) Rx(roll), Euler angles back by atan2)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from orv_engine.data.action_conventions import (
    ACTION_CONVENTIONS,
    EEF_FRAME_SCALE,
    eef_frame_actions,
    wrap_angle,
)


def rot_x(a: float) -> np.ndarray:
    c, s = math.cos(a), math.sin(a)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rot_y(b: float) -> np.ndarray:
    c, s = math.cos(b), math.sin(b)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rot_z(g: float) -> np.ndarray:
    c, s = math.cos(g), math.sin(g)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def matrix_from_rpy(roll: float, pitch: float, yaw: float) -> np.ndarray:
    return rot_z(yaw) @ rot_y(pitch) @ rot_x(roll)


def rpy_from_matrix(m: np.ndarray) -> np.ndarray:
    """(x, y, z) with m = Rz(z) Ry(y) Rx(x), each in (-pi, pi] (away from gimbal lock)."""
    x = math.atan2(m[2, 1], m[2, 2])
    y = math.atan2(-m[2, 0], math.hypot(m[0, 0], m[1, 0]))
    z = math.atan2(m[1, 0], m[0, 0])
    return np.array([a + 2 * math.pi if a <= -math.pi else a for a in (x, y, z)])


def reference_actions(states: np.ndarray, scale=EEF_FRAME_SCALE) -> np.ndarray:
    states = np.asarray(states, np.float64)
    out = np.zeros((len(states) - 1, 7))
    for k in range(1, len(states)):
        r_prev = matrix_from_rpy(*states[k - 1, 3:6])
        r_curr = matrix_from_rpy(*states[k, 3:6])
        out[k - 1, :3] = r_prev.T @ (states[k, :3] - states[k - 1, :3])
        out[k - 1, 3:6] = rpy_from_matrix(r_prev.T @ r_curr)
        out[k - 1, 6] = states[k, 6]
    return out * np.asarray(scale)


def random_states(rng: np.random.Generator, n: int) -> np.ndarray:
    """A trajectory whose yaw keeps crossing +-pi, with moderate roll/pitch."""
    xyz = np.cumsum(rng.normal(0, 0.02, (n, 3)), axis=0) + [0.3, 0.0, 0.1]
    roll = rng.uniform(-math.pi, math.pi, n)
    pitch = rng.uniform(-1.0, 1.0, n)
    yaw = np.where(rng.random(n) < 0.5, math.pi, -math.pi) - np.sign(rng.normal(size=n)) * rng.uniform(0, 0.05, n)
    yaw = wrap_angle(yaw)
    gripper = rng.uniform(0, 1, n)
    return np.column_stack([xyz, roll, pitch, yaw, gripper])


def test_conventions():
    assert ACTION_CONVENTIONS == ("dataset", "eef-frame")
    assert EEF_FRAME_SCALE == (20.0, 20.0, 20.0, 20.0, 20.0, 20.0, 1.0)


def test_the_reference_matrices_are_scipys_extrinsic_xyz():
    from scipy.spatial.transform import Rotation

    rpy = (0.3, -0.7, 2.9)
    np.testing.assert_allclose(matrix_from_rpy(*rpy), Rotation.from_euler("xyz", rpy).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(rpy_from_matrix(matrix_from_rpy(*rpy)), rpy, atol=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_explicit_rotation_matrices_with_yaw_near_pi(seed):
    states = random_states(np.random.default_rng(seed), 40)
    assert (np.abs(states[:, 5]) > math.pi - 0.06).all()
    actions = eef_frame_actions(states)
    assert actions.shape == (39, 7) and actions.dtype == np.float32
    np.testing.assert_allclose(actions, reference_actions(states), atol=2e-5)
    angles = actions[:, 3:6] / 20.0
    assert (angles > -math.pi).all() and (angles <= math.pi + 1e-6).all()


def test_float32_states_and_a_custom_scale():
    states = random_states(np.random.default_rng(5), 10).astype(np.float32)
    scale = (1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0)
    np.testing.assert_allclose(eef_frame_actions(states, scale), reference_actions(states, scale), atol=2e-5)


def test_identity_orientation_gives_scaled_world_deltas():
    rng = np.random.default_rng(3)
    states = np.zeros((12, 7))
    states[:, :3] = np.cumsum(rng.normal(0, 0.05, (12, 3)), axis=0)
    states[:, 6] = rng.uniform(0, 1, 12)
    actions = eef_frame_actions(states)
    np.testing.assert_allclose(actions[:, :3], 20 * np.diff(states[:, :3], axis=0), atol=1e-6)
    assert not actions[:, 3:6].any()
    np.testing.assert_allclose(actions[:, 6], states[1:, 6], atol=1e-7)  # the later gripper state


def test_translation_is_in_the_earlier_eef_frame_and_yaw_wraps():
    states = np.zeros((3, 7))
    states[0, 5] = math.pi / 2  # facing +y: a world step along +x is a step along -y of the EEF
    states[1, :3] = [0.1, 0.0, 0.0]
    states[1, 5] = 3.1
    states[2, :3] = [0.1, 0.0, 0.0]
    states[2, 5] = -3.1  # across +-pi: a small positive turn, not -6.2 rad
    actions = eef_frame_actions(states)
    np.testing.assert_allclose(actions[0, :3], [0.0, -2.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(actions[0, 5], 20 * (3.1 - math.pi / 2), atol=1e-5)
    np.testing.assert_allclose(actions[1, 5], 20 * (2 * math.pi - 6.2), atol=1e-5)


def test_a_half_turn_comes_out_as_plus_pi():
    states = np.zeros((2, 7))
    states[1, 5] = math.pi
    yaw = eef_frame_actions(states, scale=np.ones(7))[0, 5]
    assert yaw == pytest.approx(math.pi, abs=1e-6)


@pytest.mark.parametrize(
    ("states", "match"),
    [
        (np.zeros((5, 6)), "states must be \\(frames, 7\\)"),
        (np.zeros(7), "states must be \\(frames, 7\\)"),
        (np.zeros((1, 7)), "at least 2 frames"),
        (np.array([["a"] * 7, ["b"] * 7]), "real numbers"),
    ],
)
def test_bad_states_are_refused(states, match):
    with pytest.raises(ValueError, match=match):
        eef_frame_actions(states)


def test_non_finite_states_name_frame_and_column():
    states = np.zeros((4, 7))
    states[2, 4] = np.nan
    with pytest.raises(ValueError, match="frame 2, column 4"):
        eef_frame_actions(states)


@pytest.mark.parametrize("scale", [(1.0,) * 6, (1.0,) * 6 + (np.inf,), "big"])
def test_bad_scale_is_refused(scale):
    with pytest.raises(ValueError, match="scale"):
        eef_frame_actions(np.zeros((3, 7)), scale)

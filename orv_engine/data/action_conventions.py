"""Which 7-d actions a clip carries: the episode's own, or upstream ORV's, recomputed from
the robot states.

Why two: this project conditions on the episode's stored actions (BridgeV2's convention:
world-frame EEF delta xyz and delta roll/pitch/yaw, gripper command; every schema in
:mod:`orv_engine.data.schemas` is standardized to it). The official ORV code ignores the
stored actions and recomputes them from consecutive *states* of the sampled frames, in the
end-effector frame of the earlier state, and scales them. A checkpoint trained one way must
be driven the same way, so the convention is a clip setting
(:attr:`orv_engine.data.clips.ClipConfig.action_convention`):

- ``"dataset"``: the episode's ``actions`` (what the project does by default);
- ``"eef-frame"``: upstream's. For sampled frames ``k = 1..n`` with states
  ``(p, roll, pitch, yaw, g)`` and ``R = Rz(yaw) Ry(pitch) Rx(roll)``::

      a_k = [R_{k-1}^T (p_k - p_{k-1}),  euler_xyz(R_{k-1}^T R_k),  g_k] * [20]*6 + [1]

  with the Euler angles ``(x, y, z)`` of the same ``Rz Ry Rx`` decomposition, each in
  ``(-pi, pi]``. ``R = Rz Ry Rx`` is scipy's *extrinsic* ``"xyz"`` sequence (lower case),
  which is also how this project's states were made (``Rotation.as_euler("xyz")`` in the RT-1
  schema and the simulator's recorder; DROID's ``cartesian_position`` uses the same).

Which state columns are used. ``Episode.states`` is ``(T, 7)`` for every preset:

- columns 0-2: EEF position xyz (metres, robot base frame);
- columns 3-5: EEF roll, pitch, yaw (radians, ``R = Rz(yaw) Ry(pitch) Rx(roll)``);
- column 6: the gripper *state*, open-ness with 1 = open / 0 = closed
  (BridgeV2 / ``orv_tabletop``: ``observation/state[6]`` as stored, the simulator writes the
  finger joint's open fraction in [0, 1]; RT-1: ``1 - observation/gripper_closed``; DROID:
  ``1 - observation/gripper_position``).

Upstream reads a separate *continuous* gripper state (``continuous_gripper_state`` of its
annotation files) for the 7th action entry, unscaled. Here column 6 of the states plays
that role. It is continuous where the dataset's is, and it counts open-ness (1 = open),
like BridgeV2's gripper action: where upstream's annotation stored a closed-ness (DROID's
raw ``gripper_position``), the 7th entry here is ``1 -`` upstream's.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.spatial.transform import Rotation

from orv_engine.preprocessing import ACTION_CONVENTIONS, EEF_FRAME_SCALE  # the checkpoint's vocabulary

STATE_DIM = 7
POSITION = slice(0, 3)  # columns of Episode.states
ORIENTATION = slice(3, 6)  # roll, pitch, yaw
GRIPPER = 6

# scipy's extrinsic x-y-z sequence: R = Rz(yaw) @ Ry(pitch) @ Rx(roll).
EULER_SEQUENCE = "xyz"


def check_action_convention(convention: str, field: str = "action_convention") -> str:
    if convention not in ACTION_CONVENTIONS:
        raise ValueError(
            f"{field} must be one of {', '.join(map(repr, ACTION_CONVENTIONS))}, got {convention!r}"
        )
    return convention


def check_action_scale(scale, field: str = "action_scale") -> np.ndarray:
    """A 7-vector of finite numbers, as float64."""
    try:
        values = np.asarray(scale, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{field} must be {STATE_DIM} numbers, got {scale!r}") from None
    if values.shape != (STATE_DIM,):
        raise ValueError(f"{field} must be {STATE_DIM} numbers, got shape {values.shape}")
    if not np.isfinite(values).all():
        raise ValueError(f"{field} must be finite, got {values.tolist()}")
    return values


def wrap_angle(angles: np.ndarray) -> np.ndarray:
    """Angles (radians) -> ``(-pi, pi]``."""
    wrapped = np.mod(np.asarray(angles, np.float64) + np.pi, 2.0 * np.pi) - np.pi  # [-pi, pi)
    return np.where(wrapped <= -np.pi, wrapped + 2.0 * np.pi, wrapped)


def eef_frame_actions(states: np.ndarray, scale=EEF_FRAME_SCALE) -> np.ndarray:
    """Upstream ORV's actions between consecutive states (module docstring).

    Args:
        states: ``(n + 1, 7)`` states of the sampled frames, in ``Episode.states``' layout.
        scale: 7 multipliers (upstream's ``[20] * 6 + [1]`` by default).

    Returns:
        ``(n, 7)`` float32; row ``k - 1`` moves sampled frame ``k - 1`` to frame ``k``.
    """
    states = np.asarray(states)
    if states.ndim != 2 or states.shape[1] != STATE_DIM:
        raise ValueError(
            f"states must be (frames, {STATE_DIM}) = xyz, roll/pitch/yaw, gripper; got shape {states.shape}"
        )
    if len(states) < 2:
        raise ValueError(f"states must hold at least 2 frames (one action), got {len(states)}")
    if not np.issubdtype(states.dtype, np.number) or np.issubdtype(states.dtype, np.complexfloating):
        raise ValueError(f"states must be real numbers, got dtype {states.dtype}")
    states = states.astype(np.float64)
    bad = ~np.isfinite(states)
    if bad.any():
        frame, column = map(int, np.argwhere(bad)[0])
        raise ValueError(
            f"states must be finite: {int(bad.sum())} non-finite value(s), first at frame {frame}, "
            f"column {column} ({states[frame, column]})"
        )
    scale = check_action_scale(scale, "scale")

    rotations = Rotation.from_euler(EULER_SEQUENCE, states[:, ORIENTATION])
    previous_inv = rotations[:-1].inv()
    translation = previous_inv.apply(states[1:, POSITION] - states[:-1, POSITION])
    with warnings.catch_warnings():
        # A relative pitch of +-90 degrees between two frames (gimbal lock) is physically
        # implausible for one control step; scipy then sets the last angle to 0, as upstream
        # does, and warns.
        warnings.filterwarnings("ignore", message=".*[Gg]imbal lock.*")
        rotation = wrap_angle((previous_inv * rotations[1:]).as_euler(EULER_SEQUENCE))
    actions = np.concatenate([translation, rotation, states[1:, GRIPPER : GRIPPER + 1]], axis=1)
    return (actions * scale).astype(np.float32)


def episode_actions(states: np.ndarray, actions: np.ndarray, convention: str, scale=None) -> np.ndarray:
    """A whole episode's per-step actions ``(T, 7)`` in a checkpoint's ``convention``.

    "dataset": ``actions`` as stored. "eef-frame": recomputed from the ``(T, 7)`` states, one
    per step; the last step has no next state, so its action keeps the arm still and the
    gripper state (the rule :func:`orv_engine.data.clips.cut_clips` applies at an episode's end).
    """
    check_action_convention(convention, "convention")
    actions = np.asarray(actions, np.float32)
    if convention == "dataset":
        return actions
    states = np.asarray(states)
    if len(states) < 2:
        raise ValueError(f"eef-frame actions need at least 2 states, got {len(states)}")
    padded = np.concatenate([states, states[-1:]], axis=0)  # the last step: no motion
    return eef_frame_actions(padded, EEF_FRAME_SCALE if scale is None else scale)

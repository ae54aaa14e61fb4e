"""A policy's Bridge-convention action -> the ManiSkill controller's action.

Policies trained on BridgeV2 output ``[dx, dy, dz, droll, dpitch, dyaw, gripper]``: an
end-effector delta in the robot base frame (metres, radians) and the absolute gripper
command in ``[0, 1]`` (1 = open). ManiSkill's EEF delta-pose controllers take
``[dx, dy, dz, axis-angle (3), gripper]`` with the gripper in ``[-1, 1]`` (1 = open), in
raw units (the WidowX Bridge controller, ``normalize_action=False``) or scaled to
``[-1, 1]`` by the controller's bounds (Panda's ``pd_ee_delta_pose``). SimplerEnv's adapter
does the same conversions (roll/pitch/yaw -> axis-angle, gripper binarised at 0.5).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation


class BadActionError(ValueError):
    """The policy returned something that is not one finite 7-d action."""


def check_action(action) -> np.ndarray:
    try:
        arr = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise BadActionError(f"action is not numeric: {err}") from None
    if arr.shape != (7,):
        raise BadActionError(f"action must have shape (7,), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise BadActionError(f"non-finite action {arr.tolist()}")
    return arr


class ControllerAdapter:
    """Built from the env's arm controller config (bounds, normalisation)."""

    def __init__(self, normalize: bool = False, pos_bound: float = 1.0, rot_bound: float = 1.0,
                 gripper_threshold: float = 0.5):
        self.normalize = normalize
        self.pos_bound = pos_bound
        self.rot_bound = rot_bound
        self.gripper_threshold = gripper_threshold

    @classmethod
    def from_env(cls, env) -> "ControllerAdapter":
        agent = env.unwrapped.agent
        controllers = getattr(agent.controller, "controllers", {})
        arm = controllers.get("arm")
        config = getattr(arm, "config", None)
        normalize = bool(getattr(config, "normalize_action", False))
        pos = float(getattr(config, "pos_upper", 1.0)) if normalize else 1.0
        rot = float(getattr(config, "rot_upper", 1.0)) if normalize else 1.0
        return cls(normalize, pos, rot)

    def __call__(self, action) -> np.ndarray:
        a = check_action(action)
        xyz = a[:3]
        rotvec = Rotation.from_euler("xyz", a[3:6]).as_rotvec()
        gripper = 1.0 if a[6] > self.gripper_threshold else -1.0
        if self.normalize:
            xyz = np.clip(xyz / self.pos_bound, -1, 1)
            rotvec = np.clip(rotvec / self.rot_bound, -1, 1)
        return np.concatenate([xyz, rotvec, [gripper]]).astype(np.float32)

"""A scripted pick-and-place policy for ``ORVTabletop-v1`` (privileged: it reads object poses).

Waypoints in the world frame, planned from the objects' start poses (above the cube, down, close, lift, above the towel, down,
open, up), followed with a proportional step in end-effector space and a fixed downward
gripper orientation. Steps are limited to ``max_step`` metres per 5 Hz control step, as
a teleoperator's would be. Works with any robot whose controller takes EEF delta poses;
``to_action`` maps a world-frame delta to the controller's action space.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

GRIPPER_OPEN, GRIPPER_CLOSED = 1.0, -1.0  # ManiSkill's normalised gripper command


def tcp_pose(env):
    """World pose of the tool centre point (Panda's ``tcp``, WidowX's ``ee_gripper_link``)."""
    agent = env.agent
    if hasattr(agent, "tcp"):
        return agent.tcp.pose
    return agent.robot.links_map["ee_gripper_link"].pose


class PickPlacePolicy:
    def __init__(self, env, max_step: float = 0.04, lift: float = 0.12, hold_steps: int = 2):
        self.env = env.unwrapped
        self.max_step = max_step
        self.lift = lift
        self.hold_steps = hold_steps
        self.phase = 0
        self.hold = 0
        self.gripper = GRIPPER_OPEN
        self.done = False
        self._plan = None

    def _waypoints(self):
        if self._plan is None:  # planned once, from where the objects start
            self._plan = self._make_waypoints()
        return self._plan

    def _make_waypoints(self):
        env = self.env
        cube = env.source.pose.p[0].cpu().numpy()
        towel = env.towel.pose.p[0].cpu().numpy()
        h = float(cube[2])
        above_cube = cube + [0, 0, self.lift]
        grasp = cube + [0, 0, -0.3 * h]
        above_towel = np.array([towel[0], towel[1], above_cube[2]])
        release = np.array([towel[0], towel[1], towel[2] + 2.2 * h + 0.01])
        # (target position or None, gripper command, tolerance)
        return [
            (above_cube, GRIPPER_OPEN, 0.01),
            (grasp, GRIPPER_OPEN, 0.006),
            (None, GRIPPER_CLOSED, None),  # close
            (above_cube, GRIPPER_CLOSED, 0.015),
            (above_towel, GRIPPER_CLOSED, 0.01),
            (release, GRIPPER_CLOSED, 0.01),
            (None, GRIPPER_OPEN, None),  # open
            (above_towel, GRIPPER_OPEN, 0.02),
        ]

    def __call__(self) -> np.ndarray:
        """The next action, in the environment's action space."""
        waypoints = self._waypoints()
        if self.phase >= len(waypoints):
            self.done = True
            return self.to_action(np.zeros(3), self.gripper)
        target, gripper, tol = waypoints[self.phase]
        self.gripper = gripper
        position = tcp_pose(self.env).p[0].cpu().numpy()
        if target is None:  # close or open in place for a few steps
            self.hold += 1
            if self.hold >= self.hold_steps:
                self.hold = 0
                self.phase += 1
            return self.to_action(np.zeros(3), gripper)
        error = target - position
        if np.linalg.norm(error) < tol:
            self.phase += 1
            return self(  # go on with the next waypoint in this same step
            ) if self.phase < len(waypoints) and waypoints[self.phase][0] is not None else self.to_action(np.zeros(3), gripper)
        step = error * min(1.0, self.max_step / max(np.linalg.norm(error), 1e-9))
        return self.to_action(step, gripper)

    def to_action(self, world_delta: np.ndarray, gripper: float) -> np.ndarray:
        env = self.env
        base_q = env.agent.robot.pose.q[0].cpu().numpy()  # wxyz
        delta = _rotate_inverse(base_q, world_delta)
        controller = env.agent.controller.controllers["arm"] if hasattr(env.agent.controller, "controllers") else None
        normalised = getattr(getattr(controller, "config", None), "normalize_action", True)
        if normalised:  # Panda's pd_ee_delta_pose: [-1, 1] <-> [-0.1, 0.1] m
            low = float(getattr(controller.config, "pos_lower", -0.1))
            high = float(getattr(controller.config, "pos_upper", 0.1))
            delta = np.clip((delta - low) / (high - low) * 2 - 1, -1, 1)
        return np.concatenate([delta, np.zeros(3), [gripper]]).astype(np.float32)


def _rotate_inverse(q_wxyz: np.ndarray, v: np.ndarray) -> np.ndarray:
    w, x, y, z = q_wxyz
    return Rotation.from_quat([x, y, z, w]).inv().apply(v)

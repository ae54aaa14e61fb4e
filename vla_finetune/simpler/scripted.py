"""A privileged scripted policy that speaks the Bridge action convention (harness check).

It reads object poses from the simulator (so it is no VLA), plans pick(-and-place)
waypoints with ``orv_engine.sim.scripted_policy.PickPlacePolicy`` and emits what a Bridge
policy emits: base-frame EEF deltas, zero rotation, gripper 1 = open / 0 = closed. Its
actions go through :class:`vla_finetune.simpler.adapter.ControllerAdapter` like any
policy's, so a run that grasps shows the whole chain (policy convention -> controller ->
success/grasp metrics) is right. Knows ``ORVTabletop-v1`` (cube -> towel) and
``PickCube-v1`` (cube -> goal).
"""

from __future__ import annotations

import numpy as np

from orv_engine.sim.scripted_policy import GRIPPER_OPEN, PickPlacePolicy, _rotate_inverse


class BridgeScriptedPolicy(PickPlacePolicy):
    def _make_waypoints(self):
        env = self.env
        if not hasattr(env, "goal_site"):  # ORVTabletop: cube onto the towel
            return super()._make_waypoints()
        cube = env.cube.pose.p[0].cpu().numpy()
        goal = env.goal_site.pose.p[0].cpu().numpy()
        half = float(getattr(env, "cube_half_size", 0.02))
        above = cube + [0, 0, 0.08]
        return [(above, GRIPPER_OPEN, 0.01), (cube + [0, 0, -0.2 * half], GRIPPER_OPEN, 0.006),
                (None, -GRIPPER_OPEN, None), (cube + [0, 0, 0.06], -GRIPPER_OPEN, 0.015),
                (goal, -GRIPPER_OPEN, 0.01)]

    def to_action(self, world_delta: np.ndarray, gripper: float) -> np.ndarray:
        base_q = self.env.agent.robot.pose.q[0].cpu().numpy()
        delta = _rotate_inverse(base_q, world_delta)
        return np.concatenate([delta, np.zeros(3), [1.0 if gripper > 0 else 0.0]]).astype(np.float32)

    # the VLAPolicy interface (the image is not needed: the policy is privileged)
    def reset(self, instruction: str) -> None:
        self.phase, self.hold, self.done, self._plan, self.gripper = 0, 0, False, None, GRIPPER_OPEN

    def act(self, image: np.ndarray) -> np.ndarray:
        return self()

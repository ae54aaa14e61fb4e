"""A privileged scripted policy that speaks the Bridge action convention (harness check).

It reads object poses from the simulator (so it is no VLA), plans pick(-and-place)
waypoints with ``orv_engine.sim.scripted_policy.PickPlacePolicy`` and emits what a Bridge
policy emits: base-frame EEF deltas, zero rotation, gripper 1 = open / 0 = closed. Its
actions go through :class:`vla_finetune.simpler.adapter.ControllerAdapter` like any
policy's, so a run that grasps shows the whole chain (policy convention -> controller ->
success/grasp metrics) is right. Knows ``ORVTabletop-v1`` (cube -> towel), ``PickCube-v1``
(cube -> goal) and the Bridge twins (``BaseBridgeEnv``: ``objs[source_obj_name]`` onto
``objs[target_obj_name]``, heights from the task's settled bounding boxes).
"""

from __future__ import annotations

import numpy as np

from orv_engine.sim.scripted_policy import GRIPPER_OPEN, PickPlacePolicy, _rotate_inverse


class BridgeScriptedPolicy(PickPlacePolicy):
    def _make_waypoints(self):
        env = self.env
        if hasattr(env, "source_obj_name"):  # a Bridge twin: source object onto the target object
            return self._bridge_waypoints()
        if not hasattr(env, "goal_site"):  # ORVTabletop: cube onto the towel
            return super()._make_waypoints()
        cube = env.cube.pose.p[0].cpu().numpy()
        goal = env.goal_site.pose.p[0].cpu().numpy()
        half = float(getattr(env, "cube_half_size", 0.02))
        above = cube + [0, 0, 0.08]
        return [(above, GRIPPER_OPEN, 0.01), (cube + [0, 0, -0.2 * half], GRIPPER_OPEN, 0.006),
                (None, -GRIPPER_OPEN, None), (cube + [0, 0, 0.06], -GRIPPER_OPEN, 0.015),
                (goal, -GRIPPER_OPEN, 0.01)]

    def _bridge_waypoints(self):
        env = self.env
        source = env.objs[env.source_obj_name].pose.p[0].cpu().numpy()
        target = env.objs[env.target_obj_name].pose.p[0].cpu().numpy()
        # half heights of the bounding boxes the task itself uses for success (world frame, at reset)
        src_half = abs(float(env.episode_source_obj_bbox_world[2])) / 2
        tgt_half = abs(float(env.episode_target_obj_bbox_world[2])) / 2
        above = source + [0, 0, 0.08]
        place = np.array([target[0], target[1], target[2] + tgt_half + src_half + 0.02])
        return [(above, GRIPPER_OPEN, 0.01), (source + [0, 0, -0.2 * src_half], GRIPPER_OPEN, 0.006),
                (None, -GRIPPER_OPEN, None), (above, -GRIPPER_OPEN, 0.015),
                (place + [0, 0, 0.04], -GRIPPER_OPEN, 0.01), (place, -GRIPPER_OPEN, 0.01),
                (None, GRIPPER_OPEN, None), (place + [0, 0, 0.06], GRIPPER_OPEN, 0.02)]

    def to_action(self, world_delta: np.ndarray, gripper: float) -> np.ndarray:
        base_q = self.env.agent.robot.pose.q[0].cpu().numpy()
        delta = _rotate_inverse(base_q, world_delta)
        return np.concatenate([delta, np.zeros(3), [1.0 if gripper > 0 else 0.0]]).astype(np.float32)

    # the VLAPolicy interface (the image is not needed: the policy is privileged)
    def reset(self, instruction: str) -> None:
        self.phase, self.hold, self.done, self._plan, self.gripper = 0, 0, False, None, GRIPPER_OPEN

    def act(self, image: np.ndarray) -> np.ndarray:
        return self()

"""VP²'s two task families in the simulator: robosuite pushing and RoboDesk.

Why goals are made here: VP²'s task instances (start states + goal images) come from its
data release, which cannot be fetched on this machine. So each task instance is made in the
simulator from a seed: a scripted policy runs from a randomised start to the goal, the goal
state's image is rendered by the same camera, and the start is the state where planning
begins (robosuite: the gripper already behind the cube, like VP²'s mid-demonstration starts;
RoboDesk: the reset state, VP²'s ``traj_start_idx: 0``). The success tests are VP²'s:
robosuite -- the object's distance to its goal position (``compute_score``, lower is
better) under a threshold; RoboDesk -- RoboDesk's own ``success`` reward.

Both render 64x64 RGB offscreen with MuJoCo (``MUJOCO_GL=egl`` headless; Mesa's llvmpipe
on a CPU-only machine). robosuite and robodesk are imported lazily: they live in the side
venv (scripts/setup_vp2_venv.sh), because robosuite's mink pins numpy<2.

Task ids: ``robosuite/push`` and ``robodesk/<task>`` for the RoboDesk tasks with a scripted
goal policy (:data:`TASKS`); VP²'s other RoboDesk tasks (``open_drawer``,
``upright_block_off_table``, ``flat_block_off_table``) are named in :data:`VP2_TASKS_NOT_YET`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass
class TaskInstance:
    """One VP² task instance: where planning starts and what it must reach."""

    task: str
    seed: int
    initial_state: np.ndarray
    goal_state: np.ndarray
    goal_image: np.ndarray  # (H, W, 3) uint8, rendered by the simulator at the goal state


def _headless_gl() -> None:
    # MuJoCo picks its GL backend from MUJOCO_GL when first imported; EGL renders offscreen
    # without a display (Mesa llvmpipe on CPU, the GPU's EGL where there is one).
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])


# --------------------------------------------------------------------------- robosuite


class RobosuitePushEnv:
    """Push the cube of robosuite's ``Lift`` scene to a goal position (Panda, OSC position).

    Actions (VP²'s robosuite width, 4): end-effector dx, dy, dz in [-1, 1] (x 0.05 m per
    step by robosuite's OSC output scale) and the gripper (kept closed by the goals' script).
    """

    action_dim = 4
    success_threshold = 0.05  # metres between the cube and its goal position

    def __init__(self, image_size: int = 64, camera: str = "agentview", control_freq: int = 20):
        _headless_gl()
        # lazy: the VP² side venv only (module docstring), and after MUJOCO_GL is set
        import robosuite  # noqa: PLC0415
        from robosuite.controllers import load_composite_controller_config  # noqa: PLC0415

        config = load_composite_controller_config(controller="BASIC")
        arm = config["body_parts"]["right"]
        arm["type"] = "OSC_POSITION"
        for key in ("output_max", "output_min"):
            if isinstance(arm.get(key), list):
                arm[key] = arm[key][:3]
        self.camera, self.image_size = camera, image_size
        self.env = robosuite.make(
            "Lift", robots="Panda", controller_configs=config, has_renderer=False,
            has_offscreen_renderer=True, use_camera_obs=True, camera_names=camera,
            camera_heights=image_size, camera_widths=image_size, control_freq=control_freq,
            horizon=10**6, ignore_done=True, hard_reset=False, reward_shaping=False,
        )
        if self.env.action_dim != self.action_dim:
            raise RuntimeError(f"robosuite Lift with OSC_POSITION has {self.env.action_dim}-d actions, expected 4")
        # Frames are rendered here, after each step, rather than by robosuite's camera
        # observable, whose sampling clock can skip a frame after a state restore.
        self._set_camera(False)
        self._obs = self.env.reset()
        (robot,) = self.env.robots
        self._gripper = robot.gripper[robot.arms[0]]
        self._sim_state_size = self.env.sim.get_state().flatten().size

    def _image(self, obs=None) -> np.ndarray:
        frame = self.env.sim.render(width=self.image_size, height=self.image_size, camera_name=self.camera)
        return np.ascontiguousarray(frame[::-1])  # OpenGL rows bottom-up

    def get_state(self) -> np.ndarray:
        """MuJoCo's flattened state + the gripper's commanded position (robosuite's grippers
        integrate their commands, so without it a restored state acts differently)."""
        gripper = np.asarray(self._gripper.current_action, dtype=np.float64).ravel()
        return np.concatenate([np.asarray(self.env.sim.get_state().flatten(), dtype=np.float64), gripper])

    def _set_state(self, state: np.ndarray) -> None:
        state = np.asarray(state, dtype=np.float64)
        self.env.sim.set_state_from_flattened(state[: self._sim_state_size])
        self._gripper.current_action = state[self._sim_state_size :].copy()
        self.env.sim.forward()
        for robot in self.env.robots:
            robot.composite_controller.reset()
        self._obs = self.env._get_observations(force_update=True)

    def reset_to(self, state: np.ndarray) -> np.ndarray:
        self._set_state(state)
        return self._image(self._obs)

    def step(self, action) -> np.ndarray:
        self._obs, _, _, _ = self.env.step(np.asarray(action, dtype=np.float64))
        return self._image(self._obs)

    def object_positions(self) -> list[np.ndarray]:
        return [np.array(self.env.sim.data.body_xpos[self.env.cube_body_id])]

    def score(self, state, goal_state) -> float:
        """VP²'s compute_score: the largest object distance to its goal position (m)."""
        self._set_state(state)
        current = self.object_positions()
        self._set_state(goal_state)
        goal = self.object_positions()
        return float(max(np.linalg.norm(c - g) for c, g in zip(current, goal)))

    def is_success(self, score: float) -> bool:
        return score < self.success_threshold

    def _set_camera(self, active: bool) -> None:
        self.env.modify_observable(f"{self.camera}_image", "enabled", active)

    def _move_to(self, target, gripper: float, max_steps: int, tol: float = 0.01, gain: float = 10.0):
        for _ in range(max_steps):
            eef = self._obs["robot0_eef_pos"]
            error = np.asarray(target) - eef
            if np.linalg.norm(error) < tol:
                return
            self._obs = self.env.step(np.concatenate([np.clip(gain * error, -1, 1), [gripper]]))[0]  # no render

    def make_task(self, seed: int, task: str = "robosuite/push", tries: int = 5) -> TaskInstance:
        """Random cube placement (robosuite's own reset), a scripted push of 10-16 cm, then the
        gripper lifts 6 cm so the goal image shows the cube. A push that moved the cube less
        than 1.5x the success threshold is redrawn (the start must not already succeed).
        The script steps without rendering; only the goal is rendered."""
        rng = np.random.default_rng(seed)
        np.random.seed(seed)  # robosuite's placement sampler draws from numpy's global RNG
        self._obs = self.env.reset()
        start = self.get_state()
        for _ in range(tries):
            self._set_state(start)
            cube = np.array(self.env.sim.data.body_xpos[self.env.cube_body_id])
            angle = rng.uniform(-np.pi, np.pi)
            direction = np.array([np.cos(angle), np.sin(angle), 0.0])
            behind = cube - 0.06 * direction
            self._move_to(behind + [0, 0, 0.08], 1.0, 60)
            self._move_to(behind + [0, 0, 0.005], 1.0, 40)
            initial_state = self.get_state()
            cube = np.array(self.env.sim.data.body_xpos[self.env.cube_body_id])  # as planning starts
            self._move_to(behind + (0.05 + rng.uniform(0.10, 0.16)) * direction + [0, 0, 0.005], 1.0, 80)
            self._move_to(self._obs["robot0_eef_pos"] + [0, 0, 0.06], 1.0, 20)
            goal_state = self.get_state()
            moved = np.linalg.norm(self.env.sim.data.body_xpos[self.env.cube_body_id] - cube)
            if moved > 1.5 * self.success_threshold:
                break
        else:
            raise RuntimeError(f"robosuite/push seed {seed}: the scripted push moved the cube only "
                               f"{moved:.3f} m in {tries} tries")
        goal_image = self.reset_to(goal_state)
        return TaskInstance(task, seed, initial_state, goal_state, goal_image)


# --------------------------------------------------------------------------- RoboDesk


def _restore_pil_antialias() -> None:
    # robodesk 1.0.0 resizes with PIL.Image.ANTIALIAS, removed in Pillow 10 (it was an alias
    # of LANCZOS). Restore that one name, only if missing, before robodesk renders.
    if not hasattr(Image, "ANTIALIAS"):
        Image.ANTIALIAS = Image.Resampling.LANCZOS


class RoboDeskEnv:
    """A RoboDesk task (VP²'s settings: ``action_repeat=50``, no episode end, 64x64 images).

    Actions (5): end-effector dx, dy, dz, wrist rotation, gripper, in [-1, 1].
    """

    action_dim = 5

    def __init__(self, task: str, image_size: int = 64, action_repeat: int = 50):
        _headless_gl()
        _restore_pil_antialias()
        import robodesk  # noqa: PLC0415  (as robosuite above)

        self.task, self.image_size = task, image_size
        self.env = robodesk.RoboDesk(task=task, reward="success", action_repeat=action_repeat,
                                     episode_length=0, image_size=image_size)
        self.env.reset()

    @property
    def physics(self):
        return self.env.physics

    def get_state(self) -> np.ndarray:
        return np.asarray(self.physics.get_state(), dtype=np.float64)

    def reset_to(self, state) -> np.ndarray:
        env = self.env
        env.success, env.num_steps = False, 0
        with self.physics.reset_context():
            self.physics.set_state(np.asarray(state))
        env.physics_copy.data.qpos[:] = self.physics.data.qpos[:]
        env.drawer_opened = False
        return self.render()

    def render(self) -> np.ndarray:
        return np.asarray(self.env.render(resize=True))

    def step(self, action) -> np.ndarray:
        self.env.step(np.asarray(action, dtype=np.float64))
        return self.render()

    def score(self, state, goal_state=None) -> float:
        """VP²'s compute_score for RoboDesk: minus RoboDesk's success reward at ``state``."""
        self.reset_to(state)
        return -float(self.env._get_task_reward(self.task, "success"))

    def is_success(self, score: float) -> bool:
        return score <= -0.5

    # Scripted goal policies (proportional end-effector control toward task sites).
    def _end_effector(self) -> np.ndarray:
        return np.array(self.physics.named.data.site_xpos["end_effector"])

    def _toward(self, target, gain=5.0, min_norm=0.1) -> np.ndarray:
        delta = (np.asarray(target) - self._end_effector()) * gain
        norm = np.linalg.norm(delta)
        if 0 < norm < min_norm:
            delta = delta / norm * min_norm
        action = np.zeros(self.action_dim)
        action[:3] = np.clip(delta, -1, 1)
        return action

    def _script_action(self, phase: dict) -> np.ndarray:
        named = self.physics.named.data
        if self.task.startswith("push_"):
            return self._toward(named.xpos[self.task.split("_", 1)[1] + "_button"])
        if self.task == "open_slide":
            target = named.site_xpos["slide_handle"] - np.array([0.15, 0, 0])
            ee = self._end_effector()
            if not phase.get("reached") and (np.linalg.norm(target - ee) > 0.1 or abs(target[1] - ee[1]) > 0.05):
                return self._toward(target)
            phase["reached"] = True
            action = np.zeros(self.action_dim)
            action[:3] = [np.clip((1.0 - named.qpos["slide_joint"][0]) * 2, -1, 1), 0.1, 0]
            return action
        raise KeyError(self.task)

    def make_task(self, seed: int, task: str | None = None, max_steps: int = 30) -> TaskInstance:
        np.random.seed(seed)  # RoboDesk's reset randomises with numpy's global RNG
        self.env.reset()
        initial_state = self.get_state()
        phase: dict = {}
        for _ in range(max_steps):
            self.env.step(self._script_action(phase))
            if self.env._get_task_reward(self.task, "success"):
                break
        else:
            raise RuntimeError(f"the scripted goal policy of robodesk/{self.task} did not succeed in "
                               f"{max_steps} steps (seed {seed})")
        goal_state = self.get_state()
        return TaskInstance(task or f"robodesk/{self.task}", seed, initial_state, goal_state, self.reset_to(goal_state))


ROBODESK_SCRIPTED = ("push_red", "push_green", "push_blue", "open_slide")
TASKS: dict[str, dict] = {
    # VP²'s initial sampling std: mppi.yaml / cem.yaml (robosuite), the case-study commands (RoboDesk).
    "robosuite/push": {"family": "robosuite", "init_std": (0.5, 0.5, 0.5, 0.0), "cem_init_std": (0.5, 0.5, 0.0, 0.0)},
    **{f"robodesk/{t}": {"family": "robodesk", "init_std": (0.5, 0.5, 0.5, 0.1, 0.1)} for t in ROBODESK_SCRIPTED},
}
VP2_TASKS_NOT_YET = ("robodesk/open_drawer", "robodesk/upright_block_off_table", "robodesk/flat_block_off_table")


class UnknownTaskError(KeyError):
    def __str__(self):
        return str(self.args[0])


def check_task(task: str) -> dict:
    if task in TASKS:
        return TASKS[task]
    if task in VP2_TASKS_NOT_YET:
        raise UnknownTaskError(f"{task} is a VP² task without a scripted goal policy here yet; "
                               f"supported: {', '.join(TASKS)}")
    raise UnknownTaskError(f"unknown VP² task id {task!r}; known: {', '.join(TASKS)}")


def make_env(task: str, image_size: int = 64):
    """The simulator for a task id (see :data:`TASKS`)."""
    spec = check_task(task)
    if spec["family"] == "robosuite":
        return RobosuitePushEnv(image_size=image_size)
    return RoboDeskEnv(task.split("/", 1)[1], image_size=image_size)


class SimulatorModel:
    """VP²'s "simulator as the model" (the oracle the score is normalised by).

    Same interface as :class:`~benchmarks.vp2.world_model.ORVWorldModel`. Each sample is
    rolled out in the episode's own environment from the current state
    (``batch["state_obs"][-1]``), which is restored afterwards, so it predicts exactly what
    executing the actions would show. The same instance matters: robosuite draws the cube's
    size when an environment is built, so a second instance is a slightly different world.
    (VP² replays the context actions from the oldest context state in a pool of copies of
    the environment; from the current state the planned frames are the same, for fewer steps.)
    """

    base_prediction_modality = "rgb"

    def __init__(self, env, num_context: int = 2):
        self.env = env
        self.action_dim = env.action_dim
        self.num_context = num_context

    def __call__(self, batch: dict) -> dict:
        video = np.asarray(batch["video"], dtype=np.float32)
        actions = np.asarray(batch["actions"])
        state = batch["state_obs"][-1]
        n_ctx = self.num_context
        rollouts = []
        try:
            for sample in actions[:, n_ctx - 1 :]:
                self.env.reset_to(state)
                rollouts.append([self.env.step(a) for a in sample])
        finally:
            self.env.reset_to(state)
        predicted = np.asarray(rollouts, dtype=np.float32) / 255.0
        context = video[:, video.shape[1] - (n_ctx - 1) :]
        return {"rgb": np.concatenate([context, predicted], axis=1)}

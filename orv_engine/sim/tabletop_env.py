"""``ORVTabletop-v1``: a Bridge-like tabletop pick-and-place scene on ManiSkill3.

Cubes of a few colours and a towel are placed by grid-based sampling in a table region
(distinct grid cells, a small jitter, a random yaw), so objects never start overlapping.
The task of an episode is "put the <cube> on the <towel>"; success = the cube rests on the
towel and the gripper has let go. ``appearance="randomized"`` draws colours, lights and the
scripted arm's motion per episode (:mod:`orv_engine.sim.appearance`); the instruction then
names the cube's and towel's drawn colours, and semantic labels name object slots. Robots: ``panda`` (ships with ManiSkill3) and Bridge's
WidowX 250 S with the real2sim-tuned controller of SimplerEnv's Bridge scenes
(``orv_widowx250s``; its asset comes from ``MS_ASSET_DIR``).
Importing this module registers the environment with gymnasium.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import sapien
import torch
from mani_skill.agents.registration import register_agent
from mani_skill.envs.sapien_env import BaseEnv
from mani_skill.envs.tasks.digital_twins.bridge_dataset_eval.base_env import WidowX250SBridgeDatasetFlatTable
from mani_skill.sensors.camera import CameraConfig
from mani_skill.utils import sapien_utils
from mani_skill.utils.building import actors
from mani_skill.utils.registration import register_env
from mani_skill.utils.scene_builder.table import TableSceneBuilder
from mani_skill.utils.structs.pose import Pose
from mani_skill.utils.structs.types import SimConfig

from orv_engine.sim.appearance import Appearance, AppearanceApplier, sample_appearance

ENV_ID = "ORVTabletop-v1"
APPEARANCES = ("fixed", "randomized")
WIDOWX = "orv_widowx250s"


@register_agent(asset_download_ids=["widowx250s"])
class ORVWidowX250S(WidowX250SBridgeDatasetFlatTable):
    """SimplerEnv's real2sim-tuned WidowX, without its fixed 640x480 Bridge camera (this
    scene brings its own cameras)."""

    uid = WIDOWX

    @property
    def _sensor_configs(self):
        return []


# name, half size (m), RGBA
CUBES = [
    ("red cube", 0.02, [0.85, 0.12, 0.1, 1.0]),
    ("green cube", 0.02, [0.15, 0.65, 0.2, 1.0]),
    ("yellow cube", 0.02, [0.95, 0.8, 0.1, 1.0]),
]
TOWEL = ("blue towel", [0.05, 0.05, 0.004], [0.15, 0.3, 0.8, 1.0])


@dataclass(frozen=True)
class RobotSetup:
    base_pose: sapien.Pose
    init_qpos: tuple[float, ...]
    controller: str
    region_center: tuple[float, float]  # table region (world xy) objects are placed in
    grid: tuple[int, int] = (3, 4)  # cells along x, y
    cell: float = 0.09  # cell size (m)


ROBOT_SETUPS = {
    "panda": RobotSetup(
        base_pose=sapien.Pose(p=[-0.615, 0, 0]),
        init_qpos=(0.0, np.pi / 8, 0, -np.pi * 5 / 8, 0, np.pi * 3 / 4, np.pi / 4, 0.04, 0.04),
        controller="pd_ee_delta_pose",
        region_center=(0.0, 0.0),
    ),
    WIDOWX: RobotSetup(
        base_pose=sapien.Pose(p=[-0.42, 0, 0]),
        # SimplerEnv's WidowX rest pose, gripper open
        init_qpos=(-0.0184, 0.0399, 0.2224, -0.0046, 1.3652, 0.0015, 0.037, 0.037),
        controller="arm_pd_ee_target_delta_pose_align2_gripper_pd_joint_pos",
        region_center=(-0.08, 0.0),
        grid=(3, 4),
        cell=0.08,
    ),
}


@register_env(ENV_ID, max_episode_steps=100)
class ORVTabletopEnv(BaseEnv):
    SUPPORTED_ROBOTS = list(ROBOT_SETUPS)
    SUPPORTED_REWARD_MODES = ["none"]

    def __init__(self, *args, robot_uids="panda", camera_size=128, num_cameras=1, appearance="fixed", **kwargs):
        if robot_uids not in ROBOT_SETUPS:
            raise ValueError(f"robot {robot_uids!r} not supported; use one of {', '.join(ROBOT_SETUPS)}")
        if appearance not in APPEARANCES:
            raise ValueError(f"appearance {appearance!r} not supported; use one of {', '.join(APPEARANCES)}")
        self.appearance_mode = appearance
        self.appearance = Appearance.fixed()
        self._applier = None
        self.setup = ROBOT_SETUPS[robot_uids]
        self.camera_size = camera_size
        self.num_cameras = num_cameras
        self.source_index = 0
        super().__init__(*args, robot_uids=robot_uids, **kwargs)

    # -- scene ---------------------------------------------------------------------
    @property
    def _default_sim_config(self):
        return SimConfig(sim_freq=100, control_freq=5)  # 5 Hz, as BridgeV2

    @property
    def _default_sensor_configs(self):
        cx, cy = self.setup.region_center
        views = [  # a Bridge-like front-side view, then a view from the other side
            ([cx + 0.34, cy + 0.22, 0.36], [cx - 0.06, cy, 0.02]),
            ([cx + 0.22, cy - 0.36, 0.34], [cx - 0.06, cy, 0.02]),
        ]
        configs = []
        for k, (eye, target) in enumerate(views[: self.num_cameras]):
            pose = sapien_utils.look_at(eye=eye, target=target)
            configs.append(CameraConfig(f"camera_{k}", pose, self.camera_size, self.camera_size, np.pi / 3, 0.01, 10))
        return configs

    @property
    def _default_human_render_camera_configs(self):
        pose = sapien_utils.look_at(eye=[0.5, 0.5, 0.5], target=[-0.1, 0, 0.05])
        return CameraConfig("render_camera", pose, 256, 256, 1.0, 0.01, 10)

    def _load_agent(self, options: dict):
        super()._load_agent(options, self.setup.base_pose)

    def _load_scene(self, options: dict):
        self.table_scene = TableSceneBuilder(self, robot_init_qpos_noise=0.0)
        self.table_scene.build()
        self.cubes = [
            actors.build_cube(self.scene, half_size=h, color=c, name=name, initial_pose=sapien.Pose(p=[0, 0, h]))
            for name, h, c in CUBES
        ]
        name, half, color = TOWEL
        self.towel = actors.build_box(self.scene, half_sizes=half, color=color, name=name,
                                      body_type="static", initial_pose=sapien.Pose(p=[0, 0, half[2]]))

    def _initialize_episode(self, env_idx: torch.Tensor, options: dict):
        with torch.device(self.device):
            self.table_scene.initialize(env_idx)
            qpos = torch.tensor(self.setup.init_qpos, dtype=torch.float32)
            self.agent.reset(qpos.expand(len(env_idx), -1).clone())
            self.agent.robot.set_pose(self.setup.base_pose)
            # The episode seed drives ManiSkill's batched RNG; take numbers from it.
            rng = np.random.default_rng(int(self._episode_rng.randint(1 << 31)))
            cells = self.grid_cells(rng, len(self.cubes) + 1)
            for cube, (x, y), (_, h, _) in zip(self.cubes, cells, CUBES):
                yaw = rng.uniform(-np.pi / 8, np.pi / 8)
                q = [np.cos(yaw / 2), 0, 0, np.sin(yaw / 2)]
                cube.set_pose(Pose.create_from_pq(torch.tensor([[x, y, h]]), torch.tensor([q])))
            tx, ty = cells[-1]
            self.towel.set_pose(Pose.create_from_pq(torch.tensor([[tx, ty, TOWEL[1][2]]])))
            self.source_index = int(rng.integers(len(self.cubes)))
            if self.appearance_mode == "randomized":  # drawn after the layout: "fixed" layouts stay as they were
                self.appearance = sample_appearance(rng)
                if self._applier is None:
                    self._applier = AppearanceApplier(self)
                self._applier.apply(self.appearance)

    def grid_cells(self, rng: np.random.Generator, count: int) -> list[tuple[float, float]]:
        """Centres of ``count`` distinct cells of the table grid, each with a small jitter."""
        nx, ny = self.setup.grid
        cell = self.setup.cell
        cx, cy = self.setup.region_center
        picks = rng.choice(nx * ny, size=count, replace=False)
        out = []
        for p in picks:
            i, j = divmod(int(p), ny)
            x = cx + (i - (nx - 1) / 2) * cell + rng.uniform(-0.15, 0.15) * cell
            y = cy + (j - (ny - 1) / 2) * cell + rng.uniform(-0.15, 0.15) * cell
            out.append((x, y))
        return out

    # -- task ------------------------------------------------------------------------
    @property
    def source(self):
        return self.cubes[self.source_index]

    @property
    def instruction(self) -> str:
        if self.appearance_mode == "fixed":
            return f"put the {CUBES[self.source_index][0]} on the {TOWEL[0]}"
        return f"put the {self.appearance.cube_name(self.source_index)} on the {self.appearance.towel_name}"

    @property
    def object_labels(self) -> dict[str, str]:
        """Actor name -> semantic label. Randomised colours make colour names wrong, so the
        labels then name slots ("cube 1", ..., "towel")."""
        names = [c[0] for c in CUBES] + [TOWEL[0]]
        if self.appearance_mode == "fixed":
            return {n: n for n in names}
        return {**{c[0]: f"cube {i + 1}" for i, c in enumerate(CUBES)}, TOWEL[0]: "towel"}

    def evaluate(self):
        cube_p = self.source.pose.p
        towel_p = self.towel.pose.p
        half = TOWEL[1]
        h = CUBES[self.source_index][1]
        on_towel = (
            (torch.abs(cube_p[:, 0] - towel_p[:, 0]) <= half[0])
            & (torch.abs(cube_p[:, 1] - towel_p[:, 1]) <= half[1])
            & (cube_p[:, 2] < 2 * half[2] + h + 0.01)
        )
        grasped = self.agent.is_grasping(self.source)
        return {"success": on_towel & ~grasped, "is_grasped": grasped, "on_towel": on_towel}

    def _get_obs_extra(self, info: dict):
        return {}

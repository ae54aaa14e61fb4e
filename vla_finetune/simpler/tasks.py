"""Evaluation tasks: SimplerEnv's four WidowX Bridge tasks and the tasks CI can run here.

The Bridge tasks (paper Table 3) are ManiSkill3's digital twins of SimplerEnv's "visual
matching" setting (``mani_skill/envs/tasks/digital_twins/bridge_dataset_eval``), run as
SimplerEnv's ManiSkill3 script runs them (``simpler_env/real2sim_eval_maniskill3.py`` on its
``maniskill3`` branch):

- ``obs_mode="rgb+segmentation"``: ``BaseBridgeEnv`` supports only that mode, and the green
  screen (the real first frame pasted over every pixel that is not the robot or a task
  object) needs the segmentation;
- every reset passes ``options={"episode_id": ...}``; the environment maps an id to a fixed
  object-position and -rotation configuration (``id % (positions x rotations)``), so ids
  ``seed .. seed + N - 1`` give the same scenes on every run and as SimplerEnv's numbers;
- 60 control steps at 5 Hz (120 for the eggplant), success read at the final step, grasp at
  any step (``is_src_obj_grasped`` accumulates);
- episodes: 24 for spoon, carrot and cubes (their 24 configurations, ids 0-23, as
  SimplerEnv's original ``--obj-episode-range 0 24``); 192 for the eggplant, as the script's
  documented eggplant run (``--num-episodes 192``: its 8 positions x 8 rotations = 64
  configurations, three times).

They need ManiSkill's ``bridge_v2_real2sim`` scene assets and the ``widowx250s`` robot
(downloaded once with ManiSkill's downloader); CI uses a format twin of them
(:mod:`orv_engine.testing.bridge_real2sim_assets`).

CI also runs the same harness on what ships here: ``PickCube-v1`` (a Panda task whose
assets ship inside ManiSkill3) and ``ORVTabletop-v1`` with the WidowX 250 S from
``../shared/data/maniskill`` (put a cube on the towel; ``orv_engine.sim``).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class EvalTask:
    name: str
    env_id: str
    max_steps: int
    episodes: int = 24  # SimplerEnv's visual-matching protocol (the eggplant: 192)
    assets: tuple[str, ...] = ()  # ManiSkill asset ids (orv_engine.sim.assets.ROBOT_ASSETS)
    env_kwargs: dict = field(default_factory=dict)
    instruction: str | None = None  # None: the environment's own
    grasp_key: str = "is_src_obj_grasped"  # info key of "the object is held"
    camera: str | None = None  # None: the environment's first camera
    obs_mode: str = "rgb"
    reset_by_episode_id: bool = False  # SimplerEnv's scheme: options={"episode_id": seed + i}


BRIDGE = ("widowx250s", "bridge_v2_real2sim")
# what every Bridge task shares (see the module docstring)
_BRIDGE = {"assets": BRIDGE, "camera": "3rd_view_camera", "obs_mode": "rgb+segmentation", "reset_by_episode_id": True}
TASKS: dict[str, EvalTask] = {
    "spoon_on_towel": EvalTask("spoon_on_towel", "PutSpoonOnTableClothInScene-v1", 60, **_BRIDGE),
    "carrot_on_plate": EvalTask("carrot_on_plate", "PutCarrotOnPlateInScene-v1", 60, **_BRIDGE),
    "stack_cube": EvalTask("stack_cube", "StackGreenCubeOnYellowCubeBakedTexInScene-v1", 60, **_BRIDGE),
    "eggplant_in_basket": EvalTask("eggplant_in_basket", "PutEggplantInBasketScene-v1", 120, episodes=192, **_BRIDGE),
    # what CI runs on this machine
    "panda_pick_cube": EvalTask("panda_pick_cube", "PickCube-v1", 50, episodes=4,
                                env_kwargs={"robot_uids": "panda", "control_mode": "pd_ee_delta_pose"},
                                instruction="pick up the red cube and lift it to the goal", grasp_key="is_grasped"),
    "widowx_cube_on_towel": EvalTask("widowx_cube_on_towel", "ORVTabletop-v1", 60, episodes=4,
                                     assets=("orv_widowx250s",), env_kwargs={"robot_uids": "orv_widowx250s"},
                                     grasp_key="is_grasped"),
}
BRIDGE_SUITE = ("spoon_on_towel", "carrot_on_plate", "stack_cube", "eggplant_in_basket")
CI_SUITE = ("panda_pick_cube", "widowx_cube_on_towel")


class UnknownTaskError(KeyError):
    pass


def get_task(name: str) -> EvalTask:
    if name in TASKS:
        return TASKS[name]
    by_env = {t.env_id: t for t in TASKS.values()}
    if name in by_env:
        return by_env[name]
    raise UnknownTaskError(f"unknown task {name!r}; known: {', '.join(TASKS)} (or their environment ids)")

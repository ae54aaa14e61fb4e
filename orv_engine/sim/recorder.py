"""Record scripted episodes of ``ORVTabletop-v1`` as :class:`Episode` records at 5 Hz.

Per step and camera: RGB, depth (metres), semantic segmentation, intrinsics, and the camera
pose in the robot-base frame (OpenCV axes: x right, y down, z forward). States are the TCP
pose in the robot-base frame (xyz, roll/pitch/yaw) and gripper open-ness in [0, 1].

Actions follow BridgeV2: EEF delta xyz + delta roll/pitch/yaw + gripper command (1 open,
0 closed). The deltas are the *achieved* ones, ``state[t+1] - state[t]`` (angles wrapped),
so the relabelling Octo and OpenVLA apply to Bridge agrees with the stored actions exactly;
the last step, which has no successor, gets zero deltas.
"""

from __future__ import annotations

import numpy as np
import torch
from mani_skill.utils.structs.link import Link
from scipy.spatial.transform import Rotation

from orv_engine.data.episode import Episode, EpisodeMeta
from orv_engine.sim.scripted_policy import PickPlacePolicy, tcp_pose

# Semantic label of each segmentation id, by ManiSkill actor/link name.
BACKGROUND = "background"


def semantic_names(env) -> list[str]:
    """The dataset's label list: background, floor, table, robot, then the objects."""
    return [BACKGROUND, "floor", "table", "robot", *env.object_labels.values()]


def _id_to_label(env, labels: list[str]) -> np.ndarray:
    """Lookup table: ManiSkill segmentation id -> index into ``labels``."""
    id_map = env.segmentation_id_map
    lut = np.zeros(max(id_map) + 1, dtype=np.uint8)
    for seg_id, obj in id_map.items():
        name = getattr(obj, "name", "")
        if isinstance(obj, Link):
            label = "robot"
        elif name == "ground":
            label = "floor"
        elif name.startswith("table"):
            label = "table"
        elif name in env.object_labels:
            label = env.object_labels[name]
        else:
            label = BACKGROUND
        lut[seg_id] = labels.index(label)
    return lut


def _pose_matrix(pose) -> np.ndarray:
    p = pose.p[0].cpu().numpy()
    w, x, y, z = pose.q[0].cpu().numpy()
    m = np.eye(4)
    m[:3, :3] = Rotation.from_quat([x, y, z, w]).as_matrix()
    m[:3, 3] = p
    return m


def _gripper_openness(env) -> float:
    agent = env.agent
    qpos = agent.robot.get_qpos()[0].cpu().numpy()
    limits = agent.robot.get_qlimits()[0].cpu().numpy()
    low, high = limits[-1]
    return float(np.clip((qpos[-1] - low) / max(high - low, 1e-6), 0.0, 1.0))


def eef_state(env) -> np.ndarray:
    base = _pose_matrix(env.agent.robot.pose)
    tcp = np.linalg.inv(base) @ _pose_matrix(tcp_pose(env))
    rpy = Rotation.from_matrix(tcp[:3, :3]).as_euler("xyz")
    return np.concatenate([tcp[:3, 3], rpy, [_gripper_openness(env)]]).astype(np.float32)


def actions_from_states(states: np.ndarray, gripper_commands: np.ndarray) -> np.ndarray:
    """Achieved EEF deltas (angles wrapped to [-pi, pi)) + the gripper command."""
    actions = np.zeros_like(states)
    delta = states[1:, :6] - states[:-1, :6]
    delta[:, 3:6] = (delta[:, 3:6] + np.pi) % (2 * np.pi) - np.pi
    actions[:-1, :6] = delta
    actions[:, 6] = gripper_commands
    return actions


def record_episode(env, seed: int, max_steps: int = 60, dataset: str = "orv_tabletop") -> tuple[Episode, bool]:
    """Reset with ``seed``, run the scripted policy, return the episode and its success."""
    obs, _ = env.reset(seed=seed)
    unwrapped = env.unwrapped
    labels = semantic_names(unwrapped)
    lut = _id_to_label(unwrapped, labels)
    cameras = list(obs["sensor_data"].keys())
    base_inv = np.linalg.inv(_pose_matrix(unwrapped.agent.robot.pose))
    frames = {c: [] for c in cameras}
    depth = {c: [] for c in cameras}
    segmentation = {c: [] for c in cameras}
    intrinsics = {c: [] for c in cameras}
    extrinsics = {c: [] for c in cameras}
    states, commands = [], []
    policy = PickPlacePolicy(env, **unwrapped.appearance.motion)

    def capture(obs):
        for c in cameras:
            data, param = obs["sensor_data"][c], obs["sensor_param"][c]
            frames[c].append(data["rgb"][0].cpu().numpy().astype(np.uint8))
            depth[c].append(data["depth"][0, ..., 0].cpu().numpy().astype(np.float32) / 1000.0)  # mm -> m
            seg = data["segmentation"][0, ..., 0].cpu().numpy().astype(np.int64)
            segmentation[c].append(lut[np.clip(seg, 0, len(lut) - 1)])
            intrinsics[c].append(param["intrinsic_cv"][0].cpu().numpy().astype(np.float32))
            world_to_cam = np.eye(4)
            world_to_cam[:3] = param["extrinsic_cv"][0].cpu().numpy()
            extrinsics[c].append((base_inv @ np.linalg.inv(world_to_cam)).astype(np.float32))
        states.append(eef_state(unwrapped))

    capture(obs)
    for _ in range(max_steps):
        action = policy()
        commands.append(1.0 if action[-1] > 0 else 0.0)
        if policy.done:
            break
        obs, *_ = env.step(torch.from_numpy(action)[None])
        capture(obs)
    success = bool(unwrapped.evaluate()["success"][0])
    states = np.stack(states)
    commands = np.array(commands[: len(states)] + [commands[-1]] * (len(states) - len(commands)), np.float32)
    names = {c: f"image_{k}" for k, c in enumerate(cameras)}  # BridgeV2's camera keys
    episode = Episode(
        frames={names[c]: np.stack(frames[c]) for c in cameras},
        actions=actions_from_states(states, commands),
        states=states,
        instruction=unwrapped.instruction,
        meta=EpisodeMeta(dataset=dataset, episode_id=f"{dataset}/seed{seed}", source_file="", index_in_file=seed,
                         extra={"seed": seed, "robot": unwrapped.robot_uids, "success": success,
                                "appearance": unwrapped.appearance.to_json()}),
        depth={names[c]: np.stack(depth[c]) for c in cameras},
        segmentation={names[c]: np.stack(segmentation[c]).astype(np.int32) for c in cameras},
        intrinsics={names[c]: np.stack(intrinsics[c]) for c in cameras},
        extrinsics={names[c]: np.stack(extrinsics[c]) for c in cameras},
        labels=labels,
    )
    return episode, success

"""Per-dataset standardization: each RLDS schema -> states, actions and instruction in
BridgeV2's convention (EEF xyz, roll/pitch/yaw, gripper 1 = open / 0 = closed).

Choices (the Open-X conversions Octo/OpenVLA use, done in numpy on one episode):
- BridgeV2 (``bridge_dataset`` / ``bridge_orig``): ``observation/state`` and ``action`` as
  stored (the gripper action stays continuous; policies may binarize it later).
- RT-1 (``fractal20220817_data``): actions = ``world_vector`` + ``rotation_delta`` +
  relative gripper command turned absolute; states = ``base_pose_tool_reached`` (xyz +
  quaternion xyzw -> roll/pitch/yaw) + open-ness ``1 - gripper_closed``.
- simulated episodes (``orv_tabletop``, written by ``orv_engine.sim``): BridgeV2's layout
  plus depth, segmentation and cameras per step.
- DROID (``droid``): actions = ``action_dict/cartesian_velocity`` + open-ness
  ``1 - action_dict/gripper_position``; states = ``observation/cartesian_position`` +
  ``1 - observation/gripper_position``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy.spatial.transform import Rotation

Steps = dict  # nested dict of numpy arrays with a leading time axis


@dataclass(frozen=True)
class DatasetSchema:
    kind: str  # short name used in configs and Episode.meta.dataset
    tfds_names: tuple[str, ...]  # tfds builder names that carry this schema
    cameras: tuple[str, ...]  # image keys under steps/observation
    default_cameras: tuple[str, ...]
    required_fields: tuple[str, ...]  # "steps/..." feature paths the standardization reads
    standardize: Callable[[Steps], tuple[np.ndarray, np.ndarray, str]]
    # Per camera image_k: depth_k, segmentation_k, camera_intrinsics_k, camera_extrinsics_k
    # (the layout of orv_engine.sim.rlds_schema).
    has_geometry: bool = False


def _get(steps: Steps, path: str) -> np.ndarray:
    node = steps
    for key in path.split("/"):
        node = node[key]
    return node


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return str(value)


def _first_instruction(steps: Steps, *paths: str) -> str:
    for path in paths:
        try:
            values = _get(steps, path)
        except KeyError:
            continue
        for v in np.asarray(values).reshape(-1):
            text = _text(v).strip()
            if text:
                return text
    return ""


def relative_to_absolute_gripper(relative: np.ndarray) -> np.ndarray:
    """RT-1 style gripper commands (+1 close, -1 open, 0 keep) -> absolute (1 open, 0 closed).

    The state before the first command is taken to be the opposite of that command (a
    command is assumed to change something); with no command at all the gripper is open.
    """
    relative = np.asarray(relative, dtype=np.float32).reshape(-1)
    command = np.where(relative > 0.1, -1.0, np.where(relative < -0.1, 1.0, 0.0))  # +1 = open
    nonzero = np.flatnonzero(command)
    state = -command[nonzero[0]] if nonzero.size else 1.0
    out = np.empty_like(command)
    for t, c in enumerate(command):
        if c != 0:
            state = c
        out[t] = state
    return (out / 2.0 + 0.5).astype(np.float32)


def _bridge(steps: Steps):
    states = _get(steps, "observation/state")
    actions = _get(steps, "action")
    return states, actions, _first_instruction(steps, "language_instruction")


def _rt1(steps: Steps):
    pose = np.asarray(_get(steps, "observation/base_pose_tool_reached"), dtype=np.float64)
    rpy = Rotation.from_quat(pose[:, 3:7]).as_euler("xyz")
    opened = 1.0 - np.asarray(_get(steps, "observation/gripper_closed"), np.float64).reshape(-1, 1)
    states = np.concatenate([pose[:, :3], rpy, opened], axis=1)
    gripper = relative_to_absolute_gripper(_get(steps, "action/gripper_closedness_action"))
    actions = np.concatenate(
        [_get(steps, "action/world_vector"), _get(steps, "action/rotation_delta"), gripper[:, None]],
        axis=1,
    )
    return states, actions, _first_instruction(steps, "observation/natural_language_instruction")


def _droid(steps: Steps):
    cart = np.asarray(_get(steps, "observation/cartesian_position"), np.float64)
    opened = 1.0 - np.asarray(_get(steps, "observation/gripper_position"), np.float64).reshape(-1, 1)
    states = np.concatenate([cart, opened], axis=1)
    vel = np.asarray(_get(steps, "action_dict/cartesian_velocity"), np.float64)
    grip = 1.0 - np.asarray(_get(steps, "action_dict/gripper_position"), np.float64).reshape(-1, 1)
    actions = np.concatenate([vel, grip], axis=1)
    instruction = _first_instruction(
        steps, "language_instruction", "language_instruction_2", "language_instruction_3"
    )
    return states, actions, instruction


SCHEMAS: dict[str, DatasetSchema] = {
    "bridge": DatasetSchema(
        kind="bridge",
        # + this project's exports of generated clips and their physical merge (vla_finetune)
        tfds_names=("bridge_dataset", "bridge_orig", "orv_bridge", "bridge_orv_merged"),
        cameras=("image_0", "image_1", "image_2", "image_3"),
        default_cameras=("image_0",),
        required_fields=("steps/observation/state", "steps/action", "steps/language_instruction"),
        standardize=_bridge,
    ),
    "sim": DatasetSchema(
        kind="sim",
        tfds_names=("orv_tabletop",),
        cameras=("image_0", "image_1", "image_2", "image_3"),
        default_cameras=("image_0",),
        required_fields=("steps/observation/state", "steps/action", "steps/language_instruction"),
        standardize=_bridge,
        has_geometry=True,
    ),
    "rt1": DatasetSchema(
        kind="rt1",
        tfds_names=("fractal20220817_data", "rt1"),
        cameras=("image",),
        default_cameras=("image",),
        required_fields=(
            "steps/observation/base_pose_tool_reached",
            "steps/observation/gripper_closed",
            "steps/observation/natural_language_instruction",
            "steps/action/world_vector",
            "steps/action/rotation_delta",
            "steps/action/gripper_closedness_action",
        ),
        standardize=_rt1,
    ),
    "droid": DatasetSchema(
        kind="droid",
        tfds_names=("droid", "droid_100"),
        cameras=("exterior_image_1_left", "exterior_image_2_left", "wrist_image_left"),
        default_cameras=("exterior_image_1_left",),
        required_fields=(
            "steps/observation/cartesian_position",
            "steps/observation/gripper_position",
            "steps/action_dict/cartesian_velocity",
            "steps/action_dict/gripper_position",
            "steps/language_instruction",
        ),
        standardize=_droid,
    ),
}


def schema_for(name: str) -> DatasetSchema:
    """The schema for a kind ("bridge") or a tfds builder name ("bridge_orig")."""
    if name in SCHEMAS:
        return SCHEMAS[name]
    for schema in SCHEMAS.values():
        if name in schema.tfds_names:
            return schema
    known = sorted(set(SCHEMAS) | {n for s in SCHEMAS.values() for n in s.tfds_names})
    raise KeyError(f"no standardization for dataset {name!r}; known: {', '.join(known)}")

"""The ``Episode`` record: one robot episode, standardized, as every stage sees it."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


@dataclass
class EpisodeMeta:
    dataset: str  # standardized dataset kind: "bridge", "droid", "rt1", "maniskill"
    episode_id: str  # stable id: "<tfds name>/<split>/<shard file>#<index in shard>"
    source_file: str  # the tfrecord shard it was read from
    index_in_file: int
    split: str = "train"
    # Cameras of the schema that hold no image in this episode (all-zero frames).
    absent_cameras: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)  # the dataset's own episode_metadata


@dataclass
class Episode:
    """Per-camera frames and the aligned robot signals.

    ``actions[t]`` is the action taken at step ``t`` (it moves ``states[t]`` towards
    ``states[t + 1]``); 7-d in BridgeV2's convention: EEF delta xyz, delta roll/pitch/yaw,
    gripper (1 = open, 0 = closed).
    """

    frames: dict[str, np.ndarray]  # camera -> (T, H, W, 3) uint8, present cameras only
    actions: np.ndarray  # (T, 7) float32
    states: np.ndarray  # (T, 7) float32: EEF xyz, roll/pitch/yaw, gripper
    instruction: str
    meta: EpisodeMeta
    # Optional geometry (simulated or sensor data); None for RGB-only datasets.
    depth: dict[str, np.ndarray] | None = None  # camera -> (T, H, W) float32, metres
    segmentation: dict[str, np.ndarray] | None = None  # camera -> (T, H, W) int32
    intrinsics: dict[str, np.ndarray] | None = None  # camera -> (3, 3) or (T, 3, 3)
    # camera -> (4, 4) or (T, 4, 4) camera-to-world, OpenCV axes (world = robot base in sim)
    extrinsics: dict[str, np.ndarray] | None = None
    labels: list[str] | None = None  # segmentation value -> semantic name

    def __len__(self) -> int:
        return int(self.actions.shape[0])

    @property
    def cameras(self) -> list[str]:
        return list(self.frames)

    def first_steps(self, steps: int) -> "Episode":
        """The episode cut to its first ``steps`` steps (per-frame arrays; fixed cameras kept)."""
        if steps >= len(self):
            return self

        def cut(d):
            return None if d is None else {k: (v[:steps] if np.ndim(v) >= 3 else v) for k, v in d.items()}

        return replace(self, frames={k: v[:steps] for k, v in self.frames.items()}, actions=self.actions[:steps],
                       states=self.states[:steps], depth=cut(self.depth), segmentation=cut(self.segmentation),
                       intrinsics=cut(self.intrinsics), extrinsics=cut(self.extrinsics))

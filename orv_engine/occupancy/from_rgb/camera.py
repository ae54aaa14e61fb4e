"""The camera of an RGB-only episode: intrinsics and camera-to-world poses for every frame,
so that per-frame depth can be back-projected into one world frame.

Intrinsics come from the best source available, in this order: what the episode itself
records (simulation, sensor datasets) > a calibration published for the dataset's camera
(:data:`CAMERA_PRESETS`) > a depth model's own field-of-view estimate (Depth Pro) > an
error. BridgeV2 and RT-1 record no poses, and their third-person cameras are fixed during an
episode, so without recorded extrinsics the camera is static: the identity pose on every
frame, i.e. the world frame *is* the camera frame (OpenCV axes: x right, y down, z forward).

Convention (as ``orv_engine.data.Episode`` and ``orv_engine.occupancy.cameras``): pixel
``(row i, col j)`` has its centre at ``(u, v) = (j, i)``, so rescaling an image by ``s``
maps a principal point ``c`` to ``(c + 0.5) * s - 0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from orv_engine.occupancy.cameras import check_intrinsics, check_poses, pinhole
from orv_engine.occupancy.errors import OccupancyInputError


@dataclass(frozen=True)
class CameraPreset:
    """Pinhole intrinsics of a dataset's camera at a reference resolution."""

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    source: str  # where the numbers come from (a calibration file, a paper, a vendor datasheet)

    def intrinsics_at(self, height: int, width: int) -> np.ndarray:
        """``(3, 3)`` float64 K for frames resized to ``(height, width)``."""
        if height <= 0 or width <= 0:
            raise OccupancyInputError(f"height/width: expected positive sizes, got ({height}, {width})")
        sx, sy = width / self.width, height / self.height
        return pinhole(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5, (self.cy + 0.5) * sy - 0.5)


# Keyed by Episode.meta.dataset. Only calibrations someone has published belong here; none
# of the supported datasets has one to use:
# - bridge: no published intrinsics; the maintainers say the cameras were mostly Logitech C920
#   webcams, some episodes a RealSense D435, and point to the vendors' specs
#   (rail-berkeley/bridge_data_v2 issue #22). Use Depth Pro's field of view instead.
# - rt1: Google has published no camera intrinsics for RT-1 (fractal) episodes.
# - droid: every rig's ZED camera has its own factory calibration (in the raw data), not
#   one preset for the dataset.
# - maniskill: simulated; the episode records its intrinsics and extrinsics.
CAMERA_PRESETS: dict[str, CameraPreset] = {}


@dataclass
class EpisodeCamera:
    intrinsics: np.ndarray  # (T, 3, 3) float64
    extrinsics: np.ndarray  # (T, 4, 4) float64 camera-to-world, OpenCV axes
    source: str  # where the intrinsics come from: "dataset" | "preset" | "depth_model"


def _frame_shape(episode, camera: str) -> tuple[int, int, int]:
    frames = episode.frames.get(camera)
    if frames is None:
        raise OccupancyInputError(
            f"camera: episode {episode.meta.episode_id} has no frames for camera {camera!r} "
            f"(present: {list(episode.frames)})"
        )
    shape = np.shape(frames)
    if len(shape) != 4:
        raise OccupancyInputError(
            f"frames: episode {episode.meta.episode_id} camera {camera!r}: expected (T, H, W, 3), got {shape}"
        )
    return int(shape[0]), int(shape[1]), int(shape[2])


def _recorded(table, camera: str):
    return None if table is None else table.get(camera)


def episode_camera(episode, camera: str, estimated_intrinsics: np.ndarray | None = None) -> EpisodeCamera:
    """Per-frame intrinsics and poses of ``camera`` in ``episode`` (see the module docstring
    for the order of sources). ``estimated_intrinsics``: a depth model's ``(3, 3)`` (or
    ``(T, 3, 3)``) K at the frames' resolution, e.g. ``DepthEstimate.intrinsics``."""
    num_frames, height, width = _frame_shape(episode, camera)
    where = f"episode {episode.meta.episode_id} camera {camera!r}"
    recorded = _recorded(episode.intrinsics, camera)
    preset = CAMERA_PRESETS.get(episode.meta.dataset)
    if recorded is not None:
        intrinsics = check_intrinsics(recorded, num_frames, f"intrinsics ({where})")
        source = "dataset"
    elif preset is not None:
        intrinsics = check_intrinsics(preset.intrinsics_at(height, width), num_frames, f"intrinsics ({where})")
        source = "preset"
    elif estimated_intrinsics is not None:
        intrinsics = check_intrinsics(estimated_intrinsics, num_frames, f"estimated_intrinsics ({where})")
        source = "depth_model"
    else:
        raise OccupancyInputError(
            f"intrinsics: no intrinsics: {where} (dataset {episode.meta.dataset!r}) records none and has no "
            "camera preset; give a depth model that estimates the field of view or a camera preset"
        )
    poses = _recorded(episode.extrinsics, camera)
    if poses is not None:
        extrinsics = check_poses(poses, num_frames, f"extrinsics ({where})")
    else:  # a fixed camera: the world frame is the camera frame
        extrinsics = np.broadcast_to(np.eye(4), (num_frames, 4, 4)).copy()
    return EpisodeCamera(intrinsics, extrinsics, source)


def preset_focal_length(episode, camera: str, height: int, width: int) -> float | None:
    """``fx`` at frames of ``(height, width)`` from recorded or preset intrinsics, to hand
    to ``DepthEstimator.estimate``; None when neither exists (let the model estimate it).
    Recorded intrinsics are at the episode's frame size and are rescaled to ``width``;
    per-frame ones give their median."""
    num_frames, _, frame_width = _frame_shape(episode, camera)
    recorded = _recorded(episode.intrinsics, camera)
    if recorded is not None:
        where = f"intrinsics (episode {episode.meta.episode_id} camera {camera!r})"
        K = check_intrinsics(recorded, num_frames, where)
        return float(np.median(K[:, 0, 0])) * width / frame_width
    preset = CAMERA_PRESETS.get(episode.meta.dataset)
    if preset is not None:
        return float(preset.intrinsics_at(height, width)[0, 0])
    return None

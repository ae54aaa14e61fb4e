"""The RLDS layout of simulated episodes: BridgeV2's step schema plus geometry.

Per step, for each camera ``k`` (``image_k`` as in BridgeV2):
- ``observation/depth_k``: 16-bit PNG, millimetres (0 = no return);
- ``observation/segmentation_k``: 8-bit PNG, index into ``episode_metadata/semantic_names``;
- ``observation/camera_intrinsics_k``: float32 (3, 3), OpenCV;
- ``observation/camera_extrinsics_k``: float32 (4, 4), camera-to-robot-base, OpenCV axes.
``episode_metadata`` adds ``semantic_names`` (JSON list), ``robot``, ``seed``, ``success`` and
``appearance`` (JSON of :class:`orv_engine.sim.appearance.Appearance`: colours, light, motion).
``language_embedding`` is zeros: BridgeV2's Kona/USE encoder is not available offline, and
Octo/OpenVLA re-embed the instruction themselves.
"""

from __future__ import annotations

import io
import json

import numpy as np
from PIL import Image

from orv_engine import import_order
from orv_engine.data.episode import Episode
from orv_engine.data.rlds_writer import bridge_features

DATASET_NAME = "orv_tabletop"


def sim_features(num_cameras: int, image_size: tuple[int, int]):
    tf = import_order.tensorflow()
    f = import_order.tensorflow_datasets().features
    h, w = image_size
    extra = {}
    for k in range(num_cameras):
        extra[f"depth_{k}"] = f.Image(shape=(h, w, 1), dtype=tf.uint16, encoding_format="png")
        extra[f"segmentation_{k}"] = f.Image(shape=(h, w, 1), dtype=tf.uint8, encoding_format="png")
        extra[f"camera_intrinsics_{k}"] = f.Tensor(shape=(3, 3), dtype=tf.float32)
        extra[f"camera_extrinsics_{k}"] = f.Tensor(shape=(4, 4), dtype=tf.float32)
    features = bridge_features(image_size, cameras=num_cameras, extra_observation=extra)
    metadata = dict(features["episode_metadata"].feature_dict if hasattr(features["episode_metadata"], "feature_dict") else features["episode_metadata"])
    metadata.update({
        "semantic_names": f.Text(),
        "robot": f.Text(),
        "seed": f.Scalar(dtype=tf.int32),
        "success": f.Scalar(dtype=tf.bool),
        "appearance": f.Text(),
    })
    return f.FeaturesDict({"steps": features["steps"], "episode_metadata": f.FeaturesDict(metadata)})


def _jpeg(image: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def episode_to_rlds(episode: Episode, jpeg_quality: int = 85) -> dict:
    """An :class:`Episode` with geometry -> a nested dict matching :func:`sim_features`.

    Frames are JPEG-encoded here at ``jpeg_quality`` (tfds would use 95: twice the bytes).
    """
    cameras = sorted(episode.frames)
    n = len(episode)
    steps = []
    for t in range(n):
        observation = {"state": episode.states[t]}
        for cam in cameras:
            k = cam.split("_")[-1]
            observation[cam] = _jpeg(episode.frames[cam][t], jpeg_quality)
            mm = np.clip(np.round(episode.depth[cam][t] * 1000.0), 0, 65535).astype(np.uint16)
            observation[f"depth_{k}"] = mm[..., None]
            observation[f"segmentation_{k}"] = episode.segmentation[cam][t].astype(np.uint8)[..., None]
            observation[f"camera_intrinsics_{k}"] = _at(episode.intrinsics[cam], t)
            observation[f"camera_extrinsics_{k}"] = _at(episode.extrinsics[cam], t)
        steps.append({
            "observation": observation,
            "action": episode.actions[t],
            "discount": 1.0,
            "reward": float(t == n - 1 and episode.meta.extra.get("success", False)),
            "is_first": t == 0,
            "is_last": t == n - 1,
            "is_terminal": t == n - 1,
            "language_instruction": episode.instruction,
            "language_embedding": np.zeros(512, np.float32),
        })
    extra = episode.meta.extra
    metadata = {
        "file_path": episode.meta.episode_id,
        "episode_id": int(extra.get("seed", 0)),
        **{f"has_image_{k.split('_')[-1]}": True for k in cameras},
        "has_language": True,
        "semantic_names": json.dumps(episode.labels or []),
        "robot": str(extra.get("robot", "")),
        "seed": int(extra.get("seed", 0)),
        "success": bool(extra.get("success", False)),
        "appearance": str(extra.get("appearance", "")),
    }
    return {"steps": steps, "episode_metadata": metadata}


def _at(values: np.ndarray, t: int) -> np.ndarray:
    values = np.asarray(values, np.float32)
    return values[t] if values.ndim == 3 else values

"""The exported schema: BridgeV2's ``bridge_dataset`` features + provenance in ``episode_metadata``.

Field for field the features of the real BridgeV2 TFDS release (as in
``../shared/data/bridge_debug/bridge_dataset/1.0.0/features.json``): 4 JPEG cameras
``image_0..3``, ``state`` and ``action`` float32[7], ``language_instruction``,
``language_embedding`` float32[512], ``is_first/is_last/is_terminal``, ``reward``,
``discount``; ``episode_metadata`` with ``file_path``, ``episode_id``, ``has_image_0..3``,
``has_language``. Added to ``episode_metadata`` (readers that do not know them ignore
them; Octo and OpenVLA never read ``episode_metadata``): :data:`PROVENANCE_FIELDS`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

from orv_engine import import_order

# name -> (kind, description); kinds: "text", "int32", "int64", "float32", "bool"
PROVENANCE_FIELDS: dict[str, tuple[str, str]] = {
    "synthetic": ("bool", "True for an ORV-generated episode, False for a copied source episode."),
    "source_dataset": ("text", "Dataset of the source episode whose actions drove the generation."),
    "source_episode": ("text", "Id of the source episode in source_dataset."),
    "source_start_step": ("int32", "First step of the source episode this clip covers."),
    "first_frame_variant": ("text", "Id of the first-frame variant (ControlNet repaint) the rollout started from."),
    "seed": ("int64", "Random seed of the rollout."),
    "models": ("text", 'JSON {role: {"name": ..., "sha256": ...}} of the models used (world model, first frames, VLM).'),
    "verdict_score": ("float32", "Weighted final score of the filtering verdict (NaN if none)."),
    "verdict_scores": ("text", "JSON of the per-criterion verdict scores (and confidences)."),
    "provenance": ("text", "JSON of the full provenance record, including any extra fields."),
}


def bridge_export_features(image_size: tuple[int, int] = (256, 256), provenance: bool = True):
    """The tfds ``FeaturesDict`` of an exported dataset."""
    tf = import_order.tensorflow()
    f = import_order.tensorflow_datasets().features
    h, w = image_size
    observation = {
        f"image_{k}": f.Image(shape=(h, w, 3), dtype=tf.uint8, encoding_format="jpeg",
                              doc="Main camera RGB observation." if k == 0 else "Extra camera RGB (zeros when absent).")
        for k in range(4)
    }
    observation["state"] = f.Tensor(shape=(7,), dtype=tf.float32,
                                    doc="EEF xyz, roll/pitch/yaw, gripper (1 open, 0 closed).")
    steps = f.Dataset({
        "observation": f.FeaturesDict(observation),
        "action": f.Tensor(shape=(7,), dtype=tf.float32,
                           doc="EEF delta xyz, delta roll/pitch/yaw, gripper command (1 open, 0 closed)."),
        "discount": f.Scalar(dtype=tf.float32, doc="Discount if provided, default to 1."),
        "reward": f.Scalar(dtype=tf.float32, doc="Reward if provided, 1 on final step for demos."),
        "is_first": f.Scalar(dtype=tf.bool, doc="True on first step of the episode."),
        "is_last": f.Scalar(dtype=tf.bool, doc="True on last step of the episode."),
        "is_terminal": f.Scalar(dtype=tf.bool, doc="True on last step of the episode if it is a terminal step, True for demos."),
        "language_instruction": f.Text(doc="Language Instruction (the VLM caption for synthetic episodes)."),
        "language_embedding": f.Tensor(shape=(512,), dtype=tf.float32,
                                       doc="Zeros unless an embedding function was given (no USE model offline)."),
    })
    metadata = {
        "file_path": f.Text(doc="Path to the original data file."),
        "episode_id": f.Scalar(dtype=tf.int32, doc="ID of episode in file_path."),
        **{f"has_image_{k}": f.Scalar(dtype=tf.bool, doc=f"True if image{k} exists in observation, otherwise dummy value.")
           for k in range(4)},
        "has_language": f.Scalar(dtype=tf.bool, doc="True if language exists in observation, otherwise empty string."),
    }
    if provenance:
        kinds = {"int32": tf.int32, "int64": tf.int64, "float32": tf.float32, "bool": tf.bool}
        for name, (kind, doc) in PROVENANCE_FIELDS.items():
            metadata[name] = f.Text(doc=doc) if kind == "text" else f.Scalar(dtype=kinds[kind], doc=doc)
    return f.FeaturesDict({"steps": steps, "episode_metadata": f.FeaturesDict(metadata)})


def feature_signature(features_json: Mapping | str | Path) -> dict[str, tuple]:
    """``{path: (feature class, dtype, shape, encoding)}`` of a tfds ``features.json``.

    Descriptions are left out: they are documentation, not schema.
    """
    if not isinstance(features_json, Mapping):
        features_json = json.loads(Path(features_json).read_text())
    out: dict[str, tuple] = {}

    def walk(node: Mapping, path: str) -> None:
        cls = node.get("pythonClassName", "").rsplit(".", 1)[-1]
        if "featuresDict" in node:
            for key, child in node["featuresDict"]["features"].items():
                walk(child, f"{path}/{key}" if path else key)
            return
        if "sequence" in node:
            walk(node["sequence"]["feature"], path)
            return
        body = node.get("tensor") or node.get("image") or {}
        shape = tuple(int(d) for d in body.get("shape", {}).get("dimensions", []))
        encoding = body.get("encodingFormat") or body.get("encoding", "")
        out[path] = (cls, body.get("dtype", "string" if cls == "Text" else ""), shape, encoding)

    walk(features_json, "")
    return out

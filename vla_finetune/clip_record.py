"""``ExportClip``: the small record the rollout/filtering stages hand to the export.

A kept clip is what the world model generated (frames) plus the robot signals it was
generated under (actions, states of the source episode window), the VLM caption and where
it all came from (:class:`Provenance`). This module needs numpy only (no TensorFlow): the rollout
and filtering stages build these records without importing anything of ``vla_finetune``'s
export machinery (TensorFlow is never loaded here).

On disk a clip is a folder with ``clip.npz`` (frames, actions, states) and ``clip.json``
(caption + provenance): :meth:`ExportClip.save` / :meth:`ExportClip.load`.

Conventions (BridgeV2's, as ``orv_engine.data.Episode``): 7-d states = EEF xyz,
roll/pitch/yaw, gripper (1 open, 0 closed); 7-d actions = EEF delta xyz, delta
roll/pitch/yaw, gripper (1 open, 0 closed); ``actions[t]`` moves ``states[t]`` towards
``states[t + 1]``.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np


class ExportError(ValueError):
    """A clip (or a dataset) cannot be exported as asked; the message names what and where."""


@dataclass
class Provenance:
    """Where a synthetic clip came from; stored in ``episode_metadata`` of the export.

    ``models`` maps a role ("world_model", "first_frame", "vlm", ...) to
    ``{"name": ..., "sha256": ...}`` (the weight hash); ``verdict_scores`` holds the
    filtering stage's per-criterion scores (and confidences, if any) and
    ``verdict_score`` its weighted final score.
    """

    source_dataset: str = ""
    source_episode: str = ""
    source_start_step: int = 0  # first step of the source episode this clip covers
    first_frame_variant: str = ""
    seed: int = 0
    models: dict[str, dict[str, str]] = field(default_factory=dict)
    verdict_score: float | None = float("nan")  # filtering's ClipVerdict.final_score
    # any JSON, e.g. {"scores": verdict.scores, "confidences": verdict.confidences}
    verdict_scores: dict[str, Any] = field(default_factory=dict)
    synthetic: bool = True
    extra: dict[str, Any] = field(default_factory=dict)  # anything else, kept as JSON

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | "Provenance" | None) -> "Provenance":
        if data is None:
            return cls()
        if isinstance(data, Provenance):
            return data
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        extra = dict(kwargs.pop("extra", {}) or {})
        extra.update({k: v for k, v in data.items() if k not in known})
        return cls(**kwargs, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ExportClip:
    """One kept clip: frames ``(T, H, W, 3) uint8``, ``actions``/``states`` ``(T, 7)``."""

    frames: np.ndarray
    actions: np.ndarray
    states: np.ndarray
    caption: str
    provenance: Provenance = field(default_factory=Provenance)

    def __post_init__(self):
        self.provenance = Provenance.from_dict(self.provenance)

    def __len__(self) -> int:
        return int(np.shape(self.frames)[0]) if np.ndim(self.frames) else 0

    @property
    def name(self) -> str:
        p = self.provenance
        return f"{p.source_dataset}/{p.source_episode}@{p.source_start_step}/{p.first_frame_variant}/seed{p.seed}"

    # -- disk format -------------------------------------------------------------------
    def save(self, folder: str | Path) -> Path:
        """Write ``folder/clip.npz`` and ``folder/clip.json`` (each atomically)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / "clip.npz", lambda f: np.savez(
            f, frames=np.asarray(self.frames), actions=np.asarray(self.actions), states=np.asarray(self.states)))
        meta = {"caption": self.caption, "provenance": self.provenance.to_dict()}
        _atomic_write(folder / "clip.json", lambda f: f.write(json.dumps(meta, indent=1, default=_json_default).encode()))
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "ExportClip":
        folder = Path(folder)
        try:
            with np.load(folder / "clip.npz") as arrays:
                data = {k: arrays[k] for k in arrays.files}
            meta = json.loads((folder / "clip.json").read_text())
        except (OSError, ValueError) as err:
            raise ExportError(f"{folder}: not a readable clip folder (clip.npz + clip.json): {err}") from err
        missing = [k for k in ("frames", "actions", "states") if k not in data]
        if missing:
            raise ExportError(f"{folder}/clip.npz: missing array(s) {', '.join(missing)}")
        return cls(frames=data["frames"], actions=data["actions"], states=data["states"],
                   caption=meta.get("caption", ""), provenance=meta.get("provenance"))


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _atomic_write(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def check_clip(clip: ExportClip, where: str = "") -> None:
    """Refuse a clip that cannot become a Bridge episode; the error names field, step, dim.

    Structural checks only (shapes, dtypes, finiteness, gripper range, caption); the
    consistency with Octo/OpenVLA's Bridge transforms is :func:`bridge_transforms.check_relabel`.
    """
    where = where or clip.name
    frames = clip.frames
    if frames is None or not isinstance(frames, np.ndarray) or frames.ndim != 4 or frames.shape[-1] != 3:
        shape = getattr(frames, "shape", None)
        raise ExportError(f"clip {where}: frames must be a (T, H, W, 3) uint8 array, got shape {shape}")
    if frames.dtype != np.uint8:
        raise ExportError(f"clip {where}: frames must be uint8, got {frames.dtype}")
    num = frames.shape[0]
    for name in ("actions", "states"):
        value = getattr(clip, name)
        if value is None:
            raise ExportError(f"clip {where}: no {name} (a clip needs the {name} it was generated under)")
        arr = np.asarray(value)
        if arr.ndim != 2 or arr.shape[1] != 7:
            raise ExportError(f"clip {where}: {name} must be (T, 7), got shape {arr.shape}")
        if arr.shape[0] != num:
            raise ExportError(
                f"clip {where}: mismatched lengths: {num} frames but {arr.shape[0]} {name} "
                f"(one {name[:-1]} per frame)"
            )
        if not np.issubdtype(arr.dtype, np.number):
            raise ExportError(f"clip {where}: {name} must be numeric, got {arr.dtype}")
        bad = ~np.isfinite(arr.astype(np.float64))
        if bad.any():
            step, dim = map(int, np.argwhere(bad)[0])
            raise ExportError(f"clip {where}: non-finite {name} (NaN/inf) at step {step}, dim {dim}")
    gripper = np.asarray(clip.actions, np.float64)[:, 6]
    if gripper.min() < -0.01 or gripper.max() > 1.01:
        raise ExportError(
            f"clip {where}: gripper action outside [0, 1] (min {gripper.min():.3f}, max {gripper.max():.3f}); "
            "BridgeV2 stores the absolute gripper command, 1 = open, 0 = closed"
        )
    if not isinstance(clip.caption, str) or not clip.caption.strip():
        raise ExportError(f"clip {where}: empty caption (language_instruction)")
    score = clip.provenance.verdict_score
    if score is not None and not isinstance(score, (int, float)):
        raise ExportError(f"clip {where}: verdict_score must be a number, got {score!r}")
    if isinstance(score, float) and math.isinf(score):
        raise ExportError(f"clip {where}: verdict_score is infinite")

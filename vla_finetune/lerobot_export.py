"""Kept clips -> a LeRobot dataset (the ``lerobot`` package's v3.0 format), a second output.

Runs where ``lerobot`` is importable. It is not in this project's environment: lerobot
0.4.4 (the newest release for Python 3.11) requires ``torch<2.11`` and would replace the
project's torch 2.14.1 / torchvision 0.29.1; lerobot >= 0.5 requires Python >= 3.12. So
it runs from a separate environment (see docs/export.md)::

    python3.11 -m venv ~/venvs/lerobot && ~/venvs/lerobot/bin/pip install lerobot==0.4.4
    PYTHONPATH=/path/to/orv ~/venvs/lerobot/bin/python -m vla_finetune.cli lerobot CLIPS --out DIR

This module needs only numpy, Pillow and lerobot (no TensorFlow), so that works.

Layout: ``observation.images.image_0`` (image, H x W x 3), ``observation.state`` (7),
``action`` (7), the caption as the frame's task. Actions follow the Bridge convention
the RLDS consumers train on (``transform="octo"``: relabelled from reached states,
gripper binarized, last step dropped; ``"openvla"`` also drops the first step;
``"none"`` keeps the commanded actions and every step). Provenance of every episode goes
to ``meta/orv_provenance.jsonl`` (LeRobot has no per-episode custom fields; it ignores
files it does not know). Written into a temporary folder and renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from vla_finetune.bridge_transforms import bridge_transform, check_relabel
from vla_finetune.clip_record import ExportClip, ExportError, check_clip

STATE_NAMES = ["x", "y", "z", "roll", "pitch", "yaw", "gripper"]


def lerobot_features(image_size: tuple[int, int]) -> dict:
    h, w = image_size
    return {
        "observation.images.image_0": {"dtype": "image", "shape": (h, w, 3), "names": ["height", "width", "channel"]},
        "observation.state": {"dtype": "float32", "shape": (7,), "names": STATE_NAMES},
        "action": {"dtype": "float32", "shape": (7,), "names": STATE_NAMES},
    }


def _resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    if frame.shape[:2] == tuple(size):
        return frame
    return np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.BICUBIC))


def export_lerobot(clips: Iterable[ExportClip], root: str | Path, *, repo_id: str = "local/orv_bridge", fps: int = 5,
                   image_size: tuple[int, int] = (256, 256), transform: str = "octo", use_videos: bool = False,
                   robot_type: str = "widowx", overwrite: bool = False) -> dict:
    """Write a LeRobot dataset at ``root``; return a summary."""
    try:
        from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: PLC0415  (lerobot side venv only)
    except ImportError as err:
        raise ImportError(
            "the LeRobot export needs the `lerobot` package, which cannot share this environment: lerobot 0.4.4 "
            "(the newest for Python 3.11) requires torch<2.11 (this project pins torch 2.14.1) and lerobot>=0.5 "
            "requires Python>=3.12. Run it from a separate venv with lerobot==0.4.4 (docs/export.md)"
        ) from err
    if transform not in ("octo", "openvla", "none"):
        raise ValueError(f"transform must be 'octo', 'openvla' or 'none', not {transform!r}")
    root = Path(root).expanduser().resolve()
    if root.exists() and not overwrite:
        raise ExportError(f"{root} already exists (pass overwrite=True / --overwrite to replace it)")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp_parent = Path(tempfile.mkdtemp(prefix=f".{root.name}.partial-", dir=root.parent))
    start = time.perf_counter()
    episodes = frames_written = 0
    try:
        dataset = LeRobotDataset.create(repo_id=repo_id, fps=fps, features=lerobot_features(image_size),
                                        root=tmp_parent / "ds", robot_type=robot_type, use_videos=use_videos)
        provenance_lines = []
        for clip in clips:
            where = f"#{episodes} ({clip.name})"
            check_clip(clip, where)
            check_relabel(clip.states, clip.actions, where)
            if transform == "none":
                states, actions, kept = clip.states, clip.actions, np.arange(len(clip))
            else:
                _, actions, kept = bridge_transform(clip.states, clip.actions, transform)
                states = np.asarray(clip.states, np.float32)[kept]
            for i, t in enumerate(kept):
                dataset.add_frame({
                    "observation.images.image_0": _resize(clip.frames[t], image_size),
                    "observation.state": np.asarray(states[i], np.float32),
                    "action": np.asarray(actions[i], np.float32),
                    "task": clip.caption.strip(),
                })
            dataset.save_episode()
            provenance_lines.append(json.dumps({"episode_index": episodes, "source_steps": [int(k) for k in kept],
                                                **clip.provenance.to_dict()}, default=str))
            episodes += 1
            frames_written += len(kept)
        if episodes == 0:
            raise ExportError("no clips to export")
        dataset.finalize()
        (dataset.root / "meta" / "orv_provenance.jsonl").write_text("\n".join(provenance_lines) + "\n")
        images = dataset.root / "images"  # per-frame PNGs staged by add_frame; empty once embedded
        if images.is_dir() and not any(p.is_file() for p in images.rglob("*")):
            shutil.rmtree(images)
        old = None
        if root.exists():
            old = root.with_name(f".{root.name}.old-{os.getpid()}-{time.time_ns()}")
            os.rename(root, old)
        os.rename(tmp_parent / "ds", root)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp_parent, ignore_errors=True)
    size = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    return {"path": str(root), "repo_id": repo_id, "episodes": episodes, "frames": frames_written, "bytes": size,
            "transform": transform, "seconds": round(time.perf_counter() - start, 2)}

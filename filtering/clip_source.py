"""Where clips come from: a folder of clips on disk, or in-memory arrays / ``Clip`` records.

A folder holds one clip per entry, read with ``orv_engine.data.clip_files.read_clip``:
``.mp4 .avi .mov .mkv .webm .gif .npy`` or a folder of ``.png/.jpg`` frames; a clip's name
is its file name without the extension. Other files are listed as ignored, not fatal.
Condition maps (for the occupancy-agreement check) come from a second folder holding
``<clip name>.npz`` with ``depth`` and/or ``semantics`` arrays ``(F, H, W)``, the
clip's occupancy rendered for its frames (``orv_engine.occupancy.clip_condition_maps``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from orv_engine.data.clip_files import read_clip, scan_clip_folder


@dataclass
class ClipInput:
    name: str
    load: Callable[[], np.ndarray]  # -> (T, H, W, 3) uint8; called once, may raise
    path: str = ""
    conditions: Callable[[], dict | None] = field(default=lambda: None)


def _load_conditions(path: Path) -> dict | None:
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        return {key: data[key] for key in ("depth", "semantics") if key in data}


def clips_from_folder(folder, conditions_dir=None) -> tuple[list[ClipInput], list[str]]:
    """``(clips, ignored entries)`` of a folder, in natural name order (the naming rule of
    :mod:`orv_engine.data.clip_files`; what it cannot read is reported, not fatal)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"not a folder of clips: {folder}")
    found, ignored, duplicates = scan_clip_folder(folder)
    ignored += [f"{second.name} (a second clip named {name!r})" for name, _, second in duplicates]
    clips = []
    for name, entry in found.items():
        cond = (lambda p=Path(conditions_dir) / f"{name}.npz": _load_conditions(p)) if conditions_dir else (lambda: None)
        clips.append(ClipInput(name, lambda p=entry: read_clip(p), str(entry), cond))
    return clips, ignored


def clips_from_arrays(items: Iterable) -> list[ClipInput]:
    """``(name, frames)`` / ``(name, frames, conditions)`` tuples, or ``orv_engine.data.Clip``
    records (name: ``<episode id>@<start step>``, conditions: ``clip.conditions``)."""
    out = []
    for item in items:
        if hasattr(item, "frames") and hasattr(item, "episode_id"):
            name = f"{item.episode_id}@{item.start}"
            out.append(ClipInput(name, lambda c=item: np.asarray(c.frames), name,
                                 lambda c=item: dict(c.conditions) or None))
            continue
        name, frames, *rest = item
        conditions = rest[0] if rest else None
        out.append(ClipInput(str(name), lambda f=frames: np.asarray(f), str(name), lambda c=conditions: c))
    return out


def sample_frames(frames: np.ndarray, count: int, height: int | None = None, width: int | None = None) -> np.ndarray:
    """``count`` frames spread evenly over the clip (first and last included), resized to
    ``height`` x ``width`` when given (bilinear, antialiased). Qwen2.5-VL groups frames in
    pairs (temporal patch 2): an even ``count`` wastes nothing."""
    frames = np.asarray(frames)
    index = np.round(np.linspace(0, len(frames) - 1, min(count, len(frames)))).astype(int)
    if len(index) < count:  # short clip: repeat frames to the requested count
        index = np.round(np.linspace(0, len(frames) - 1, count)).astype(int)
    picked = frames[index]
    if height and width and picked.shape[1:3] != (height, width):
        x = torch.from_numpy(np.ascontiguousarray(picked)).permute(0, 3, 1, 2)
        x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        picked = x.permute(0, 2, 3, 1).contiguous().numpy()
    return np.ascontiguousarray(picked)

"""The work of one unit in one stage, shared by the local runner and the Ray actors.

A unit is one (source episode, first-frame variant): a painted variant ``KEY__vK`` or the
episode's ``KEY__replay`` (:mod:`augment.replay`: its real first frame, no painting; the
``first_frames`` stage copies it with :func:`replay_first_frame`, which needs no model).
Each function reads what earlier stages wrote, writes its own outputs atomically, and
returns the seconds it took; the caller records the stage in the manifest only afterwards.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
from PIL import Image

from augment.replay import is_replay
from augment.rollout import write_rollout  # a module attribute: benchmarks.augment_benchmark times it
from augment.sources import load_source
from orv_engine.atomic_files import atomic_write_bytes


def first_frame_path(run_dir, unit_id: str) -> Path:
    return Path(run_dir) / "first_frames" / f"{unit_id}.png"


def _write_png(path: Path, frame: np.ndarray) -> None:
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())


def replay_first_frame(run_dir, unit_id: str, unit: dict) -> float:
    """The replay unit's first frame: the episode's recorded frame 0 at the rollout size
    (``sources``' ground truth, lossless PNG) -> ``first_frames/UNIT.png``; no model."""
    start = time.perf_counter()
    source = load_source(run_dir, unit["episode"])
    if source.frames is None:
        raise FileNotFoundError(f"source {source.key} has no recorded frames (written before the replay variant "
                                "existed); rerun the sources stage in a new run directory")
    _write_png(first_frame_path(run_dir, unit_id), np.ascontiguousarray(source.frames[0]))
    return time.perf_counter() - start


def first_frame_unit(painter, config, run_dir, unit_id: str, unit: dict) -> float:
    """The ``first_frames`` stage's work on one unit. ``painter``: a zero-argument callable
    returning the :class:`augment.first_frames.FirstFramePainter`, called only for painted
    units (so a stage left with replay units alone never loads FLUX)."""
    if is_replay(unit):
        return replay_first_frame(run_dir, unit_id, unit)
    return paint_unit(painter(), config, run_dir, unit_id, unit)


def paint_unit(painter, config, run_dir, unit_id: str, unit: dict) -> float:
    """Paint the unit's first frame from its episode's first-step maps -> ``first_frames/UNIT.png``."""
    start = time.perf_counter()
    source = load_source(run_dir, unit["episode"])
    maps = {k: v[0] for k, v in source.conditions.items()}
    if not maps:
        raise ValueError(f"source {source.key} has no rendered maps to paint a first frame from")
    ff = config.first_frames
    height = ff.height or config.rollout.height
    width = ff.width or config.rollout.width
    frame = painter.paint(maps, unit["prompt"], unit["seed"], height, width)
    if frame.shape[:2] != (config.rollout.height, config.rollout.width):
        frame = np.asarray(Image.fromarray(frame).resize((config.rollout.width, config.rollout.height), Image.BICUBIC))
    _write_png(first_frame_path(run_dir, unit_id), frame)
    return time.perf_counter() - start


def read_first_frame(run_dir, unit_id: str) -> np.ndarray:
    path = first_frame_path(run_dir, unit_id)
    try:
        return np.asarray(Image.open(path).convert("RGB"))
    except OSError as err:
        raise FileNotFoundError(f"{path}: first frame unreadable ({err}); rerun first-frames for {unit_id}") from None


def save_unit_rollout(generator, painter_ids: dict, config, run_dir, unit_id: str, unit: dict, source,
                      frames: np.ndarray, seconds: float) -> None:
    """Write one unit's rollout folder with the ids of the models that made it."""
    if is_replay(unit):
        models = {"world_model": generator.model_id, "first_frame": "recorded frame 0 of the source episode"}
    else:
        models = {"world_model": generator.model_id, "first_frame": painter_ids.get("flux", ""),
                  **{f"controlnet_{i}": p for i, p in enumerate(painter_ids.get("controlnets", []))}}
    write_rollout(run_dir, unit_id, unit, source, frames, models, seconds, config.rollout.fps)


def rollout_unit(generator, painter_ids: dict, config, run_dir, unit_id: str, unit: dict) -> float:
    """Roll the unit's first frame out -> ``rollouts/UNIT/`` (see :mod:`augment.rollout`)."""
    start = time.perf_counter()
    source = load_source(run_dir, unit["episode"])
    frames = generator.generate(source, read_first_frame(run_dir, unit_id), unit["seed"])
    save_unit_rollout(generator, painter_ids, config, run_dir, unit_id, unit, source, frames,
                      time.perf_counter() - start)
    return time.perf_counter() - start


def rollout_units(generator, painter_ids: dict, config, run_dir, unit_ids: list[str], units: list[dict],
                  finished) -> None:
    """Units of one episode rolled out in one batch per forward; ``finished(unit_id, seconds)`` is
    called as each unit's folder is written, so a kill mid-batch keeps the units already written."""
    start = time.perf_counter()
    source = load_source(run_dir, units[0]["episode"])
    firsts = [read_first_frame(run_dir, unit_id) for unit_id in unit_ids]
    videos = generator.generate_batch([source] * len(units), firsts, [u["seed"] for u in units])
    seconds = (time.perf_counter() - start) / len(units)
    for unit_id, unit, frames in zip(unit_ids, units, videos):
        save_unit_rollout(generator, painter_ids, config, run_dir, unit_id, unit, source, frames, seconds)
        finished(unit_id, seconds)

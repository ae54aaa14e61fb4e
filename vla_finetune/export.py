"""Kept clips -> a TFDS/RLDS dataset in BridgeV2's ``bridge_dataset`` schema (+ provenance).

Every clip is checked before it is written (:func:`clip_record.check_clip` for shapes,
NaN and gripper range; :func:`bridge_transforms.check_relabel` for agreement with the
relabelling Octo and OpenVLA apply). The dataset is written into a hidden temporary
folder beside the target and renamed into place only when complete, so an error or a
kill midway leaves no half-written dataset at the target.

Per step: ``image_0`` = the generated frame (resized to ``image_size``, JPEG), ``image_1..3``
= zeros (``has_image_k`` False, as BridgeV2 marks absent cameras), ``state``/``action`` as
given (the commanded actions, as BridgeV2 stores them; the frameworks relabel), ``reward``
1 on the last step, ``discount`` 1, ``is_terminal`` on the last step (demos),
``language_instruction`` = the caption, ``language_embedding`` = ``embed_fn(caption)`` or
zeros (BridgeV2's embedding is the Universal Sentence Encoder, which is not available
offline; Octo and OpenVLA ignore this field and tokenize the instruction themselves).
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image

from orv_engine.data.rlds_writer import write_rlds
from vla_finetune.bridge_schema import PROVENANCE_FIELDS, bridge_export_features
from vla_finetune.bridge_transforms import FRAMEWORKS, check_relabel
from vla_finetune.clip_record import ExportClip, ExportError, check_clip
from vla_finetune.statistics import StatisticsAccumulator, write_json

DEFAULT_NAME = "orv_bridge"
DEFAULT_VERSION = "1.0.0"


@dataclass
class ExportConfig:
    name: str = DEFAULT_NAME  # tfds dataset name (the folder name Octo/OpenVLA configs refer to)
    version: str = DEFAULT_VERSION
    image_size: tuple[int, int] = (256, 256)  # (H, W) of image_0; BridgeV2's release is 256x256
    jpeg_quality: int = 95
    val_fraction: float = 0.0  # share of clips written to a "val" split (by a hash of the clip name)
    check_relabel: bool = True  # the Octo/OpenVLA relabelling agreement check
    min_steps: int = 3
    num_shards: int | None = None
    overwrite: bool = False


@dataclass
class ExportResult:
    path: Path  # the version folder: <out>/<name>/<version>
    episodes: dict[str, int]  # split -> number of episodes
    steps: int
    bytes: int
    seconds: float


def jpeg_bytes(image: np.ndarray, size: tuple[int, int], quality: int) -> bytes:
    pil = Image.fromarray(image)
    if pil.size != (size[1], size[0]):
        pil = pil.resize((size[1], size[0]), Image.BICUBIC)
    buffer = io.BytesIO()
    pil.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def clip_to_rlds(clip: ExportClip, episode_id: int, config: ExportConfig,
                 embed_fn: Callable[[str], np.ndarray] | None = None, blank: bytes | None = None) -> dict:
    """One checked clip -> the nested dict of one episode in :func:`bridge_export_features`."""
    size = config.image_size
    blank = blank if blank is not None else jpeg_bytes(np.zeros((*size, 3), np.uint8), size, config.jpeg_quality)
    states = np.asarray(clip.states, np.float32)
    actions = np.asarray(clip.actions, np.float32)
    caption = clip.caption.strip()
    embedding = np.zeros(512, np.float32) if embed_fn is None else np.asarray(embed_fn(caption), np.float32)
    if embedding.shape != (512,):
        raise ExportError(f"embed_fn returned shape {embedding.shape}, expected (512,)")
    n = len(clip)
    steps = []
    for t in range(n):
        steps.append({
            "observation": {
                "image_0": jpeg_bytes(clip.frames[t], size, config.jpeg_quality),
                "image_1": blank, "image_2": blank, "image_3": blank,
                "state": states[t],
            },
            "action": actions[t],
            "discount": 1.0,
            "reward": float(t == n - 1),
            "is_first": t == 0,
            "is_last": t == n - 1,
            "is_terminal": t == n - 1,
            "language_instruction": caption,
            "language_embedding": embedding,
        })
    return {"steps": steps, "episode_metadata": provenance_metadata(clip, episode_id)}


def provenance_metadata(clip: ExportClip, episode_id: int) -> dict:
    p = clip.provenance
    score = float("nan") if p.verdict_score is None else float(p.verdict_score)
    meta = {
        "file_path": clip.name,
        "episode_id": int(episode_id),
        "has_image_0": True, "has_image_1": False, "has_image_2": False, "has_image_3": False,
        "has_language": True,
        "synthetic": bool(p.synthetic),
        "source_dataset": str(p.source_dataset),
        "source_episode": str(p.source_episode),
        "source_start_step": int(p.source_start_step),
        "first_frame_variant": str(p.first_frame_variant),
        "seed": int(p.seed),
        "models": json.dumps(p.models, sort_keys=True, default=str),
        "verdict_score": score,
        "verdict_scores": json.dumps(p.verdict_scores, sort_keys=True, default=str),
        "provenance": json.dumps(p.to_dict(), sort_keys=True, default=str),
    }
    assert set(meta) >= set(PROVENANCE_FIELDS)
    return meta


def split_indices(count: int, val_fraction: float) -> dict[str, list[int]]:
    """Deterministic train/val assignment by position: every ``round(1/val_fraction)``-th clip
    goes to ``val`` (none when there are fewer clips than that)."""
    if val_fraction <= 0:
        return {"train": list(range(count))}
    if val_fraction >= 1:
        raise ValueError(f"val_fraction must be < 1, got {val_fraction}")
    every = max(2, int(round(1 / val_fraction)))
    val = [i for i in range(count) if i % every == every - 1]
    train = [i for i in range(count) if i % every != every - 1]
    return {"train": train, "val": val} if val else {"train": train}


def export_clips(
    clips: Iterable[ExportClip] | Sequence[ExportClip],
    out_dir: str | Path,
    config: ExportConfig | None = None,
    *,
    embed_fn: Callable[[str], np.ndarray] | None = None,
) -> ExportResult:
    """Write ``clips`` as ``out_dir/<name>/<version>`` (a TFDS/RLDS folder); return where.

    ``clips`` may be a generator (clips are checked and encoded one at a time) or a lazy
    sequence (``len`` + indexing, e.g. :class:`vla_finetune.cli.ClipFolders`). Bad clips
    raise :class:`ExportError` and nothing is left at the target. With ``val_fraction`` > 0
    every ``round(1/val_fraction)``-th clip goes to a ``val`` split (Octo/OpenVLA use
    ``val`` when it exists, ``train[:95%]``/``train[95%:]`` otherwise); a generator is then
    first turned into a list (held in memory), a sequence is not.
    """
    config = config or ExportConfig()
    start = time.perf_counter()
    if config.val_fraction > 0:
        if not isinstance(clips, Sequence):
            clips = list(clips)
        sources = {split: (lambda idx=idx: (clips[i] for i in idx))
                   for split, idx in split_indices(len(clips), config.val_fraction).items()}
    else:
        sources = {"train": (lambda: iter(clips))}
    counter = {"steps": 0, "episodes": {}}
    blank = jpeg_bytes(np.zeros((*config.image_size, 3), np.uint8), config.image_size, config.jpeg_quality)
    next_id = [0]
    accs = {fw: StatisticsAccumulator(fw) for fw in FRAMEWORKS}

    def episodes(split: str, items) -> Iterator[dict]:
        count = 0
        for clip in items:
            if not isinstance(clip, ExportClip):
                raise ExportError(f"expected ExportClip records, got {type(clip).__name__}")
            where = f"#{next_id[0]} ({clip.name})"
            check_clip(clip, where)
            if config.check_relabel:
                check_relabel(clip.states, clip.actions, where, min_steps=config.min_steps)
            elif len(clip) < config.min_steps:
                raise ExportError(f"clip {where}: {len(clip)} steps, need at least {config.min_steps}")
            yield clip_to_rlds(clip, next_id[0], config, embed_fn, blank)
            for acc in accs.values():
                acc.add(clip.states, clip.actions)
            next_id[0] += 1
            count += 1
            counter["steps"] += len(clip)
        if count == 0:
            raise ExportError(f"no clips to export for split {split!r}")
        counter["episodes"][split] = count

    splits = {split: (lambda s=split, items=items: episodes(s, items())) for split, items in sources.items()}

    def finalize(folder: Path) -> None:  # the export's own statistics + a record of how it was made
        for framework, acc in accs.items():
            write_json(folder / f"dataset_statistics_{framework}.json", acc.result())
        write_json(folder / "export.json", {"config": {k: (list(v) if isinstance(v, tuple) else v)
                                                       for k, v in asdict(config).items()},
                                            "episodes": counter["episodes"], "steps": counter["steps"],
                                            "language_embedding": "zeros" if embed_fn is None else repr(embed_fn)})

    path = write_dataset_atomically(out_dir, config.name, config.version, bridge_export_features(config.image_size),
                                    splits, num_shards=config.num_shards, overwrite=config.overwrite, finalize=finalize,
                                    description="ORV-generated robot episodes in BridgeV2's bridge_dataset schema "
                                                "(orv_engine vla_finetune.export); provenance in episode_metadata.")
    size = sum(p.stat().st_size for p in path.glob("*.tfrecord*"))
    return ExportResult(path=path, episodes=dict(counter["episodes"]), steps=counter["steps"], bytes=size,
                        seconds=time.perf_counter() - start)


def write_dataset_atomically(out_dir: str | Path, name: str, version: str, features, splits, *,
                             num_shards: int | None = None, overwrite: bool = False, description: str = "",
                             finalize: Callable[[Path], None] | None = None) -> Path:
    """``rlds_writer.write_rlds`` into a temporary folder, then an atomic rename to
    ``out_dir/name/version``. ``finalize(folder)`` may add files before the rename. On any
    error the temporary folder is removed."""
    out_dir = Path(out_dir).expanduser().resolve()
    target = out_dir / name / version
    if target.exists() and not overwrite:
        raise ExportError(f"{target} already exists (pass overwrite=True / --overwrite to replace it)")
    (out_dir / name).mkdir(parents=True, exist_ok=True)
    tmp_root = Path(tempfile.mkdtemp(prefix=f".{name}-{version}.partial-", dir=out_dir / name))
    try:
        written = write_rlds(tmp_root, name, features, splits, version=version, num_shards=num_shards,
                             description=description)
        if finalize is not None:
            finalize(written)
        _fsync_tree(written)
        old = None
        if target.exists():  # overwrite: move the old one aside first, delete it after the swap
            old = target.with_name(f".{version}.old-{os.getpid()}-{time.time_ns()}")
            os.rename(target, old)
        os.rename(written, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp_root, ignore_errors=True)
        try:
            (out_dir / name).rmdir()  # only if we left it empty (failed first export)
        except OSError:
            pass
    return target


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as f:
                os.fsync(f.fileno())


def bytes_per_episode(result: ExportResult) -> float:
    total = sum(result.episodes.values())
    return result.bytes / total if total else math.nan

"""Held-out evaluation clips of the small ORV: one record per clip, one ``.npz`` per set.

Why a file: evaluating the four variants needs the same clips with both kinds of condition
maps; cutting them and rendering the coarse maps takes about a second per episode on a CPU,
so the benchmark caches them (``outputs/small/heldout_val.npz``) and a handful ship next to
the weights for the CI test (``orv_engine/pretrained/small_orv/heldout/clips.npz``).

The clips are cut and conditioned by the training code itself: the data section of a
training config (:class:`orv_engine.training.config.DataConfig`: ``preset: sim``, ``clip:``
overrides) gives the :class:`~orv_engine.data.clips.ClipConfig`
(:func:`orv_engine.training.data.clip_config_of`), the split is read in file order by
:class:`~orv_engine.data.clip_dataset.ClipDataset` (``cut_clips``, the split's clip interval),
and each clip gets the raw maps both condition sources of training give it:

- ``coarse``: ``conditions_source: occupancy``, the episode's 4D occupancy rendered by Occ2GS
  (:func:`orv_engine.occupancy.clip_condition_maps`);
- ``fine``: ``conditions_source: episode``, the simulator's own depth and segmentation kept
  to the occupancy's volume (:func:`orv_engine.occupancy.recorded_clip_maps`).

Maps are stored raw (depth in metres, label ids), as training computes them before
:mod:`orv_engine.occupancy.condition_images` turns them into the images of a checkpoint's
condition encoding; evaluation applies that same function, so any encoding works.

The default clip settings are the small runs' (``SMALL_CLIP`` = ``data.clip`` of
``configs/small/*.yaml``, a test keeps them equal): 17 real frames at 64x64 without a
placeholder frame (upstream ORV's layout: the last frame has no action, so 16 per-frame
actions), a new validation clip every 8 steps.

File layout (``np.savez_compressed``, no pickles): ``frames`` (N, T, H, W, 3) uint8,
``actions`` (N, F, 7) float32, ``states`` (N, R, 7) float32, ``frame_indices`` (N, R) int64,
``coarse_depth`` / ``fine_depth`` (N, T, H, W) float32, ``coarse_semantics`` /
``fine_semantics`` (N, T, H, W) int32, and ``metadata``: UTF-8 JSON (format, version, clip
config, dataset, split, renderer, per-clip episode id / instruction / camera / start).

Ship the CI clips once the dataset exists (8 val clips spread over the episodes, ~1 MB):

    python -m orv_engine.small.heldout outputs/small/data/orv_tabletop/1.0.0
"""

from __future__ import annotations

import argparse
import io
import json
import os
import zipfile
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Mapping, Sequence

import numpy as np

from orv_engine.data.clip_dataset import ClipDataset
from orv_engine.data.clips import Clip, ClipConfig, chunk_align_actions
from orv_engine.occupancy import clip_condition_maps, occupancy_from_episode, recorded_clip_maps
from orv_engine.occupancy.condition_maps import AUTO_ORDER, RENDERERS
from orv_engine.small import CONDITION_KINDS, SMALL_ORV_DIR
from orv_engine.training.config import DataConfig
from orv_engine.training.data import clip_config_of

FORMAT = "orv-small-heldout"
VERSION = 1
SMALL_PRESET = "sim"
SMALL_CLIP: dict = {"num_frames": 17, "placeholder_frame": False, "height": 64, "width": 64, "val_clip_interval": 8}
SOURCES = {"occupancy": "coarse", "episode": "fine"}  # conditions_source -> the record's field
SHIPPED_HELDOUT = SMALL_ORV_DIR / "heldout" / "clips.npz"
SHIPPED_MAX_BYTES = 1_500_000
# How the maps are made; a cache written by other code is made again. 2: fine maps kept to the
# occupancy's volume (1 showed the floor metres away).
MAPS_VERSION = 2
MAKE_DATA_HINT = ("orv-sim generate --appearance randomized --episodes 300 --val-episodes 60 --size 64 "
                  "--jpeg-quality 95 --seed 1000 --out outputs/small/data")


class HeldoutFileError(ValueError):
    """A held-out clips file that cannot be read or is not one; the message names the file."""


@dataclass
class HeldoutClip:
    """One held-out clip: ground truth, the inputs the pipeline takes, both kinds of maps.

    ``frames`` are all ``T`` frames of the clip (the small runs: 17 real frames; with a
    placeholder frame it is the last one); ``actions`` the ``F = 4k`` per-frame actions
    ``ORVPipeline`` takes (action ``t`` moves frame ``t`` to ``t + 1``; 16); ``coarse`` / ``fine``
    ``{"depth": (T, H, W) float32, "semantics": (T, H, W) int32}`` aligned with ``frames``.
    """

    episode_id: str
    instruction: str
    frames: np.ndarray
    actions: np.ndarray
    coarse: dict[str, np.ndarray]
    fine: dict[str, np.ndarray]
    states: np.ndarray
    frame_indices: np.ndarray
    camera: str
    config: ClipConfig = field(repr=False)

    @property
    def start(self) -> int:
        return int(self.frame_indices[0])

    @property
    def num_real_frames(self) -> int:
        return len(self.frame_indices)

    def maps(self, source: str) -> dict[str, np.ndarray]:
        """The raw maps of a training ``conditions_source``: "occupancy" (coarse) or "episode" (fine)."""
        if source not in SOURCES:
            raise ValueError(f"condition source must be one of {sorted(SOURCES)}, got {source!r}")
        return getattr(self, SOURCES[source])

    def to_clip(self, frames: np.ndarray | None = None, source: str | None = None, label: str | None = None) -> Clip:
        """A :class:`~orv_engine.data.clips.Clip` record (for the contact sheets): its frames
        (or ``frames``, e.g. a rollout), the maps of ``source`` as its conditions, ``label``
        prefixed to the instruction."""
        r = self.config.action_chunk
        actions, mask = chunk_align_actions(self.actions, self.config.num_latent_frames, r)
        frames = self.frames if frames is None else np.asarray(frames)
        instruction = self.instruction if label is None else f"{label}: {self.instruction}"
        return Clip(frames=frames, actions=actions, action_mask=mask, states=self.states,
                    frame_indices=self.frame_indices, instruction=instruction, episode_id=self.episode_id,
                    camera=self.camera, num_real_frames=min(self.num_real_frames, len(frames)),
                    conditions={} if source is None else dict(self.maps(source)))


def heldout_clip_config(preset: str = SMALL_PRESET, clip: Mapping | None = None, camera: str | None = None,
                        dataset_path: str | Path = "", dataset: str | None = None) -> ClipConfig:
    """The ClipConfig a training config's data section gives (checked the same way)."""
    data = DataConfig(path=str(dataset_path), preset=preset, clip=dict(SMALL_CLIP if clip is None else clip),
                      camera=camera, dataset=dataset)
    return clip_config_of(data)


class _HeldoutClips(ClipDataset):
    """The split's clips in file order, as :class:`HeldoutClip` records with both kinds of maps
    (only those whose (episode id, start) is in ``only``, when given)."""

    def __init__(self, *args, only: Collection[tuple[str, int]] | None = None, **kwargs):
        self.only = None if only is None else {(str(e), int(s)) for e, s in only}
        super().__init__(*args, **kwargs)

    def _episode_clips(self, episode) -> list[HeldoutClip]:
        clips = super()._episode_clips(episode)
        if self.only is not None:
            clips = [c for c in clips if (c.episode_id, c.start) in self.only]
        occupancy = occupancy_from_episode(episode) if clips else None  # one per episode, as training
        return [self._record(episode, clip, occupancy) for clip in clips]

    def _record(self, episode, clip: Clip, occupancy) -> HeldoutClip:
        r = self.clip_config.action_chunk
        if not clip.action_mask[r:].all():
            raise ValueError(f"clip {clip.episode_id}@{clip.start}: padded action rows; the clip settings give fewer "
                             "actions than generated frames")
        return HeldoutClip(
            episode_id=clip.episode_id, instruction=clip.instruction, frames=clip.frames,
            actions=np.ascontiguousarray(clip.actions[r:], dtype=np.float32),
            coarse=_raw_maps(clip_condition_maps(episode, clip, occupancy=occupancy)),
            fine=_raw_maps(recorded_clip_maps(episode, clip, occupancy.grid)),
            states=clip.states, frame_indices=np.asarray(clip.frame_indices, np.int64), camera=clip.camera,
            config=self.clip_config,
        )

    def _out(self, clip):
        return clip


def _raw_maps(maps: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {"depth": np.asarray(maps["depth"], np.float32), "semantics": np.asarray(maps["semantics"], np.int32)}


def extract_heldout_clips(dataset_path: str | Path, split: str = "val", max_clips: int | None = None, *,
                          preset: str = SMALL_PRESET, clip: Mapping | None = None, camera: str | None = None,
                          dataset: str | None = None, only: Collection[tuple[str, int]] | None = None,
                          ) -> list[HeldoutClip]:
    """The first ``max_clips`` clips of ``split`` (all when None), cut as training cuts them.

    ``preset`` / ``clip`` / ``camera`` / ``dataset`` are the training config's ``data`` keys of
    the same names (``clip`` defaults to ``SMALL_CLIP``); the ``split`` uses the validation clip
    interval unless it is "train". ``only``: keep just these (episode id, start) clips (the maps
    of the others are not rendered)."""
    config = heldout_clip_config(preset, clip, camera, dataset_path, dataset)
    clips = _HeldoutClips(dataset_path, config, dataset=dataset, split=split, shuffle=False, rank=0, world_size=1,
                          as_clips=True, only=only)
    out: list[HeldoutClip] = []
    if max_clips is not None and max_clips <= 0:
        return out
    for record in clips:
        out.append(record)
        if max_clips is not None and len(out) >= max_clips:
            break
    if not out:
        raise ValueError(f"{dataset_path}: split {split!r} has no clip of {config.num_frames} frames; "
                         + clips.report.format())
    return out


def auto_renderer() -> str:
    """The Occ2GS backend "auto" picks here (gsplat on CUDA, else numba, else torch)."""
    return next(name for name in AUTO_ORDER if RENDERERS[name].available())


# ---------------------------------------------------------------- the file


def save_heldout(path: str | Path, clips: list[HeldoutClip], *, info: Mapping | None = None) -> Path:
    """Write ``clips`` to one compressed ``.npz`` (atomically); ``info`` is kept in the metadata."""
    path = Path(path)
    if not clips:
        raise ValueError(f"{path}: no clips to save")
    config = clips[0].config
    shapes = {(c.frames.shape, c.actions.shape, c.coarse["depth"].shape, c.fine["depth"].shape) for c in clips}
    if len(shapes) > 1 or any(c.config != config for c in clips):
        raise ValueError(f"{path}: the clips differ in shape or clip settings; save one clip setting per file")
    arrays = {
        "frames": np.stack([c.frames for c in clips]).astype(np.uint8),
        "actions": np.stack([c.actions for c in clips]).astype(np.float32),
        "states": np.stack([c.states for c in clips]).astype(np.float32),
        "frame_indices": np.stack([c.frame_indices for c in clips]).astype(np.int64),
    }
    for name in SOURCES.values():
        for kind in CONDITION_KINDS:
            dtype = np.float32 if kind == "depth" else np.int32
            arrays[f"{name}_{kind}"] = np.stack([getattr(c, name)[kind] for c in clips]).astype(dtype)
    metadata = {
        "format": FORMAT, "version": VERSION, "clip_config": config.to_dict(),
        "info": dict(info or {}),
        "clips": [{"episode_id": c.episode_id, "instruction": c.instruction, "camera": c.camera, "start": c.start}
                  for c in clips],
    }
    arrays["metadata"] = np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buffer.getvalue())
    os.replace(tmp, path)
    return path


def read_metadata(path: str | Path) -> dict:
    """The JSON metadata of a held-out clips file (without reading the arrays)."""
    path = Path(path)
    with _open(path) as data:
        return _metadata(path, data)


def load_heldout(path: str | Path) -> list[HeldoutClip]:
    """Read a file :func:`save_heldout` wrote; missing or corrupt files raise naming the file."""
    path = Path(path)
    with _open(path) as data:
        metadata = _metadata(path, data)
        needed = ["frames", "actions", "states", "frame_indices"] + [
            f"{name}_{kind}" for name in SOURCES.values() for kind in CONDITION_KINDS]
        missing = [k for k in needed if k not in data.files]
        if missing:
            raise HeldoutFileError(f"{path}: not a complete held-out clips file, arrays missing: {missing}")
        try:
            arrays = {k: data[k] for k in needed}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
            raise HeldoutFileError(f"{path}: corrupt held-out clips file ({e})") from None
    try:
        config = ClipConfig(**metadata["clip_config"])
    except (TypeError, ValueError, KeyError) as e:
        raise HeldoutFileError(f"{path}: bad clip settings in its metadata ({e})") from None
    n = len(metadata["clips"])
    if any(len(a) != n for a in arrays.values()):
        raise HeldoutFileError(f"{path}: arrays do not hold the {n} clips its metadata lists")
    out = []
    for i, meta in enumerate(metadata["clips"]):
        out.append(HeldoutClip(
            episode_id=meta["episode_id"], instruction=meta["instruction"], frames=arrays["frames"][i],
            actions=arrays["actions"][i], states=arrays["states"][i], frame_indices=arrays["frame_indices"][i],
            coarse={k: arrays[f"coarse_{k}"][i] for k in CONDITION_KINDS},
            fine={k: arrays[f"fine_{k}"][i] for k in CONDITION_KINDS},
            camera=meta["camera"], config=config,
        ))
    return out


def _open(path: Path):
    if not path.is_file():
        raise FileNotFoundError(f"held-out clips file {path} does not exist (write one with "
                                "orv_engine.small.heldout.save_heldout / write_shipped_heldout, or run "
                                "python -m benchmarks.small_ablation, which caches the validation clips)")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as e:
        raise HeldoutFileError(f"{path}: not a readable .npz held-out clips file ({e})") from None


def _metadata(path: Path, data) -> dict:
    if "metadata" not in data.files:
        raise HeldoutFileError(f"{path}: no 'metadata' entry; not a held-out clips file")
    try:
        metadata = json.loads(data["metadata"].tobytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as e:
        raise HeldoutFileError(f"{path}: unreadable metadata ({e})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise HeldoutFileError(f"{path}: metadata is not of format {FORMAT!r}")
    if metadata.get("version") != VERSION:
        raise HeldoutFileError(f"{path}: held-out file version {metadata.get('version')!r}, this code reads {VERSION}")
    return metadata


# ---------------------------------------------------------------- the shipped clips


def pick_spread(keys: Sequence[tuple[str, int]], count: int) -> list[tuple[str, int]]:
    """``count`` of the (episode id, start) ``keys`` (in file order) spread over the episodes:
    evenly spaced episodes, and within the i-th chosen episode its clip ``i mod n`` (early and
    late phases alternate); more clips than episodes: round-robin over the episodes' clips."""
    episodes: OrderedDict[str, list] = OrderedDict()
    for key in keys:
        episodes.setdefault(key[0], []).append(tuple(key))
    groups = list(episodes.values())
    if count >= len(keys):
        return [tuple(k) for k in keys]
    if count <= len(groups):
        chosen = np.unique(np.linspace(0, len(groups) - 1, num=count).round().astype(int))
        return [groups[g][i % len(groups[g])] for i, g in enumerate(chosen)]
    picked, rank = [], 0
    while len(picked) < count:
        for group in groups:
            if rank < len(group) and len(picked) < count:
                picked.append(group[rank])
        rank += 1
    return picked


def write_shipped_heldout(dataset_path: str | Path, out_path: str | Path = SHIPPED_HELDOUT, count: int = 8, *,
                          split: str = "val", max_bytes: int = SHIPPED_MAX_BYTES, preset: str = SMALL_PRESET,
                          clip: Mapping | None = None, camera: str | None = None, dataset: str | None = None) -> Path:
    """Pick ``count`` clips of ``split`` spread over its episodes (:func:`pick_spread`; the
    maps are rendered for those alone) and write them for the CI test; refuses to leave a file
    over ``max_bytes``. The clip settings are :func:`extract_heldout_clips`'s."""
    config = heldout_clip_config(preset, clip, camera, dataset_path, dataset)
    plain = ClipDataset(dataset_path, config, dataset=dataset, split=split, shuffle=False, rank=0, world_size=1,
                        as_clips=True)
    picked = pick_spread([(c.episode_id, c.start) for c in plain], count)
    clips = extract_heldout_clips(dataset_path, split, preset=preset, clip=clip, camera=camera, dataset=dataset,
                                  only=picked)
    order = {key: i for i, key in enumerate(picked)}
    clips.sort(key=lambda c: order[(c.episode_id, c.start)])
    out = save_heldout(out_path, clips, info={"dataset": str(dataset_path), "split": split, "picked": "spread",
                                              "renderer": auto_renderer(), "maps_version": MAPS_VERSION})
    size = out.stat().st_size
    if size > max_bytes:
        out.unlink()
        raise ValueError(f"{out}: {len(clips)} clips take {size} bytes, over {max_bytes}; ship fewer (count=)")
    return out

def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="Write the held-out clips shipped for the small ORV's CI test.")
    parser.add_argument("dataset", help="the simulated RLDS dataset (outputs/small/data/orv_tabletop/1.0.0)")
    parser.add_argument("--out", default=str(SHIPPED_HELDOUT), help="the .npz to write (default: the shipped one)")
    parser.add_argument("--count", type=int, default=8, help="clips, spread over the episodes")
    parser.add_argument("--split", default="val")
    args = parser.parse_args(argv)
    path = write_shipped_heldout(args.dataset, args.out, args.count, split=args.split)
    print(f"{path}: {len(read_metadata(path)['clips'])} clips, {path.stat().st_size} bytes")


if __name__ == "__main__":
    main()

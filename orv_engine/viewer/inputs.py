"""What ``orv-data view`` shows, read from disk: an RLDS episode (with its occupancy store's
entry, or occupancy built from its depth and cameras), or one unit of an ``orv-augment`` run.
Every unreadable input is a :class:`ViewerError` naming the file. :mod:`.rerun_view` logs them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from orv_engine.data.episode import Episode
from orv_engine.data.errors import DatasetError
from orv_engine.data.rlds_reader import RLDSReader
from orv_engine.data.sharding import episode_key
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.from_episode import occupancy_from_episode
from orv_engine.occupancy.from_rgb.pipeline import rendered_maps
from orv_engine.occupancy.occupancy4d import Occupancy4D
from orv_engine.occupancy.store import OccupancyStore


class ViewerError(ValueError):
    """The view cannot be made as asked (a missing folder, an unknown episode or unit)."""


# -- episodes ----------------------------------------------------------------------------------
def read_episode(path, index: int, *, split: str = "train", dataset: str | None = None) -> Episode:
    """Episode ``index`` (0-based, in file order over the split's shards) with every camera the
    dataset has; a :class:`DatasetError` naming the folder or the index when there is none."""
    reader = RLDSReader(path, dataset=dataset, split=split)
    cameras = [k for k in reader._declared_shape if k in reader.schema.cameras]  # every RGB camera
    reader = RLDSReader(path, dataset=dataset, split=split, cameras=cameras, on_bad="raise")
    if not 0 <= index < reader.num_episodes:
        raise DatasetError(f"{reader.path}: no episode {index} in split {split!r} "
                           f"(it has {reader.num_episodes}: 0..{reader.num_episodes - 1})")
    lengths = list(reader.builder.info.splits[split].shard_lengths) or [reader.num_episodes]
    offset = 0
    for shard, length in enumerate(lengths):
        if index < offset + length:
            for episode in reader.iter_shard(shard, keep=lambda i, want=index - offset: i == want):
                return episode
            break
        offset += length
    raise DatasetError(f"{reader.path}: episode {index} of split {split!r} could not be read")


@dataclass
class StoreEpisode:
    """What an occupancy store holds for one episode (``OccupancyStore.read_episode``)."""

    occupancy: Occupancy4D
    camera: str
    intrinsics: np.ndarray  # (T, 3, 3) at image_size
    extrinsics: np.ndarray  # (T, 4, 4) camera-to-world
    image_size: tuple[int, int]
    rendered: dict[str, np.ndarray] | None = None  # {"depth", "semantics"}: (T, H, W)


def read_store_episode(store_path, episode: Episode, render: bool = True) -> StoreEpisode:
    root = Path(store_path).expanduser()
    if not (root / "store.json").is_file():
        raise ViewerError(f"--occupancy {root}: not an occupancy store (no store.json); "
                          "orv-occupancy writes one")
    key = episode_key(Path(episode.meta.source_file).name, episode.meta.index_in_file)
    try:
        result = OccupancyStore(root).read_episode(key, include_flagged=True)
    except OccupancyInputError as err:
        raise ViewerError(str(err)) from None
    rendered = None
    if render and not result.occupancy.is_empty:
        h, w = result.image_size
        rendered = rendered_maps(result, h, w)
    return StoreEpisode(result.occupancy, result.camera, np.asarray(result.cameras.intrinsics),
                        np.asarray(result.cameras.extrinsics), tuple(result.image_size), rendered)


def episode_occupancy(episode: Episode) -> Occupancy4D | None:
    """The episode's own occupancy where it records depth and cameras (simulation), else None."""
    if episode.depth is None or episode.intrinsics is None or episode.extrinsics is None:
        return None
    return occupancy_from_episode(episode)



# -- a run's unit ------------------------------------------------------------------------------
def read_unit(run_dir, unit_id: str) -> dict:
    """A unit's rollout (``clip.npz``, ``rollout.json``) and its source (``source.npz``)."""
    run = Path(run_dir).expanduser()
    if not run.is_dir():
        raise ViewerError(f"run folder not found: {run}")
    folder = run / "rollouts" / unit_id
    if not folder.is_dir():
        units = sorted(p.name for p in (run / "rollouts").glob("*") if p.is_dir() and not p.name.startswith("."))
        shown = ", ".join(units[:8]) + (f", ... ({len(units)} in all)" if len(units) > 8 else "")
        raise ViewerError(f"{run}: no unit {unit_id!r} in {run / 'rollouts'} "
                          f"({'it has ' + shown if units else 'it holds no unit'})")
    try:
        record = json.loads((folder / "rollout.json").read_text())
        with np.load(folder / "clip.npz", allow_pickle=False) as data:
            clip = {k: data[k] for k in data.files}
    except (OSError, ValueError) as err:
        raise ViewerError(f"{folder}: unreadable unit files (rollout.json, clip.npz): {err}") from None
    source, source_meta = {}, {}
    source_dir = run / "sources" / str(record.get("source_key", ""))
    if (source_dir / "source.npz").is_file():
        try:
            with np.load(source_dir / "source.npz", allow_pickle=False) as data:
                source = {k: data[k] for k in data.files}
            source_meta = json.loads((source_dir / "source.json").read_text())
        except (OSError, ValueError) as err:
            raise ViewerError(f"{source_dir}: unreadable source files (source.npz, source.json): {err}") from None
    return {"record": record, "clip": clip, "source": source, "source_meta": source_meta, "folder": folder}

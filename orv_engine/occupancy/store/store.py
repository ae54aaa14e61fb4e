"""The occupancy store: a dataset's 4D occupancy, one folder per episode, beside the dataset.

Layout (``orv-occupancy-store/1``)::

    STORE/store.json                          format, the job's config (a store belongs to one config)
    STORE/label_set.json                      the dataset's label set (occupancy.labels.LabelSet)
    STORE/manifest/shard-00000-of-00001.json  per episode key: status, reason, objects, timings
    STORE/episodes/KEY/occupancy.npz          Occupancy4D (occupancy.storage format)
    STORE/episodes/KEY/camera.npz             intrinsics (T,3,3), extrinsics (T,4,4), image_size (H, W)
    STORE/episodes/KEY/meta.json              episode id, camera, stage sources, consistency, flagged
    STORE/report/index.html                   what ``orv-occupancy report`` wrote

Keys are ``orv_engine.data.sharding.episode_key`` (the shard file and index), the same keys
``orv-augment`` gives its episodes, so a run finds an episode's occupancy by key. Every file
is written atomically and ``meta.json`` last; the manifest records an episode as done only
after its files exist, and a reader checks the files, not the manifest alone: a deleted or
truncated episode folder is redone on resume and reported by name when read. Paths inside the
store are relative, so a copied or moved store still reads.
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import numpy as np

from orv_engine.atomic_files import atomic_write_bytes, atomic_write_text, read_manifest_json
from orv_engine.occupancy.consistency import ConsistencyScore
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.from_rgb.camera import EpisodeCamera
from orv_engine.occupancy.from_rgb.pipeline import EpisodeOccupancy
from orv_engine.occupancy.labels import LabelSet
from orv_engine.occupancy.storage import load_occupancy, save_occupancy

STORE_FORMAT = "orv-occupancy-store/1"
MANIFEST_FORMAT = "orv-occupancy-manifest/1"
# episode states in a shard manifest
LISTED, DONE, FLAGGED, SKIPPED = "listed", "done", "flagged", "skipped"
EPISODE_FILES = ("occupancy.npz", "camera.npz", "meta.json")


class StoreManifest:
    """One shard's record of its episodes; every change rewrites the file atomically."""

    def __init__(self, root: Path, shard: tuple[int, int] = (0, 1)):
        self.path = Path(root) / "manifest" / f"shard-{shard[0]:05d}-of-{shard[1]:05d}.json"
        self.data = {"format": MANIFEST_FORMAT, "shard": list(shard), "episodes": {}, "listing_done": False}
        if self.path.exists():
            self.data = read_manifest(self.path)

    @property
    def episodes(self) -> dict[str, dict]:
        return self.data["episodes"]

    def update(self, key: str, **fields) -> None:
        self.episodes.setdefault(key, {}).update(fields)
        self.save()

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True))


def read_manifest(path: Path) -> dict:
    return read_manifest_json(path, MANIFEST_FORMAT, "orv-occupancy", OccupancyInputError)


class OccupancyStore:
    def __init__(self, root):
        self.root = Path(root)

    # -- layout ---------------------------------------------------------------------------
    @property
    def label_set_path(self) -> Path:
        return self.root / "label_set.json"

    def episode_dir(self, key: str) -> Path:
        return self.root / "episodes" / key

    def manifests(self) -> list[dict]:
        return [read_manifest(p) for p in sorted((self.root / "manifest").glob("shard-*.json"))]

    def records(self) -> dict[str, dict]:
        """Every shard's episode records, by key."""
        out: dict[str, dict] = {}
        for manifest in self.manifests():
            out.update(manifest["episodes"])
        return out

    def label_set(self) -> LabelSet | None:
        return LabelSet.load(self.label_set_path) if self.label_set_path.is_file() else None

    # -- episodes -------------------------------------------------------------------------
    def has_episode(self, key: str) -> bool:
        folder = self.episode_dir(key)
        return all((folder / name).is_file() for name in EPISODE_FILES)

    def write_episode(self, key: str, episode_id: str, result: EpisodeOccupancy, flagged: bool = False) -> Path:
        folder = self.episode_dir(key)
        (folder / "meta.json").unlink(missing_ok=True)  # an entry is complete only once meta.json is back
        buffer = io.BytesIO()
        tmp = folder / ".occupancy.tmp.npz"
        save_occupancy(result.occupancy, tmp)  # numpy writes a path; the rename below makes it atomic
        atomic_write_bytes(folder / "occupancy.npz", tmp.read_bytes())
        tmp.unlink()
        np.savez(buffer, intrinsics=result.cameras.intrinsics, extrinsics=result.cameras.extrinsics,
                 image_size=np.asarray(result.image_size, dtype=np.int64))
        atomic_write_bytes(folder / "camera.npz", buffer.getvalue())
        consistency = None if result.consistency is None else {
            "score": result.consistency.score, "pair_errors": result.consistency.pair_errors.tolist()}
        meta = {"episode_id": episode_id, "camera": result.camera, "camera_source": result.cameras.source,
                "sources": result.sources, "metric": result.metric, "labelled_fraction": result.labelled_fraction,
                "num_frames": result.occupancy.num_frames, "consistency": consistency, "flagged": flagged}
        atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1))
        return folder

    def read_episode(self, key: str, include_flagged: bool = False) -> EpisodeOccupancy:
        """An episode's occupancy and camera; :class:`OccupancyInputError` naming the file when
        it is missing or unreadable, or when the episode was flagged (unless ``include_flagged``)."""
        folder = self.episode_dir(key)
        missing = [name for name in EPISODE_FILES if not (folder / name).is_file()]
        if missing:
            raise OccupancyInputError(f"{folder}: no occupancy for episode {key} ({', '.join(missing)} missing); "
                                      f"run orv-occupancy on the dataset (it redoes missing episodes)")
        try:
            meta = json.loads((folder / "meta.json").read_text())
            occupancy = load_occupancy(folder / "occupancy.npz")
            with np.load(folder / "camera.npz", allow_pickle=False) as data:
                cameras = EpisodeCamera(data["intrinsics"], data["extrinsics"], meta["camera_source"])
                image_size = tuple(int(v) for v in data["image_size"])
        except OccupancyInputError:
            raise
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
            raise OccupancyInputError(f"{folder}: unreadable occupancy of episode {key} "
                                      f"({type(err).__name__}: {err}); delete the folder and rerun orv-occupancy") from None
        if meta.get("flagged") and not include_flagged:
            score = (meta.get("consistency") or {}).get("score")
            raise OccupancyInputError(f"episode {key}: flagged by the consistency check (score {score}); "
                                      "excluded (consistency.exclude_flagged)")
        consistency = None
        if meta.get("consistency"):
            consistency = ConsistencyScore(np.asarray(meta["consistency"]["pair_errors"]), meta["consistency"]["score"])
        return EpisodeOccupancy(occupancy, meta["camera"], cameras, image_size, meta["sources"], meta["metric"],
                                meta["labelled_fraction"], consistency)

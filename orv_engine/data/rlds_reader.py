"""Read RLDS datasets from a local TFDS directory into standardized :class:`Episode` records.

Reads one tfrecord shard at a time (tfds' ``split[i shard]`` syntax), so that errors name
the file, and work splits across DataLoader workers and ranks by shard or by episode.
Images are not decoded by tfds (``SkipDecoding``): only the cameras asked for are decoded,
here, with Pillow, and only for the episodes a worker owns.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image

from orv_engine import import_order
from orv_engine.data.episode import Episode, EpisodeMeta
from orv_engine.data.errors import DatasetError, SkipReport
from orv_engine.data.schemas import DatasetSchema, schema_for


def resolve_dataset_dir(path: str | Path) -> Path:
    """Accept a version folder (holding dataset_info.json) or its parent (newest version)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DatasetError(f"dataset directory not found: {path}")
    if (path / "dataset_info.json").is_file():
        return path
    versions = sorted(
        (p for p in path.iterdir() if (p / "dataset_info.json").is_file()),
        key=lambda p: tuple(int(x) if x.isdigit() else 0 for x in p.name.split(".")),
    )
    if versions:
        return versions[-1]
    raise DatasetError(
        f"{path} is not a TFDS dataset folder: no dataset_info.json in it or in a version "
        f"subfolder (expected e.g. {path}/1.0.0/dataset_info.json)"
    )


def _feature_paths(features, prefix: str = "") -> set[str]:
    """All nested feature paths of a tfds FeaturesDict, e.g. 'steps/observation/state'."""
    paths = set()
    inner = getattr(features, "feature", None)  # tfds Dataset feature -> its step features
    if inner is not None and not hasattr(features, "keys"):
        return _feature_paths(inner, prefix)
    if hasattr(features, "keys"):
        for key in features.keys():
            path = f"{prefix}{key}"
            paths.add(path)
            paths |= _feature_paths(features[key], path + "/")
    return paths


def decode_single_channel(data: bytes) -> np.ndarray:
    """A one-channel PNG (8- or 16-bit) -> (H, W) array of its stored integer type."""
    with Image.open(io.BytesIO(data)) as img:
        array = np.asarray(img)
    return array[..., 0] if array.ndim == 3 else array


def decode_image(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))


class RLDSReader:
    """Iterate standardized episodes of one split of a local RLDS dataset.

    Args:
        path: the TFDS folder (``.../bridge_dataset/1.0.0`` or ``.../bridge_dataset``).
        dataset: schema kind ("bridge", "droid", "rt1"); default: from the tfds name.
        split: "train", "val", ...
        cameras: image keys to decode; default: the schema's main camera.
        on_bad: "skip" (count bad episodes in ``report``) or "raise".
    """

    def __init__(
        self,
        path: str | Path,
        *,
        dataset: str | None = None,
        split: str = "train",
        cameras: Sequence[str] | None = None,
        on_bad: str = "skip",
        report: SkipReport | None = None,
    ):
        if on_bad not in ("skip", "raise"):
            raise ValueError(f"on_bad must be 'skip' or 'raise', not {on_bad!r}")
        self.path = resolve_dataset_dir(path)
        self.split = split
        self.on_bad = on_bad
        self.report = report if report is not None else SkipReport()
        self._tfds = import_order.tensorflow_datasets()
        self._tf = import_order.tensorflow()
        try:
            self.builder = self._tfds.builder_from_directory(str(self.path))
        except Exception as err:  # tfds raises several types for a broken dataset_info.json
            raise DatasetError(f"cannot open TFDS dataset at {self.path}: {err}") from err
        try:
            self.schema: DatasetSchema = schema_for(dataset or self.builder.info.name)
        except KeyError as err:
            raise DatasetError(f"{self.path}: {err.args[0]} (pass dataset=...)") from None
        self._check_features()
        splits = self.builder.info.splits
        if split not in splits:
            raise DatasetError(f"{self.path}: no split {split!r}; has {', '.join(splits.keys())}")
        self.files: list[str] = list(splits[split].filenames)
        self.num_episodes: int = int(splits[split].num_examples)
        self.cameras = tuple(cameras) if cameras else self.schema.default_cameras
        rgb = [k for k in self._image_keys if k in self.schema.cameras]
        unknown = [c for c in self.cameras if c not in rgb]
        if unknown:
            raise DatasetError(
                f"{self.path}: camera(s) {', '.join(unknown)} not in the dataset; "
                f"it has {', '.join(rgb) or 'no camera images'}"
            )

    # -- schema checks -------------------------------------------------------------
    def _check_features(self) -> None:
        features = self.builder.info.features
        paths = _feature_paths(features)
        missing = [p for p in self.schema.required_fields if p not in paths]
        if missing:
            raise DatasetError(
                f"{self.path}: missing feature(s) {', '.join(missing)} required by the "
                f"{self.schema.kind!r} standardization"
            )
        observation = features["steps"].feature["observation"]
        self._image_keys = [k for k in observation.keys() if type(observation[k]).__name__ == "Image"]
        self._declared_shape = {k: tuple(observation[k].shape) for k in self._image_keys}

    # -- iteration -----------------------------------------------------------------
    def __iter__(self) -> Iterator[Episode]:
        for shard in range(len(self.files)):
            yield from self.iter_shard(shard)

    def iter_shard(
        self, shard: int, keep: Callable[[int], bool] | None = None
    ) -> Iterator[Episode]:
        """Episodes of one shard file; ``keep(index_in_file)`` selects which to decode."""
        tf = self._tf
        file = self.files[shard]
        decoders = {"steps": {"observation": {k: self._tfds.decode.SkipDecoding() for k in self._image_keys}}}
        try:
            ds = self.builder.as_dataset(split=f"{self.split}[{shard}shard]", decoders=decoders)
        except Exception as err:
            raise DatasetError(f"{self.path / file}: cannot open shard: {err}") from err
        iterator = iter(ds)
        index = 0
        while True:
            try:
                raw = next(iterator)
            except StopIteration:
                return
            except (tf.errors.OpError, ValueError) as err:
                where = f"{self.path / file} after episode {index}"
                if self.on_bad == "raise":
                    raise DatasetError(f"corrupt or truncated tfrecord {where}: {err}") from err
                self.report.add("corrupt or truncated tfrecord (rest of the file skipped)", where)
                return
            if keep is None or keep(index):
                episode = self._to_episode(raw, file, index)
                if episode is not None:
                    yield episode
            index += 1

    def _bad(self, reason: str, where: str) -> None:
        if self.on_bad == "raise":
            raise DatasetError(f"{where}: {reason}")
        self.report.add(reason, where)

    def _to_episode(self, raw, file: str, index: int) -> Episode | None:
        tf = self._tf
        episode_id = f"{self.builder.info.name}/{self.split}/{file}#{index}"
        where = f"episode {episode_id}"
        steps = raw["steps"]
        stacked = steps.batch(1 << 20).get_single_element() if steps.cardinality() != 0 else None
        if stacked is None:
            self._bad("empty episode (no steps)", where)
            return None
        steps_np = tf.nest.map_structure(lambda t: t.numpy(), stacked)
        try:
            states, actions, instruction = self.schema.standardize(steps_np)
        except (KeyError, ValueError, IndexError) as err:
            self._bad(f"cannot standardize: {err}", where)
            return None
        states = np.asarray(states, dtype=np.float32)
        actions = np.asarray(actions, dtype=np.float32)
        num_steps = len(actions)
        for name, arr in (("state", states), ("action", actions)):
            if arr.shape != (num_steps, 7):
                self._bad(f"{name} has shape {arr.shape}, expected ({num_steps}, 7)", where)
                return None
            bad = ~np.isfinite(arr)
            if bad.any():
                step, dim = map(int, np.argwhere(bad)[0])
                self._bad(f"non-finite {name} (NaN/inf)", f"{where}, step {step}, dim {dim}")
                return None

        frames: dict[str, np.ndarray] = {}
        absent: list[str] = []
        for camera in self.cameras:
            video = self._decode_camera(steps_np["observation"][camera], camera, where)
            if video is None:
                return None
            if not video.any():  # all-zero frames: the camera did not record this episode
                absent.append(camera)
            else:
                frames[camera] = video
        if not frames:
            self._bad("none of the requested cameras recorded this episode", where)
            return None

        geometry = {}
        if self.schema.has_geometry:
            geometry = self._geometry(steps_np, frames, where)
            if geometry is None:
                return None

        extra = {}
        if "episode_metadata" in raw:
            extra = {
                k: (v.numpy().decode() if v.dtype == tf.string else v.numpy().item())
                for k, v in raw["episode_metadata"].items()
            }
        meta = EpisodeMeta(
            dataset=self.schema.kind,
            episode_id=episode_id,
            source_file=str(self.path / file),
            index_in_file=index,
            split=self.split,
            absent_cameras=tuple(absent),
            extra=extra,
        )
        labels = json.loads(extra["semantic_names"]) if "semantic_names" in extra else None
        return Episode(frames=frames, actions=actions, states=states, instruction=instruction, meta=meta,
                       labels=labels, **geometry)

    def _geometry(self, steps_np, frames: dict, where: str) -> dict | None:
        """Depth (metres), segmentation and cameras of each decoded camera ``image_k``."""
        observation = steps_np["observation"]
        out = {"depth": {}, "segmentation": {}, "intrinsics": {}, "extrinsics": {}}
        for camera, video in frames.items():
            k = camera.split("_")[-1]
            keys = (f"depth_{k}", f"segmentation_{k}", f"camera_intrinsics_{k}", f"camera_extrinsics_{k}")
            missing = [key for key in keys if key not in observation]
            if missing:
                self._bad(f"missing geometry field(s) {', '.join(missing)}", where)
                return None
            maps = {}
            for key in keys[:2]:
                try:
                    maps[key] = np.stack([decode_single_channel(b) for b in observation[key]])
                except Exception as err:  # Pillow raises several types for broken PNG data
                    self._bad(f"undecodable {key}", f"{where}: {err}")
                    return None
                if maps[key].shape != video.shape[:3]:
                    self._bad(f"{key} of wrong shape", f"{where}: {maps[key].shape} vs frames {video.shape[:3]}")
                    return None
            out["depth"][camera] = maps[keys[0]].astype(np.float32) / 1000.0  # stored in millimetres
            out["segmentation"][camera] = maps[keys[1]].astype(np.int32)
            out["intrinsics"][camera] = np.asarray(observation[keys[2]], np.float32)
            out["extrinsics"][camera] = np.asarray(observation[keys[3]], np.float32)
        return out

    def _decode_camera(self, encoded: np.ndarray, camera: str, where: str) -> np.ndarray | None:
        declared = self._declared_shape[camera]
        images = []
        for step, data in enumerate(encoded):
            try:
                image = decode_image(data)
            except Exception as err:  # Pillow raises several types for broken JPEG/PNG data
                self._bad(f"undecodable {camera} image", f"{where}, step {step}: {err}")
                return None
            expected = tuple(d if d is not None else s for d, s in zip(declared, image.shape))
            reference = images[0].shape if images else expected
            if image.shape != expected or image.shape != reference:
                self._bad(
                    f"{camera} image of wrong shape",
                    f"{where}, step {step}: {image.shape}, expected {reference}",
                )
                return None
            images.append(image)
        return np.stack(images)

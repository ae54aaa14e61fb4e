"""Read a local Bridge-schema RLDS dataset (BridgeV2 or an export) as raw numpy episodes.

Images stay encoded (tfds ``SkipDecoding``): statistics need only states and actions, and
a physical merge copies the JPEG bytes unchanged when the image sizes agree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from orv_engine import import_order
from orv_engine.data.rlds_reader import resolve_dataset_dir
from vla_finetune.clip_record import ExportError

REQUIRED = ("steps/observation/state", "steps/action", "steps/language_instruction", "steps/observation/image_0")


class RLDSSource:
    """One local TFDS folder (``.../name/version`` or ``.../name``), Bridge step schema."""

    def __init__(self, path: str | Path):
        try:
            self.path = resolve_dataset_dir(path).resolve()
        except ValueError as err:
            raise ExportError(str(err)) from None
        self._tf = import_order.tensorflow()
        self._tfds = import_order.tensorflow_datasets()
        try:
            self.builder = self._tfds.builder_from_directory(str(self.path))
        except Exception as err:  # tfds raises several types for a broken folder
            raise ExportError(f"cannot open TFDS dataset at {self.path}: {err}") from err
        steps = self.builder.info.features["steps"].feature
        observation = steps["observation"]
        missing = [p for p in REQUIRED if p.split("/")[-1] not in (observation if "/observation/" in p else steps).keys()]
        if missing:
            raise ExportError(f"{self.path}: not a Bridge-schema RLDS dataset, missing {', '.join(missing)}")
        self.image_keys = [k for k in observation.keys() if type(observation[k]).__name__ == "Image"]
        self.image_size = tuple(observation["image_0"].shape[:2])

    @property
    def name(self) -> str:
        return self.builder.info.name

    @property
    def splits(self) -> list[str]:
        return list(self.builder.info.splits.keys())

    def num_episodes(self, split: str | None = None) -> int:
        splits = self.builder.info.splits
        return sum(int(splits[s].num_examples) for s in ([split] if split else self.splits))

    def episodes(self, splits: Sequence[str] | None = None, *, steps_only: bool = False) -> Iterator[tuple[str, dict]]:
        """``(split, episode)`` with every field as numpy (images as encoded bytes).

        ``steps_only``: only ``state`` and ``action`` of the steps (cheaper).
        """
        tf = self._tf
        decoders = {"steps": {"observation": {k: self._tfds.decode.SkipDecoding() for k in self.image_keys}}}
        for split in splits or self.splits:
            ds = self.builder.as_dataset(split=split, decoders=decoders, shuffle_files=False)
            if steps_only:
                ds = ds.map(lambda ep: {"steps": ep["steps"].map(
                    lambda s: {"observation": {"state": s["observation"]["state"]}, "action": s["action"]})})
            ds = ds.map(lambda ep: {**ep, "steps": ep["steps"].batch(1 << 20).get_single_element()})
            for episode in ds.as_numpy_iterator():
                yield split, episode

    def trajectories(self, splits: Sequence[str] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(states, actions)`` float32 ``(T, 7)`` per episode."""
        for _, episode in self.episodes(splits, steps_only=True):
            steps = episode["steps"]
            yield (np.asarray(steps["observation"]["state"], np.float32), np.asarray(steps["action"], np.float32))

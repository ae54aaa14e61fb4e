"""Action/proprio normalisation statistics, as Octo and OpenVLA compute and load them.

Both frameworks compute statistics on the *standardized* trajectories (after their Bridge
transform: relabelled actions, binarized gripper, dropped steps; see
:mod:`vla_finetune.bridge_transforms`) and save one JSON per dataset::

    {"action":  {"mean", "std", "max", "min", <quantiles>},   # lists of 7 floats
     "proprio": {... same keys ...},                         # 7 (Octo) or 8 (OpenVLA) floats
     "num_transitions": int, "num_trajectories": int}

Quantile key names differ: Octo writes ``p01``/``p99``, OpenVLA ``q01``/``q99``. Each file
written here carries both names (same values), so one file loads in either framework for
the keys it reads; the proprio width still differs, hence one file per framework.
``make_dataset_from_rlds(..., dataset_statistics=<path or dict>)`` of both frameworks
takes such a file instead of computing its own, which is how a mixture's datasets share
the statistics of their union.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable

import numpy as np

from vla_finetune.bridge_transforms import FRAMEWORKS, bridge_transform


def summarize(values: np.ndarray) -> dict[str, list[float]]:
    values = np.asarray(values, np.float64)
    q01 = np.quantile(values, 0.01, axis=0).tolist()
    q99 = np.quantile(values, 0.99, axis=0).tolist()
    return {
        "mean": values.mean(0).tolist(),
        "std": values.std(0).tolist(),
        "max": values.max(0).tolist(),
        "min": values.min(0).tolist(),
        "q01": q01, "q99": q99,
        "p01": q01, "p99": q99,
    }


class StatisticsAccumulator:
    """Collects standardized transitions of trajectories (from one or several datasets)."""

    def __init__(self, framework: str = "openvla"):
        if framework not in FRAMEWORKS:
            raise ValueError(f"framework must be one of {FRAMEWORKS}, not {framework!r}")
        self.framework = framework
        self._actions: list[np.ndarray] = []
        self._proprio: list[np.ndarray] = []
        self.num_trajectories = 0
        self.skipped_short = 0

    def add(self, states: np.ndarray, actions: np.ndarray) -> None:
        proprio, relabelled, _ = bridge_transform(states, actions, self.framework)
        if len(relabelled) == 0:
            # OpenVLA/Octo yield no transition for it; they still count the trajectory.
            self.skipped_short += 1
        self._actions.append(relabelled)
        self._proprio.append(proprio)
        self.num_trajectories += 1

    def add_all(self, trajectories: Iterable[tuple[np.ndarray, np.ndarray]]) -> "StatisticsAccumulator":
        for states, actions in trajectories:
            self.add(states, actions)
        return self

    def result(self) -> dict:
        if not self._actions or sum(len(a) for a in self._actions) == 0:
            raise ValueError("no transitions to compute statistics from")
        actions = np.concatenate(self._actions)
        proprio = np.concatenate(self._proprio)
        return {
            "action": summarize(actions),
            "proprio": summarize(proprio),
            "num_transitions": int(len(actions)),
            "num_trajectories": int(self.num_trajectories),
        }


def dataset_statistics(sources: Iterable, framework: str = "openvla") -> dict:
    """Statistics over the union of ``sources`` (:class:`RLDSSource` or ``(states, actions)`` iterables)."""
    acc = StatisticsAccumulator(framework)
    for source in sources:
        acc.add_all(source.trajectories() if hasattr(source, "trajectories") else source)
    return acc.result()


def write_json(path: str | Path, data) -> Path:
    """Atomic JSON write (temp file + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

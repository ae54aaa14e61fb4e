"""Action normalisation with a mixture's statistics (OpenVLA's ``BOUNDS_Q99`` by default).

The statistics are the JSON written by :func:`vla_finetune.mixture.write_mixture`
(``dataset_statistics_openvla.json``: ``{"action": {"q01", "q99", "mean", "std", ...}}``)
or OpenVLA's run-folder format ``{dataset name: statistics}``. The six arm dimensions are
mapped to [-1, 1] (``bounds_q99``: ``2 (a - q01) / (q99 - q01) - 1`` clipped, as OpenVLA and
SpatialVLA; ``normal``: ``(a - mean) / std``); the gripper (0/1 after the Bridge transform)
is left as is. A policy stores the same statistics and un-normalises its predictions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np

MODES = ("bounds_q99", "normal")
ACTION_DIM = 7
ARM_DIMS = 6


class StatisticsError(ValueError):
    """Missing or malformed normalisation statistics."""


def read_statistics(source: str | Path | Mapping, dataset: str | None = None) -> dict:
    """The ``{"action": {...}}`` statistics of a file or dict (run-folder format accepted)."""
    where = "statistics"
    if not isinstance(source, Mapping):
        path = Path(source).expanduser()
        where = str(path)
        if not path.is_file():
            raise StatisticsError(f"statistics file {path} not found (write it with `orv-export merge` or "
                                  "vla_finetune.statistics.write_json)")
        try:
            source = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise StatisticsError(f"{path}: not valid JSON: {err}") from None
    if "action" not in source:
        nested = {k: v for k, v in source.items() if isinstance(v, Mapping) and "action" in v}
        if dataset is not None and dataset in nested:
            source = nested[dataset]
        elif len(nested) >= 1 and dataset is None:
            source = next(iter(nested.values()))
        else:
            raise StatisticsError(f"{where}: no 'action' statistics (keys: {', '.join(map(str, source)) or 'none'})")
    return dict(source)


class ActionNormalizer:
    """Normalise / un-normalise ``(..., 7)`` Bridge actions with fixed statistics."""

    def __init__(self, statistics: str | Path | Mapping, mode: str = "bounds_q99", dataset: str | None = None):
        if mode not in MODES:
            raise StatisticsError(f"normalisation mode must be one of {MODES}, not {mode!r}")
        self.statistics = read_statistics(statistics, dataset)
        self.mode = mode
        action = self.statistics["action"]
        keys = ("q01", "q99") if mode == "bounds_q99" else ("mean", "std")
        missing = [k for k in keys if k not in action]
        if missing:
            raise StatisticsError(f"action statistics lack {', '.join(missing)} (needed by mode {mode!r})")
        for k in keys:
            if len(action[k]) != ACTION_DIM:
                raise StatisticsError(f"action statistics '{k}' has {len(action[k])} values, expected {ACTION_DIM}")
        a, b = (np.asarray(action[k], np.float64)[:ARM_DIMS] for k in keys)
        if mode == "bounds_q99":
            self.offset, self.scale = (a + b) / 2.0, np.maximum((b - a) / 2.0, 1e-8)
        else:
            self.offset, self.scale = a, np.maximum(b, 1e-8)

    def _check(self, actions: np.ndarray) -> np.ndarray:
        actions = np.asarray(actions)
        if actions.shape[-1] != ACTION_DIM:
            raise ValueError(f"actions must be {ACTION_DIM}-d [dx, dy, dz, droll, dpitch, dyaw, gripper], "
                             f"got shape {actions.shape}")
        return actions

    def normalize(self, actions: np.ndarray) -> np.ndarray:
        actions = self._check(actions).astype(np.float32, copy=True)
        arm = (actions[..., :ARM_DIMS] - self.offset) / self.scale
        if self.mode == "bounds_q99":
            arm = np.clip(arm, -1.0, 1.0)
        actions[..., :ARM_DIMS] = arm
        return actions

    def unnormalize(self, actions: np.ndarray) -> np.ndarray:
        actions = self._check(actions).astype(np.float32, copy=True)
        arm = actions[..., :ARM_DIMS]
        if self.mode == "bounds_q99":
            arm = np.clip(arm, -1.0, 1.0)
        actions[..., :ARM_DIMS] = arm * self.scale + self.offset
        actions[..., ARM_DIMS] = np.clip(actions[..., ARM_DIMS], 0.0, 1.0)
        return actions

"""The run manifest: which state each work unit is in, rewritten atomically on every change.

Why one JSON file per shard, rewritten whole: a rename is the one atomic file operation
every filesystem (local, NFS, Lustre) gives, so after a SIGKILL at any moment the manifest
is either the old or the new version, never a torn one; shards run by hand
(``--shard i/n``, possibly on other machines) each own their file, so no locking is needed.
A unit's outputs are written (atomically) *before* the manifest records its new state, so a
kill between the two only redoes that unit into the same deterministic paths: nothing is
lost and nothing is duplicated.

Layout: ``RUN/manifest/shard-00000-of-00001.json``, a unit's ``"stage"`` field holding its
state (the constants below; each per-unit stage of :mod:`augment.runner` moves a unit one state
on, ``augment.runner.STAGE_STATES``)::

    {"format": "orv-augment-manifest/1", "shard": [0, 1],
     "episodes": {KEY: {"episode_id", "status": "ready" | "skipped", "reason", "steps"}},
     "units":    {UNIT: {"episode": KEY, "variant", "seed", "prompt",
                         "stage": "planned" | "first_frame" | "rollout" | "scored" | "failed",
                         "error", "seconds": {state: s}}}}

and ``RUN/manifest/run.json`` for the run-wide stages (filter, export, merge) and timings.
"""

from __future__ import annotations

import json
from pathlib import Path

from orv_engine.atomic_files import atomic_write_text, read_manifest_json

FORMAT = "orv-augment-manifest/1"
# unit states, in order (the strings are the file format); FAILED, from any of them, is terminal
PLANNED, PAINTED, ROLLED_OUT, SCORED, FAILED = "planned", "first_frame", "rollout", "scored", "failed"


class Manifest:
    """One shard's manifest; every mutating call writes the file before returning."""

    def __init__(self, run_dir, shard: tuple[int, int] = (0, 1)):
        self.run_dir = Path(run_dir)
        self.shard = tuple(shard)
        self.path = self.run_dir / "manifest" / f"shard-{shard[0]:05d}-of-{shard[1]:05d}.json"
        self.data = {"format": FORMAT, "shard": list(shard), "episodes": {}, "units": {}}
        if self.path.exists():
            self.data = self._read(self.path)

    @staticmethod
    def _read(path: Path) -> dict:
        return read_manifest_json(path, FORMAT, "orv-augment")

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True))

    # -- episodes ----------------------------------------------------------------------
    @property
    def episodes(self) -> dict:
        return self.data["episodes"]

    @property
    def units(self) -> dict:
        return self.data["units"]

    def add_episode(self, key: str, record: dict, units: dict[str, dict]) -> None:
        """Record a prepared (or skipped) episode together with its planned units, in one write."""
        self.episodes[key] = record
        for unit_id, unit in units.items():
            self.units.setdefault(unit_id, {**unit, "episode": key, "stage": PLANNED, "error": None, "seconds": {}})
        self.save()

    def set_state(self, unit_id: str, state: str, seconds: float | None = None, error: str | None = None) -> None:
        unit = self.units[unit_id]
        previous = unit["stage"]
        unit["stage"] = state
        unit["error"] = error
        if state == FAILED:
            unit["failed_from"] = previous  # where --retry-failed puts it back
        if seconds is not None:
            unit["seconds"][state if state != FAILED else f"failed_after_{previous}"] = round(seconds, 3)
        self.save()

    def retry_failed(self) -> list[str]:
        """Put every failed unit back in the state it failed from (e.g. after a GPU out-of-memory)."""
        retried = []
        for unit_id, unit in self.units.items():
            if unit["stage"] == FAILED:
                unit["stage"], unit["error"] = unit.pop("failed_from", PLANNED), None
                retried.append(unit_id)
        if retried:
            self.save()
        return sorted(retried)

    def units_at(self, state: str) -> list[str]:
        return sorted(u for u, rec in self.units.items() if rec["stage"] == state)

    def counts(self) -> dict:
        out: dict[str, int] = {}
        for rec in self.units.values():
            out[rec["stage"]] = out.get(rec["stage"], 0) + 1
        return out


def all_shards(run_dir) -> list[dict]:
    """Every shard manifest of a run (read only): what the run-wide stages look at."""
    folder = Path(run_dir) / "manifest"
    return [Manifest._read(p) for p in sorted(folder.glob("shard-*-of-*.json"))]


class RunState:
    """``RUN/manifest/run.json``: the run-wide stages, their outputs and timings."""

    def __init__(self, run_dir):
        self.path = Path(run_dir) / "manifest" / "run.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {"stages": {}, "timings": {}}

    def done(self, stage: str) -> bool:
        return self.data["stages"].get(stage, {}).get("status") == "done"

    def set(self, stage: str, **record) -> None:
        self.data["stages"][stage] = record
        self.save()

    def add_time(self, stage: str, seconds: float, units: int) -> None:
        t = self.data["timings"].setdefault(stage, {"seconds": 0.0, "units": 0})
        t["seconds"] = round(t["seconds"] + seconds, 3)
        t["units"] += units
        self.save()

    def reset(self, *stages: str) -> None:
        for stage in stages:
            self.data["stages"].pop(stage, None)
        self.save()

    def save(self) -> None:
        atomic_write_text(self.path, json.dumps(self.data, indent=1, sort_keys=True))

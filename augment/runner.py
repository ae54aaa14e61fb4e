"""Run the augmentation stages over a run directory, resumably, in this process.

Per-unit stages (``sources``, ``first_frames``, ``rollouts``, ``scores``) work on this
shard's units and record each finished unit's new state in the shard's manifest; run-wide
stages (``filter``, ``export``, ``merge``, ``report``) need every shard's units finished and
run unsharded. Each stage loads its model only when it has work, so a resumed run whose
rollouts are done never loads FLUX. A unit whose stage raises is marked ``failed`` with the
message and the run goes on; the report lists it.

A resume trusts files, not the manifest: before any stage, every finished state is checked
against its outputs (:meth:`AugmentRun.verify_outputs`: source files, first frame, rollout
folder, verdict; the run-wide stages' ``kept.txt``, export and mixture) and whatever is missing
is redone, said in the log. Paths in ``run.json`` are relative to the run folder, so a run
folder that is moved or copied resumes on its own files.

Names (the table in ``docs/augment.md``): a *stage* keeps one spelling in ``--stages`` and in
the timings of ``RUN/manifest/run.json``; only its subcommand is spelled the CLI's way
(``first-frames``, ``score``: :data:`augment.cli.STAGE_COMMANDS`). A unit's *state*
(:mod:`augment.manifest`, its record's ``stage`` field) is another thing: ``STAGE_STATES``
says which state each per-unit stage takes units in and leaves them in (``first_frames``:
``planned`` -> ``first_frame``). These strings are the file format and the CLI: keep them.
"""

from __future__ import annotations

import hashlib
import shutil
import sys
import time
import zlib
from pathlib import Path

import yaml
from tqdm.auto import tqdm

from augment.config import AugmentConfig, check_inputs
from augment.exporting import export_kept, merge_with_bridge
from augment.gpu_cost import projected_clip_cost
from augment.manifest import (FAILED, PAINTED, PLANNED, ROLLED_OUT, SCORED, Manifest, RunState, all_shards,
                              atomic_write_text)
from augment.models import make_generator, make_painter, painter_ids
from augment.replay import REPLAY, replay_unit_id
from augment.report import write_report
from augment.rollout import rollout_dir, world_model_condition_kinds
from augment.score_stage import score_units, select_units, verdict_path
from augment.sources import iter_source_episodes, prepare_source, save_source, source_dir
from augment.unit_work import first_frame_path, first_frame_unit, rollout_unit, rollout_units
from orv_engine.config_validation import ConfigError
from orv_engine.data.errors import SkipReport

PER_UNIT_STAGES = ("sources", "first_frames", "rollouts", "scores")
RUN_WIDE_STAGES = ("filter", "export", "merge", "report")
ALL_STAGES = PER_UNIT_STAGES + RUN_WIDE_STAGES
# per-unit stage -> (the unit state it takes units in, the one it leaves them in); sources plans units (PLANNED)
STAGE_STATES = {"first_frames": (PLANNED, PAINTED), "rollouts": (PAINTED, ROLLED_OUT), "scores": (ROLLED_OUT, SCORED)}
TERMINAL_STATES = (SCORED, FAILED)


def unit_seed(base_seed: int, unit_id: str) -> int:
    return zlib.crc32(f"{base_seed}:{unit_id}".encode()) & 0x7FFFFFFF


class AugmentRun:
    def __init__(self, config: AugmentConfig, run_dir, shard: tuple[int, int] = (0, 1), progress: bool = True,
                 log=print):
        self.config = config
        self.run_dir = Path(run_dir)
        self.shard = shard
        self.progress = progress
        self.log = log
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._check_same_config()
        self._clean_partial_files()
        self.manifest = Manifest(self.run_dir, shard)
        self.state = RunState(self.run_dir)
        self._painter = self._generator = None

    # -- set-up ------------------------------------------------------------------------
    def _check_same_config(self) -> None:
        """A run directory belongs to one config: resuming with another would mix outputs."""
        path = self.run_dir / "config.yaml"
        current = {k: v for k, v in self.config.to_dict().items() if k != "ray"}
        if path.exists():
            saved = {k: v for k, v in (yaml.safe_load(path.read_text()) or {}).items() if k != "ray"}
            if isinstance(saved.get("rollout"), dict):
                saved["rollout"].setdefault("preset", "paper")  # runs saved before rollout.preset existed
                # batching changes throughput, not outputs: a resume may batch differently
                saved["rollout"]["batch_units"] = current["rollout"]["batch_units"]
            if saved != current:
                diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
                raise ConfigError(f"{self.run_dir} holds a run with another config (differs in: {', '.join(diff)}); "
                                  "use a new --run-dir, or delete it to start over")
        else:
            atomic_write_text(path, yaml.safe_dump(self.config.to_dict(), sort_keys=False, width=110))

    def _clean_partial_files(self) -> None:
        """Half-written outputs of a killed run (``.partial`` folders, ``.tmp`` files)."""
        for pattern in ("rollouts/.*.partial", "**/.*.tmp"):
            for path in self.run_dir.glob(pattern):
                shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)

    def _bar(self, total: int | None, desc: str):
        """One stage's bar (stderr, with ETA when ``total`` is known); none when nothing is to do."""
        return tqdm(total=total, desc=desc, unit="unit", disable=not self.progress or total == 0,
                    file=sys.stderr, dynamic_ncols=True)

    @property
    def painter(self):
        if self._painter is None:
            self._painter = make_painter(self.config)
        return self._painter

    @property
    def generator(self):
        if self._generator is None:
            self._generator = make_generator(self.config)
            self._generator.apply_preset(self.config.rollout.preset)  # paper | fast (docs/fast_rollouts.md)
        return self._generator

    # -- per-unit stages ---------------------------------------------------------------
    def condition_kinds(self) -> tuple[str, ...]:
        """What the sources must carry: the world model's kinds plus the ControlNets' maps."""
        kinds = set(world_model_condition_kinds(self.config.rollout))
        kinds |= {cn.condition for cn in self.config.first_frames.controlnets}
        return tuple(sorted(kinds))

    def run_sources(self) -> None:
        cfg = self.config.first_frames
        kinds = self.condition_kinds()
        done = set(self.manifest.episodes)
        report = SkipReport()
        start, count = time.perf_counter(), 0
        # how many episodes are read is known only with max_episodes and one shard (the files
        # are read as they come); otherwise the bar counts without an ETA
        limit = self.config.source.max_episodes
        bar = self._bar(None if limit is None or self.shard[1] > 1 else max(limit - len(done), 0), "sources")
        for key, episode, reason in iter_source_episodes(self.config, self.shard, done, report):
            record = {"episode_id": episode.meta.episode_id if episode is not None else key, "status": "ready",
                      "reason": None, "steps": 0}
            units = {}
            if episode is not None:
                try:
                    source = prepare_source(self.config, key, episode, kinds)
                    save_source(self.run_dir, source)
                    record["steps"] = len(source)
                    for v in range(cfg.variants_per_episode):
                        unit_id = f"{key}__v{v}"
                        units[unit_id] = {"variant": v, "seed": unit_seed(self.config.seed, unit_id),
                                          "prompt": cfg.prompt_template.format(
                                              appearance=cfg.prompts[v % len(cfg.prompts)],
                                              instruction=source.instruction)}
                    if cfg.replay:  # augment.replay: the real first frame, rolled out like the variants
                        unit_id = replay_unit_id(key)
                        units[unit_id] = {"variant": REPLAY, "seed": unit_seed(self.config.seed, unit_id),
                                          "prompt": ""}
                except (ValueError, KeyError, FileNotFoundError) as err:
                    reason = f"{type(err).__name__}: {err}"
            if reason is not None:
                record.update(status="skipped", reason=reason)
                self.log(f"skipped episode {record['episode_id']}: {reason}")
            self.manifest.add_episode(key, record, units)
            count += 1
            bar.update(1)
        bar.total = count  # the dataset may hold fewer than max_episodes
        bar.refresh()
        bar.close()
        if report:
            self.log(report.format())
            # what the reader refused before an episode key existed (a truncated file's tail)
            skips = self.manifest.data.setdefault("reader_skips", {"counts": {}, "examples": {}})
            for reason, n in report.counts.items():
                skips["counts"][reason] = skips["counts"].get(reason, 0) + n
                skips["examples"].setdefault(reason, []).extend(report.examples.get(reason, []))
            self.manifest.save()
        if not self.manifest.episodes:
            raise ConfigError(f"{self.config.source.path}: no episodes for shard {self.shard[0]}/{self.shard[1]} "
                              f"(split {self.config.source.split})")
        self.state.add_time("sources", time.perf_counter() - start, count)

    def _todo(self, stage: str, only=None) -> list[str]:
        """Units waiting for ``stage`` (those whose record satisfies ``only``, if given)."""
        todo = self.manifest.units_at(STAGE_STATES[stage][0])
        return todo if only is None else [u for u in todo if only(self.manifest.units[u])]

    def _unit_stage(self, stage: str, work, only=None) -> None:
        after = STAGE_STATES[stage][1]
        todo = self._todo(stage, only)
        if not todo:
            return
        start = time.perf_counter()
        with self._bar(len(todo), stage) as bar:
            for unit_id in todo:
                unit = self.manifest.units[unit_id]
                try:
                    seconds = work(unit_id, unit)
                    self.manifest.set_state(unit_id, after, seconds)
                except (ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
                    self.manifest.set_state(unit_id, FAILED, error=f"{stage}: {type(err).__name__}: {err}")
                    self.log(f"unit {unit_id} failed in {stage}: {err}")
                bar.update(1)
        self.state.add_time(stage, time.perf_counter() - start, len(todo))

    def run_first_frames(self) -> None:
        self._unit_stage("first_frames", lambda u, rec: first_frame_unit(lambda: self.painter, self.config,
                                                                         self.run_dir, u, rec))

    def run_rollouts(self) -> None:
        """Units of one episode (same actions, maps and size) are rolled out ``rollout.batch_units``
        at a time in one batch per forward; a batch that fails is redone unit by unit, so one bad
        unit fails alone."""
        ids = painter_ids(self.config)
        batch = self.config.rollout.batch_units
        if batch <= 1:
            self._unit_stage("rollouts",
                             lambda u, rec: rollout_unit(self.generator, ids, self.config, self.run_dir, u, rec))
            return
        before, after = STAGE_STATES["rollouts"]
        todo = self.manifest.units_at(before)
        if not todo:
            return
        groups: dict[str, list[str]] = {}
        for unit_id in todo:
            groups.setdefault(self.manifest.units[unit_id]["episode"], []).append(unit_id)
        start = time.perf_counter()
        with self._bar(len(todo), "rollouts") as bar:
            def finished(unit_id, seconds):
                self.manifest.set_state(unit_id, after, seconds)
                bar.update(1)

            for episode_units in groups.values():
                for i in range(0, len(episode_units), batch):
                    chunk = episode_units[i: i + batch]
                    try:
                        rollout_units(self.generator, ids, self.config, self.run_dir, chunk,
                                      [self.manifest.units[u] for u in chunk], finished)
                    except (ValueError, KeyError, FileNotFoundError, RuntimeError) as err:
                        left = [u for u in chunk if self.manifest.units[u]["stage"] == before]
                        if len(chunk) > 1:
                            self.log(f"batched rollout of {', '.join(chunk)} failed ({err}); one by one")
                        for unit_id in left:
                            try:
                                finished(unit_id, rollout_unit(self.generator, ids, self.config, self.run_dir,
                                                               unit_id, self.manifest.units[unit_id]))
                            except (ValueError, KeyError, FileNotFoundError, RuntimeError) as unit_err:
                                self.manifest.set_state(unit_id, FAILED,
                                                        error=f"rollouts: {type(unit_err).__name__}: {unit_err}")
                                self.log(f"unit {unit_id} failed in rollouts: {unit_err}")
                                bar.update(1)
        self.state.add_time("rollouts", time.perf_counter() - start, len(todo))

    def run_scores(self) -> None:
        before, after = STAGE_STATES["scores"]
        todo = self.manifest.units_at(before)
        if not todo:
            return
        start = time.perf_counter()
        with self._bar(len(todo), "scores") as bar:
            def finished(unit_id, seconds):
                self.manifest.set_state(unit_id, after, seconds)
                bar.update(1)

            score_units(self.config, self.run_dir, todo, self.manifest.units, finished)
        self.state.add_time("scores", time.perf_counter() - start, len(todo))

    # -- run-wide stages ---------------------------------------------------------------
    def all_units(self) -> dict[str, dict]:
        """Units of every shard; refuses while any is unfinished (the run-wide stages need all)."""
        units = {}
        for shard in all_shards(self.run_dir):
            units.update(shard["units"])
        open_units = sorted(u for u, rec in units.items() if rec["stage"] not in TERMINAL_STATES)
        if open_units:
            raise ConfigError(f"{len(open_units)} unit(s) not finished (e.g. {open_units[0]}): run the per-unit stages "
                              "(for every shard) first")
        return units

    def run_filter(self) -> None:
        start = time.perf_counter()
        summary = select_units(self.config, self.run_dir, self.all_units())
        self.state.set("filter", status="done", scored_units_hash=self._scored_hash(), result=summary)
        self.state.add_time("filter", time.perf_counter() - start, summary["clips"])
        replay = summary.get("replay")
        note = ""
        if replay and not replay["selected"]:
            note = f" (+ {replay['units']} replay rollouts, evaluation only)"
        if replay and replay["psnr"] is not None:
            note += f"; replay vs ground truth: PSNR {replay['psnr']:.2f} dB, SSIM {replay['ssim']:.3f}"
        self.log(f"filter: kept {summary['kept']} of {summary['clips']} scored clips{note}")

    def run_export(self) -> None:
        start = time.perf_counter()
        result = export_kept(self.config, self.run_dir)
        if result.get("path"):  # relative: a moved or copied run folder keeps pointing at its own export
            result["path"] = self._relative(result["path"])
        self.state.set("export", status="done", scored_units_hash=self._scored_hash(), result=result)
        episodes = result.get("episodes", 0)
        episodes = sum(episodes.values()) if isinstance(episodes, dict) else int(episodes or 0)
        self.state.add_time("export", time.perf_counter() - start, episodes)
        self.log(f"export: {episodes} episodes -> {result.get('path') or '(nothing kept)'}")

    def run_merge(self) -> None:
        if not self.config.merge.bridge:
            self.state.set("merge", status="done", scored_units_hash=self._scored_hash(),
                           result={"skipped": "merge.bridge not set"})
            return
        start = time.perf_counter()
        export = dict(self.state.data["stages"].get("export", {}).get("result", {}))
        if export.get("path"):
            export["path"] = str(self.run_dir / export["path"])
        result = merge_with_bridge(self.config, self.run_dir, export)
        result = {k: self._relative(v) if k in ("mixture", "merged") and isinstance(v, str) else v
                  for k, v in result.items()}
        self.state.set("merge", status="done", scored_units_hash=self._scored_hash(), result=result)
        self.state.add_time("merge", time.perf_counter() - start, 1)

    def run_report(self) -> Path:
        path = write_report(self.run_dir)
        self.state.set("report", status="done", result={"path": self._relative(path)})
        return path

    def _relative(self, path) -> str:
        """``path`` relative to the run folder when it lies inside it."""
        path = Path(path)
        try:
            return str(path.resolve().relative_to(self.run_dir.resolve()))
        except ValueError:
            return str(path)

    # -- resume: trust the files, not the manifest ---------------------------------------
    def verify_outputs(self) -> list[str]:
        """Put every unit and run-wide stage whose outputs are gone back to where they are
        redone; returns what was reset (also logged)."""
        notes: list[str] = []
        run = self.run_dir
        for key in sorted(self.manifest.episodes):
            record = self.manifest.episodes[key]
            folder = source_dir(run, key)
            if record.get("status") == "ready" and not all((folder / f).is_file() for f in ("source.json", "source.npz")):
                units = [u for u, rec in self.manifest.units.items() if rec.get("episode") == key]
                for unit_id in units:
                    del self.manifest.units[unit_id]
                del self.manifest.episodes[key]
                notes.append(f"episode {key}: {folder} is missing; its source and its {len(units)} unit(s) are redone")
        order = [PLANNED, PAINTED, ROLLED_OUT, SCORED]
        for unit_id, unit in sorted(self.manifest.units.items()):
            state = unit["stage"]
            if state not in order or state == PLANNED:
                continue
            rollout = rollout_dir(run, unit_id)
            has = {PAINTED: first_frame_path(run, unit_id).is_file(),
                   ROLLED_OUT: all((rollout / f).is_file() for f in ("video.mp4", "clip.npz", "clip.json")),
                   SCORED: verdict_path(run, unit_id).is_file()}
            valid = PLANNED
            if has[ROLLED_OUT]:
                valid = SCORED if state == SCORED and has[SCORED] else ROLLED_OUT
            elif has[PAINTED]:
                valid = PAINTED
            if order.index(valid) < order.index(state):
                unit["stage"] = valid
                notes.append(f"unit {unit_id}: {state} outputs missing; back to {valid}")
        if notes:
            self.manifest.save()
        outputs = {"filter": ["kept.txt"],
                   "export": [self.state.data["stages"].get("export", {}).get("result", {}).get("path")],
                   "merge": [self.state.data["stages"].get("merge", {}).get("result", {}).get(k)
                             for k in ("mixture", "merged")]}
        for stage, paths in outputs.items():
            if not self.state.done(stage):
                continue
            gone = [p for p in paths if p and not (run / p).exists()]
            if gone or notes:
                self.state.reset(stage)
                notes.append(f"{stage}: redone ({'missing ' + ', '.join(map(str, gone)) if gone else 'units redone'})")
        for note in notes:
            self.log(f"resume: {note}")
        return notes

    # -- driver ------------------------------------------------------------------------
    def run(self, stages=ALL_STAGES) -> dict:
        stages = [s for s in ALL_STAGES if s in set(stages)]
        check_inputs(self.config, stages)
        self.verify_outputs()
        if self.shard[1] > 1:
            run_wide = [s for s in stages if s in RUN_WIDE_STAGES]
            if run_wide:
                self.log(f"shard {self.shard[0]}/{self.shard[1]}: run-wide stages ({', '.join(run_wide)}) are left "
                         "for an unsharded `orv-augment run` once every shard is done")
            stages = [s for s in stages if s in PER_UNIT_STAGES]
        for stage in stages:
            if stage in RUN_WIDE_STAGES and stage != "report" and self.state.done(stage) and self._unchanged_inputs(stage):
                continue
            if stage == "report":  # recorded first, so the report can show it
                self.record_projected_cost()
            getattr(self, f"run_{stage}")()
        if "report" not in stages:
            self.record_projected_cost()
        return {"run_dir": str(self.run_dir), "units": self.manifest.counts(),
                "report": str(self.run_dir / "report.html") if "report" in stages else None,
                "export": self._export_path()}

    def record_projected_cost(self) -> dict:
        """``run.json``'s ``projected_gpu_seconds``: H100 seconds per augmented clip of the configured
        models at real scale ({stage: seconds, "total": ...}, :func:`augment.gpu_cost.projected_clip_cost`);
        a count that fails is recorded as its error, never as a number."""
        try:
            cost = projected_clip_cost(self.config)
        except Exception as err:  # noqa: BLE001 - a projection must not fail the run
            cost = {"error": f"{type(err).__name__}: {err}"}
        self.state.data["projected_gpu_seconds"] = cost
        self.state.save()
        return cost

    def _export_path(self) -> str | None:
        path = self.state.data["stages"].get("export", {}).get("result", {}).get("path")
        return str(self.run_dir / path) if path else None

    def _scored_hash(self) -> str:
        return _hash(sorted(u for s in all_shards(self.run_dir) for u, rec in s["units"].items()
                            if rec["stage"] == SCORED))

    def _unchanged_inputs(self, stage: str) -> bool:
        """A run-wide stage is redone when the set of scored units changed since it ran."""
        return self.state.data["stages"].get(stage, {}).get("scored_units_hash") == self._scored_hash()


def _hash(items) -> str:
    return hashlib.sha256("\n".join(items).encode()).hexdigest()[:16]

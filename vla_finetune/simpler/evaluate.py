"""Evaluate a policy on a list of tasks: per-episode records, metrics table, chart, videos.

Each task runs in its own spawned ManiSkill process (:mod:`.episodes`). Before it starts,
its assets are checked (``orv_engine.sim.assets``: a missing one fails with ManiSkill's
exact download command, and no empty asset folder is left behind). An unknown task, a task
whose assets are missing, a process that dies: recorded, and the run goes on; the summary
says how many episodes ran, failed and why.

Outputs in ``out_dir``: ``episodes.jsonl`` (one record per episode: success, grasp, the
Bridge ``episode_id``/``config_id`` and initial object poses, error), ``metrics.json`` (per
task: success and grasp rate, the configuration ids that ran) and ``metrics.csv``,
``success_by_task.png`` and ``videos/TASK/episode_NNN.mp4``; ``evaluation.json``: the settings.

Resumable: the journal is written episode by episode, so an evaluation killed after hours keeps
what it ran. Run again into the same ``out_dir`` with the same settings and only the episodes
missing from ``episodes.jsonl`` run (an episode is decided by its task, ``episode_id`` / seed and
the policy alone: the Bridge scenes are reset twice, the policy once per episode); an episode
that never started (missing asset, set-up failure, dead simulator) is tried again, a half-written
last line is dropped. Other settings in the same folder are refused (``overwrite`` starts over).
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import os
import queue as queue_module
import shutil
from pathlib import Path

from matplotlib.figure import Figure

from orv_engine.sim.assets import SimAssetError, require_asset
from vla_finetune.simpler.episodes import task_process
from vla_finetune.simpler.tasks import UnknownTaskError, get_task


JOURNAL, SETTINGS = "episodes.jsonl", "evaluation.json"


class EvaluationFolderError(ValueError):
    """``out_dir`` holds an evaluation with other settings."""


def _task_error_records(name: str, episodes, error: str) -> list[dict]:
    """Failed records for ``episodes`` (a count or the indices)."""
    indices = range(episodes) if isinstance(episodes, int) else episodes
    return [{"task": name, "episode": i, "seed": None, "episode_id": None, "config_id": None, "success": False,
             "grasped": False, "steps": 0, "error": error, "video": None} for i in indices]


def run_task(name: str, policy: str, out_dir: Path, episodes: int | None = None, max_steps: int | None = None,
             asset_dir: str | None = None, timeout: float = 1800, skip=(), **options) -> list[dict]:
    """The task's episodes but those in ``skip`` (indices), in order."""
    try:
        task = get_task(name)
    except UnknownTaskError as err:
        return _task_error_records(name, [i for i in range(episodes or 1) if i not in skip],
                                   f"unknown task: {err.args[0]}")
    episodes = episodes or task.episodes
    todo = [i for i in range(episodes) if i not in skip]
    if not todo:
        return []
    try:
        for uid in task.assets:
            require_asset(uid, asset_dir)
    except SimAssetError as err:
        return _task_error_records(task.name, todo, f"missing asset: {err}")
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    opts = {"task": task.name, "policy": policy, "episodes": episodes, "max_steps": max_steps, "skip": sorted(skip),
            "video_dir": str(out_dir / "videos"), "asset_dir": asset_dir, **options}
    process = context.Process(target=task_process, args=(out, opts), daemon=True)
    process.start()
    records: list[dict] = []
    while True:
        try:
            kind, payload = out.get(timeout=5)
        except queue_module.Empty:
            if process.is_alive():
                continue
            error = f"crashed: the simulator process died (exit code {process.exitcode})"
            records += _task_error_records(task.name, todo[len(records):], error)
            break
        if kind == "episode":
            records.append(payload)
        elif kind == "error":
            records += _task_error_records(task.name, todo[len(records):], f"set-up failed: {payload}")
            break
        else:
            break
    process.join(timeout=30)
    if process.is_alive():
        process.kill()
    return records


def summarize(records: list[dict]) -> dict:
    tasks: dict[str, dict] = {}
    for r in records:
        t = tasks.setdefault(r["task"], {"episodes": 0, "ran": 0, "success": 0, "grasped": 0, "errors": {},
                                         "config_ids": []})
        t["episodes"] += 1
        if r.get("config_id") is not None:  # the Bridge configurations this run covered, in episode order
            t["config_ids"].append(r["config_id"])
        if r["error"]:
            kind = r["error"].split(":")[0]
            t["errors"][kind] = t["errors"].get(kind, 0) + 1
        if r["steps"]:
            t["ran"] += 1
        t["success"] += bool(r["success"])
        t["grasped"] += bool(r["grasped"])
    for t in tasks.values():
        t["success_rate"] = t["success"] / t["episodes"] if t["episodes"] else 0.0
        t["grasp_rate"] = t["grasped"] / t["episodes"] if t["episodes"] else 0.0
    rates = [t["success_rate"] for t in tasks.values()]
    return {"tasks": tasks, "mean_success_rate": sum(rates) / len(rates) if rates else 0.0,
            "episodes": len(records), "failed_episodes": sum(1 for r in records if r["error"])}


def bar_chart(summary: dict, path: Path) -> Path:
    names = list(summary["tasks"])
    x = range(len(names))
    fig = Figure(figsize=(1.6 * len(names) + 2, 3))  # no pyplot: no GUI backend, nothing to close
    ax = fig.subplots()
    ax.bar([i - 0.2 for i in x], [summary["tasks"][n]["grasp_rate"] for n in names], 0.4, label="grasp")
    ax.bar([i + 0.2 for i in x], [summary["tasks"][n]["success_rate"] for n in names], 0.4, label="success")
    ax.set_xticks(list(x), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return path


def _started(record: dict) -> bool:
    """An episode that ran (or failed in the policy): kept on resume; one that never started is redone."""
    return bool(record.get("steps")) or not record.get("error")


def read_journal(path: Path) -> tuple[list[dict], int]:
    """(records, lines dropped): a line cut by a kill or otherwise unreadable is dropped."""
    records, dropped = [], 0
    if not path.is_file():
        return records, dropped
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
            if not isinstance(record, dict) or not {"task", "episode"} <= set(record):
                raise ValueError(line[:80])
        except ValueError:
            dropped += 1
            continue
        records.append(record)
    return records, dropped


def _previous_records(out_dir: Path, settings: dict, overwrite: bool, log) -> list[dict]:
    """The records an earlier run with these settings left in ``out_dir`` (none: a fresh start)."""
    settings_file, journal = out_dir / SETTINGS, out_dir / JOURNAL
    if overwrite:
        for path in (journal, settings_file):
            path.unlink(missing_ok=True)
        shutil.rmtree(out_dir / "videos", ignore_errors=True)
    if not journal.is_file():
        return []
    try:
        before = json.loads(settings_file.read_text())
    except (OSError, ValueError):
        before = None
    if before != settings:
        differ = ("no readable " + SETTINGS if not isinstance(before, dict) else
                  ", ".join(f"{k}: {before.get(k)!r} -> {settings.get(k)!r}" for k in settings
                            if before.get(k) != settings.get(k)))
        raise EvaluationFolderError(f"{out_dir} holds another evaluation ({differ}); choose another --out, "
                                    "or --overwrite to start this folder over")
    records, dropped = read_journal(journal)
    wanted = {(name, i) for name in settings["tasks"] for i in range(settings["episodes"][name])}
    kept = {(r["task"], r["episode"]): r for r in records if (r["task"], r["episode"]) in wanted and _started(r)}
    log(f"resume: {len(kept)} episode(s) already in {journal}" + (f"; {dropped} unreadable line(s) dropped"
                                                                   if dropped else ""))
    return list(kept.values())


def _episode_counts(tasks, episodes: int | None) -> dict[str, int]:
    counts = {}
    for name in tasks:
        try:
            counts[name] = episodes or get_task(name).episodes
        except UnknownTaskError:
            counts[name] = episodes or 1
    return counts


def evaluate(tasks, policy: str, out_dir, episodes: int | None = None, max_steps: int | None = None,
             asset_dir: str | None = None, overwrite: bool = False, log=print, **options) -> dict:
    """Run ``tasks`` with ``policy`` ("scripted" or a saved policy folder); write the outputs.
    Episodes already in ``out_dir``'s journal from the same settings are not run again."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tasks = list(tasks)
    settings = {"tasks": tasks, "policy": str(policy), "episodes": _episode_counts(tasks, episodes),
                "max_steps": max_steps, **{k: v for k, v in sorted(options.items())}}
    settings = json.loads(json.dumps(settings))  # as read back from the file (tuples -> lists)
    previous = _previous_records(out_dir, settings, overwrite, log)
    journal = out_dir / JOURNAL
    tmp = journal.with_name(JOURNAL + ".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in previous), encoding="utf-8")
    os.replace(tmp, journal)  # the kept records only: nothing half-written stays
    (out_dir / SETTINGS).write_text(json.dumps(settings, indent=1))
    records: list[dict] = list(previous)
    with open(journal, "a", encoding="utf-8") as handle:
        for name in tasks:
            skip = {r["episode"] for r in previous if r["task"] == name}
            for record in run_task(name, policy, out_dir, settings["episodes"][name], max_steps, asset_dir,
                                   skip=skip, **options):
                records.append(record)
                handle.write(json.dumps(record) + "\n")
                handle.flush()
    order = {name: i for i, name in enumerate(tasks)}
    records.sort(key=lambda r: (order[r["task"]], r["episode"]))
    summary = summarize(records)
    summary["policy"] = policy
    summary["resumed_episodes"] = len(previous)
    (out_dir / "metrics.json").write_text(json.dumps(summary, indent=1))
    with open(out_dir / "metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["task", "episodes", "success_rate", "grasp_rate", "failed_episodes"])
        for name, t in summary["tasks"].items():
            writer.writerow([name, t["episodes"], f"{t['success_rate']:.4f}", f"{t['grasp_rate']:.4f}",
                             sum(t["errors"].values())])
    if summary["tasks"]:
        summary["chart"] = str(bar_chart(summary, out_dir / "success_by_task.png"))
    return summary

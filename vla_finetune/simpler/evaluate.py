"""Evaluate a policy on a list of tasks: per-episode records, metrics table, chart, videos.

Each task runs in its own spawned ManiSkill process (:mod:`.episodes`). Before it starts,
its assets are checked (``orv_engine.sim.assets``: a missing one fails with ManiSkill's
exact download command, and no empty asset folder is left behind). An unknown task, a task
whose assets are missing, a process that dies: recorded, and the run goes on; the summary
says how many episodes ran, failed and why.

Outputs in ``out_dir``: ``episodes.jsonl`` (one record per episode: success, grasp, the
Bridge ``episode_id``/``config_id`` and initial object poses, error), ``metrics.json`` (per
task: success and grasp rate, the configuration ids that ran) and ``metrics.csv``,
``success_by_task.png`` and ``videos/TASK/episode_NNN.mp4``.
"""

from __future__ import annotations

import csv
import json
import multiprocessing
import queue as queue_module
from pathlib import Path

from matplotlib.figure import Figure

from orv_engine.sim.assets import SimAssetError, require_asset
from vla_finetune.simpler.episodes import task_process
from vla_finetune.simpler.tasks import UnknownTaskError, get_task


def _task_error_records(name: str, episodes: int, error: str) -> list[dict]:
    return [{"task": name, "episode": i, "seed": None, "episode_id": None, "config_id": None, "success": False,
             "grasped": False, "steps": 0, "error": error, "video": None} for i in range(episodes)]


def run_task(name: str, policy: str, out_dir: Path, episodes: int | None = None, max_steps: int | None = None,
             asset_dir: str | None = None, timeout: float = 1800, **options) -> list[dict]:
    try:
        task = get_task(name)
    except UnknownTaskError as err:
        return _task_error_records(name, episodes or 1, f"unknown task: {err.args[0]}")
    episodes = episodes or task.episodes
    try:
        for uid in task.assets:
            require_asset(uid, asset_dir)
    except SimAssetError as err:
        return _task_error_records(task.name, episodes, f"missing asset: {err}")
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    opts = {"task": task.name, "policy": policy, "episodes": episodes, "max_steps": max_steps,
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
            records += _task_error_records(task.name, episodes, error)[len(records):]
            break
        if kind == "episode":
            records.append(payload)
        elif kind == "error":
            records += _task_error_records(task.name, episodes, f"set-up failed: {payload}")[len(records):]
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


def evaluate(tasks, policy: str, out_dir, episodes: int | None = None, max_steps: int | None = None,
             asset_dir: str | None = None, **options) -> dict:
    """Run ``tasks`` with ``policy`` ("scripted" or a saved policy folder); write the outputs."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    records: list[dict] = []
    with open(out_dir / "episodes.jsonl", "w", encoding="utf-8") as journal:
        for name in tasks:
            for record in run_task(name, policy, out_dir, episodes, max_steps, asset_dir, **options):
                records.append(record)
                journal.write(json.dumps(record) + "\n")
                journal.flush()
    summary = summarize(records)
    summary["policy"] = policy
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

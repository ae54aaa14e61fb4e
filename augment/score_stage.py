"""The ``scores`` and ``filter`` stages: the ``filtering`` package on the run's rollouts.

``scores``: cheap checks (blur, flicker, frame jumps, RAFT smoothness, agreement of the
motion with the occupancy conditions) and, unless ``score.checks_only``, the VLM caption and
3-criterion score (Qwen2.5-VL under vLLM, or the other backends) for each rolled-out unit;
one verdict per unit, ``RUN/verdicts/UNIT.json``, written atomically as each batch returns.
``filter``: the selection over every unit of every shard (bottom 10% dropped by default),
``RUN/verdicts.parquet`` + ``RUN/kept.txt``.

Replay units (:mod:`augment.replay`) are scored like any rollout, and their verdicts also
carry two informational checks, ``replay_psnr`` and ``replay_ssim`` (against the recorded
frames; they never fail). Unless ``export.replay`` is set they stay out of the selection
(so they shift no percentile of the painted clips): their verdict says ``keep: false``,
"replay rollout: evaluation only", and ``kept.txt`` never lists them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from augment.replay import CHECK_NAMES, is_replay, mean_replay_metrics
from augment.rollout import rollout_dir
from augment.sources import load_source
from orv_engine.atomic_files import atomic_write_text
from filtering.backends import make_backend
from filtering.clip_source import ClipInput
from filtering.records import CheckResult, ClipVerdict
from filtering.scoring import FilterPipeline
from filtering.selection import select, select_by_checks, summarize
from filtering.table import write_verdicts


def verdict_path(run_dir, unit_id: str) -> Path:
    return Path(run_dir) / "verdicts" / f"{unit_id}.json"


def load_verdict(run_dir, unit_id: str) -> ClipVerdict:
    data = json.loads(verdict_path(run_dir, unit_id).read_text())
    data["checks"] = [CheckResult(**c) for c in data.get("checks", [])]
    return ClipVerdict(**data)


def replay_record(run_dir, unit_id: str) -> dict | None:
    """The ``"replay"`` metrics of a unit's ``rollout.json`` (None if absent)."""
    try:
        return json.loads((rollout_dir(run_dir, unit_id) / "rollout.json").read_text()).get("replay")
    except (OSError, ValueError):
        return None


def replay_checks(metrics: dict | None) -> list[CheckResult]:
    """The replay's PSNR/SSIM as informational checks (always passed: they measure the world
    model, not this clip's usability)."""
    if not metrics or "error" in metrics:
        return []
    frames = f"frames {metrics['skip_first_frames']}..{metrics['skip_first_frames'] + metrics['frames_compared'] - 1}"
    psnr = metrics["psnr"]
    return [CheckResult(CHECK_NAMES[0], float("inf") if psnr is None else psnr, True, None,
                        f"PSNR vs ground truth, {frames} (dB, informational)"),
            CheckResult(CHECK_NAMES[1], metrics["ssim"], True, None, f"SSIM vs ground truth, {frames} (informational)")]


def _clip_input(run_dir, unit_id: str, unit: dict) -> ClipInput:
    folder = rollout_dir(run_dir, unit_id)

    def frames():
        with np.load(folder / "clip.npz") as data:
            return data["frames"]

    def conditions():
        maps = load_source(run_dir, unit["episode"]).conditions
        return maps or None

    return ClipInput(name=unit_id, load=frames, path=str(folder / "video.mp4"), conditions=conditions)


def score_units(config, run_dir, unit_ids, units: dict, finished) -> None:
    """Score ``unit_ids``; ``finished(unit_id, seconds)`` is called once its verdict is on disk."""
    filter_config = config.filter_config()
    backend = None
    if config.score.checks_only or not config.score.enabled:
        filter_config.caption = filter_config.score = False
    else:
        backend = make_backend(filter_config)
    pipeline = FilterPipeline(filter_config, backend)

    def save(chunk):
        for verdict in chunk:
            if is_replay(units[verdict.clip]):
                verdict.checks.extend(replay_checks(replay_record(run_dir, verdict.clip)))
            atomic_write_text(verdict_path(run_dir, verdict.clip), json.dumps(verdict.to_dict(), indent=1))
            finished(verdict.clip, verdict.seconds_checks + verdict.seconds_vlm)

    try:
        pipeline.run([_clip_input(run_dir, u, units[u]) for u in unit_ids], on_batch=save)
    finally:
        if backend is not None:
            backend.close()


def select_units(config, run_dir, units: dict) -> dict:
    """Keep/drop over every scored unit; writes ``verdicts.parquet`` and ``kept.txt``."""
    run_dir = Path(run_dir)
    scored = sorted(u for u, rec in units.items() if rec["stage"] == "scored")
    replay = [u for u in scored if is_replay(units[u])]
    held_out = set() if config.export.replay else set(replay)  # evaluation only: not selected
    verdicts = [load_verdict(run_dir, u) for u in scored if u not in held_out]
    if config.score.checks_only or not config.score.enabled:
        select_by_checks(verdicts)
    else:
        select(verdicts, config.filter_config().selection)
    evaluation = [load_verdict(run_dir, u) for u in sorted(held_out)]
    for v in evaluation:
        v.keep, v.reason = False, "replay rollout: evaluation only (export.replay: false)"
    if verdicts or evaluation:
        write_verdicts(verdicts + evaluation, run_dir / "verdicts.parquet")
    atomic_write_text(run_dir / "kept.txt", "".join(f"{v.clip}\n" for v in verdicts if v.keep))
    summary = summarize(verdicts) if verdicts else {"clips": 0, "kept": 0}
    summary["failed_units"] = sum(1 for rec in units.values() if rec["stage"] == "failed")
    if replay:
        summary["replay"] = {"units": len(replay), **mean_replay_metrics([replay_record(run_dir, u) for u in replay]),
                             "selected": bool(config.export.replay)}
    return summary


def kept_units(run_dir) -> list[str]:
    path = Path(run_dir) / "kept.txt"
    return [line for line in path.read_text().splitlines() if line] if path.exists() else []

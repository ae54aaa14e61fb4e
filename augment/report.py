"""``RUN/report.html``: what a run made, what it dropped or skipped, and what it cost.

Self-contained HTML (images next to it in ``RUN/report/``): counts per stage, time per
stage (seconds per unit, units per hour), skipped episodes with reasons, failed units with
their errors, one contact sheet per source episode (source first frame, its depth and
semantic maps, then each variant's painted first frame and frames of its rollout), and
histograms of the scores and cheap-check values once the scoring stage has run.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from augment.manifest import RunState, all_shards, atomic_write_text
from augment.sources import load_source
from augment.unit_work import first_frame_path
from orv_engine.occupancy.condition_images import depth_image, semantic_image

TILE = 128  # contact-sheet tile height in pixels


def _tile(image: np.ndarray, label: str = "") -> Image.Image:
    img = Image.fromarray(np.asarray(image, np.uint8))
    img = img.resize((max(1, round(img.width * TILE / img.height)), TILE))
    if label:
        ImageDraw.Draw(img).text((3, 2), label, fill=(255, 255, 0))
    return img


def _row(tiles: list[Image.Image]) -> Image.Image:
    width = sum(t.width for t in tiles) + 2 * (len(tiles) - 1)
    row = Image.new("RGB", (width, TILE), (255, 255, 255))
    x = 0
    for t in tiles:
        row.paste(t, (x, 0))
        x += t.width + 2
    return row


def contact_sheet(run_dir: Path, key: str, units: dict, out: Path) -> Path | None:
    """Source first frame + maps on the first row, then one row per variant."""
    try:
        source = load_source(run_dir, key)
    except FileNotFoundError:
        return None
    rows = [[_tile(source.first_frame, "source")]]
    if "depth" in source.conditions:
        rows[0].append(_tile(depth_image(source.conditions["depth"][:1])[0], "depth"))
    if "semantics" in source.conditions:
        rows[0].append(_tile(semantic_image(source.conditions["semantics"][:1])[0], "semantics"))
    for unit_id, rec in sorted(units.items(), key=lambda kv: kv[1]["variant"]):
        tiles = []
        ff = first_frame_path(run_dir, unit_id)
        if ff.exists():
            tiles.append(_tile(np.asarray(Image.open(ff).convert("RGB")), f"v{rec['variant']} first"))
        clip = run_dir / "rollouts" / unit_id / "clip.npz"
        if clip.exists():
            with np.load(clip) as data:
                frames = data["frames"]
            for t in np.linspace(0, len(frames) - 1, 4).round().astype(int)[1:]:
                tiles.append(_tile(frames[t], f"t={t}"))
        if tiles:
            rows.append(tiles)
    images = [_row(r) for r in rows]
    sheet = Image.new("RGB", (max(i.width for i in images), sum(i.height + 2 for i in images)), (255, 255, 255))
    y = 0
    for i in images:
        sheet.paste(i, (0, y))
        y += i.height + 2
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out)
    return out


def histograms(verdicts: list[dict], out: Path) -> Path | None:
    series = {}
    finals = [v["final_score"] for v in verdicts if v.get("final_score") is not None]
    if finals:
        series["final score"] = finals
    for v in verdicts:
        for name, value in (v.get("scores") or {}).items():
            series.setdefault(f"{name} score", []).append(value)
        for check in v.get("checks") or []:
            series.setdefault(f"check: {check['name']}", []).append(check["value"])
    series = {k: [x for x in vals if x is not None and np.isfinite(x)] for k, vals in series.items()}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return None
    fig = Figure(figsize=(3.2 * len(series), 2.6))  # no pyplot: no GUI backend, nothing to close
    axes = fig.subplots(1, len(series), squeeze=False)
    for ax, (name, values) in zip(axes[0], series.items()):
        ax.hist(values, bins=min(20, max(3, len(values))), color="#4477aa")
        ax.set_title(name, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    return out


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(run_dir, max_sheets: int = 50) -> Path:
    run_dir = Path(run_dir)
    shards = all_shards(run_dir)
    episodes = {k: v for s in shards for k, v in s["episodes"].items()}
    units = {k: v for s in shards for k, v in s["units"].items()}
    state = RunState(run_dir).data
    stages: dict[str, int] = {}
    for rec in units.values():
        stages[rec["stage"]] = stages.get(rec["stage"], 0) + 1
    kept = set((run_dir / "kept.txt").read_text().split()) if (run_dir / "kept.txt").exists() else set()
    parts = [f"<h1>orv-augment run</h1><p>{html.escape(str(run_dir.resolve()))}</p>"]

    skipped = {k: v for k, v in episodes.items() if v["status"] == "skipped"}
    parts.append("<h2>Counts</h2>" + _table(
        ["source episodes", "skipped episodes", "units", *sorted(stages), "kept"],
        [[len(episodes), len(skipped), len(units), *(stages[s] for s in sorted(stages)), len(kept)]]))

    timing_rows = []
    for stage, t in state.get("timings", {}).items():
        per = t["seconds"] / t["units"] if t["units"] else float("nan")
        timing_rows.append([stage, t["units"], f"{t['seconds']:.1f}", f"{per:.2f}",
                            f"{3600 / per:.0f}" if per and np.isfinite(per) and per > 0 else "-"])
    parts.append("<h2>Time per stage</h2>" + _table(["stage", "units", "seconds", "s/unit", "units/hour"], timing_rows))
    run_stages = state.get("stages", {})
    if run_stages:
        parts.append("<h2>Run-wide stages</h2>" + _table(
            ["stage", "result"], [[k, json.dumps({a: b for a, b in v.items() if a != "scored_units_hash"})]
                                  for k, v in run_stages.items()]))
    if skipped:
        parts.append(f"<h2>Skipped source episodes ({len(skipped)})</h2>" + _table(
            ["key", "episode", "reason"], [[k, v["episode_id"], v["reason"]] for k, v in sorted(skipped.items())]))
    reader_skips = [(reason, n, "; ".join(s.get("reader_skips", {}).get("examples", {}).get(reason, [])))
                    for s in shards for reason, n in s.get("reader_skips", {}).get("counts", {}).items()]
    if reader_skips:
        parts.append("<h2>Unreadable source records</h2>" + _table(["reason", "count", "where"], reader_skips))
    failed = {k: v for k, v in units.items() if v["stage"] == "failed"}
    if failed:
        parts.append(f"<h2>Failed units ({len(failed)})</h2>" + _table(
            ["unit", "error"], [[k, v["error"]] for k, v in sorted(failed.items())]))

    verdict_dir = run_dir / "verdicts"
    verdicts = [json.loads(p.read_text()) for p in sorted(verdict_dir.glob("*.json"))] if verdict_dir.exists() else []
    if verdicts:
        hist = histograms(verdicts, run_dir / "report" / "scores.png")
        if hist:
            parts.append(f"<h2>Scores and checks</h2><img src='report/{hist.name}'>")
        parts.append(_table(["unit", "keep", "final score", "caption", "reason"], [
            [v["clip"], "keep" if v["clip"] in kept else "drop", v.get("final_score"), v.get("caption") or "",
             v.get("reason") or ""] for v in verdicts]))

    parts.append("<h2>Contact sheets: source vs variants</h2>")
    by_episode: dict[str, dict] = {}
    for unit_id, rec in units.items():
        by_episode.setdefault(rec["episode"], {})[unit_id] = rec
    for key in sorted(by_episode)[:max_sheets]:
        sheet = contact_sheet(run_dir, key, by_episode[key], run_dir / "report" / f"sheet_{key}.png")
        if sheet:
            parts.append(f"<h3>{html.escape(key)} ({html.escape(episodes.get(key, {}).get('episode_id', ''))})</h3>"
                         f"<img src='report/{sheet.name}'>")
    style = ("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}img{max-width:100%}</style>")
    path = run_dir / "report.html"
    atomic_write_text(path, f"<!doctype html><html><head><meta charset='utf-8'><title>orv-augment report</title>"
                            f"{style}</head><body>{''.join(parts)}</body></html>")
    return path

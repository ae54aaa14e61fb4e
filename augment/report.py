"""``RUN/report.html``: a viewer of what a run made, what it dropped or skipped, and what it cost.

One self-contained folder: ``RUN/report.html`` and its assets in ``RUN/report/`` (videos,
images; the page's CSS and JavaScript are inline, hand-written, no CDN), every link
relative, so the page opens offline, from a copied run folder too. It holds:

- the models used, counts per stage, and the time per stage (seconds per unit, units per
  hour) with the projected H100 time per unit and for the run's units where the run records
  one (``projected_gpu_seconds`` in ``RUN/manifest/run.json``, :mod:`augment.gpu_cost`);
- links to the exported dataset (and the mixture, the verdict table, ``kept.txt``);
- a table of every unit: variant, state, keep/drop, final score, each VLM score, each cheap
  check's value (failed ones marked), replay PSNR/SSIM, seconds, the drop reason or the
  error; sortable (click a header) and filterable (text, decision);
- histograms of the scores and check values, the replay's PSNR/SSIM per frame;
- skipped episodes with reasons, unreadable records, failed units with their errors;
- per source episode, one column per stream, its first frame above its video: ground truth
  (the source's first frame, the recorded frames), the depth and semantic condition maps,
  the replay and each painted variant (its painted first frame, then the rollout from it);
  the videos play in sync under one control (play/pause, frame slider, speed). Videos are
  H.264 mp4 (yuv420p, ``+faststart``), which Chromium, Firefox and Safari play, upscaled by
  an integer factor (nearest) so 64x64 rollouts stay sharp;
- below each episode, static copies: an animated GIF side by side (ground truth | replay |
  variants) and a contact sheet (source + maps, then rows at the same time steps).

The media (sheets, GIF, histograms, videos and the per-episode streams) are made by
:mod:`augment.report_media`; this module writes the page around them.

``tests/test_report_viewer.py`` opens the page in headless Chromium and checks that the
videos load and play in sync, that sorting and filtering work and that the console shows no
error.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import numpy as np
import yaml

from augment.manifest import FAILED, RunState, all_shards
from augment.replay import REPLAY, is_replay, mean_replay_metrics, variant_label
from augment.report_media import (ASSETS, comparison_gif, contact_sheet, episode_streams, format_number, histograms,
                                  replay_curves)
from augment.sources import load_source
from orv_engine.atomic_files import atomic_write_text


# -- tables ------------------------------------------------------------------------------
def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _num_cell(value, digits: int = 3, failed: bool = False, title: str = "") -> str:
    """A sortable number: the exact value in ``data-value``, a rounded one shown."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "<td class='num' data-value=''>-</td>"
    cls = "num fail" if failed else "num"
    tip = f" title='{html.escape(title, quote=True)}'" if title else ""
    return f"<td class='{cls}' data-value='{float(value)!r}'{tip}>{float(value):.{digits}f}</td>"


def _text_cell(text, href: str | None = None) -> str:
    text = html.escape("" if text is None else str(text))
    return f"<td><a href='{html.escape(href, quote=True)}'>{text}</a></td>" if href else f"<td>{text}</td>"


def unit_rows(run_dir: Path, units: dict, episodes: dict, verdicts: dict[str, dict], kept: set[str],
              replays: dict[str, dict], replay_selected: bool) -> tuple[list[str], list[tuple[str, str]]]:
    """The units table: its header cells and ``(decision, <tr> html)`` per unit."""
    score_names = sorted({n for v in verdicts.values() for n in (v.get("scores") or {})})
    check_names = sorted({c["name"] for v in verdicts.values() for c in (v.get("checks") or [])})
    header = ["unit", "episode", "variant", "state", "decision", "final score",
              *(f"score: {n}" for n in score_names), *(f"check: {n}" for n in check_names),
              "replay PSNR (dB)", "replay SSIM", "rollout s", "reason / error"]
    rows = []
    for unit_id, rec in sorted(units.items()):
        verdict = verdicts.get(unit_id, {})
        if rec["stage"] == FAILED:
            decision = "failed"
        elif not verdict:
            decision = "not scored"
        elif unit_id in kept:
            decision = "keep"
        elif is_replay(rec) and not replay_selected:
            decision = "replay (evaluation)"
        else:
            decision = "drop"
        checks = {c["name"]: c for c in verdict.get("checks") or []}
        replay = replays.get(rec["episode"], {}) if is_replay(rec) else {}
        cells = [_text_cell(unit_id, f"#ep-{rec['episode']}"),
                 _text_cell(episodes.get(rec["episode"], {}).get("episode_id", rec["episode"])),
                 _text_cell(variant_label(rec)), _text_cell(rec["stage"]), _text_cell(decision),
                 _num_cell(verdict.get("final_score")),
                 *(_num_cell((verdict.get("scores") or {}).get(n)) for n in score_names),
                 *(_num_cell(checks[n]["value"], failed=not checks[n].get("passed", True),
                             title=checks[n].get("detail") or "") if n in checks else _num_cell(None)
                   for n in check_names),
                 _num_cell(replay.get("psnr"), 2), _num_cell(replay.get("ssim")),
                 _num_cell((rec.get("seconds") or {}).get("rollout"), 2),
                 _text_cell(rec.get("error") or verdict.get("reason") or verdict.get("error") or "")]
        rows.append((decision, f"<tr data-decision='{html.escape(decision, quote=True)}'>{''.join(cells)}</tr>"))
    return header, rows


# ``projected_gpu_seconds`` in ``run.json`` (augment.gpu_cost.projected_clip_cost) -> the run's stage names
PROJECTED_STAGES = {"painter": "first_frames", "rollout": "rollouts", "scoring": "scores"}


def projected_gpu(state: dict) -> dict | None:
    """What the run records as ``projected_gpu_seconds``: H100 seconds per augmented clip of the
    configured models at real scale, per stage (``{stage: seconds}``, with the run's stage
    names) and the record itself; None when the run records none (or its count failed)."""
    cost = state.get("projected_gpu_seconds")
    if not isinstance(cost, dict) or "error" in cost:
        return None
    per_stage = {PROJECTED_STAGES[k]: float(v) for k, v in cost.items()
                 if k in PROJECTED_STAGES and isinstance(v, (int, float))}
    return {"per_stage": per_stage, "record": cost} if per_stage else None


def _projected_note(state: dict, projected: dict | None) -> str:
    cost = state.get("projected_gpu_seconds")
    if projected is None:
        why = (f"its count failed ({html.escape(str(cost['error']))})" if isinstance(cost, dict) and "error" in cost
               else "the run records none")
        return f"<p class='note'>No projected GPU cost: {why} (<code>projected_gpu_seconds</code> in run.json).</p>"
    record = projected["record"]
    stages = ", ".join(f"{k} {float(v):.3g} s" for k, v in record.items() if k in PROJECTED_STAGES)
    total = record.get("total", sum(float(v) for k, v in record.items() if k in PROJECTED_STAGES))
    util = record.get("utilisation")
    paper = record.get("paper_rollout_seconds")
    return ("<p class='note'>Projected H100 time per augmented clip of the configured models at real scale "
            f"(FLOPs counted on the released architectures, <code>augment.gpu_cost</code>): "
            f"<b>{float(total):.3g} s</b> ({stages}); preset {html.escape(str(record.get('preset', '?')))}, "
            f"utilisation {format_number(util, 2)} (assumed, not measured)"
            + (f"; the paper reports ~{float(paper):g} GPU-s per 17-frame rollout" if paper is not None else "")
            + ". The hours column: those seconds times this run's units.</p>")


def timing_table(state: dict) -> str:
    """Measured time per stage, and the projected GPU time where the run records one."""
    projected = projected_gpu(state)
    header = ["stage", "units", "seconds", "s/unit", "units/hour"]
    if projected:
        header += ["projected H100 s/unit", "projected H100 hours"]
    rows = []
    for stage, t in state.get("timings", {}).items():
        per = t["seconds"] / t["units"] if t["units"] else float("nan")
        row = [stage, t["units"], f"{t['seconds']:.1f}", f"{per:.2f}",
               f"{3600 / per:.0f}" if np.isfinite(per) and per > 0 else "-"]
        if projected:
            p = projected["per_stage"].get(stage)
            row += [f"{p:.3g}", f"{p * t['units'] / 3600:.3g}"] if p is not None else ["-", "-"]
        rows.append(row)
    return "<h2 id='time'>Time per stage</h2>" + _table(header, rows) + _projected_note(state, projected)


def _link(run_dir: Path, rel: str, label: str | None = None) -> str:
    return f"<a href='{html.escape(Path(rel).as_posix(), quote=True)}'>{html.escape(label or rel)}</a>"


def dataset_links(run_dir: Path, state: dict) -> str:
    """Links (relative to the run folder) to the exported dataset's files, the mixture, the
    verdict table and the run's config."""
    items = []
    export = state.get("stages", {}).get("export", {}).get("result", {})
    path = export.get("path")
    if path:
        folder = Path(path) if Path(path).is_absolute() else run_dir / path
        try:
            rel = folder.resolve().relative_to(run_dir.resolve()).as_posix()
        except ValueError:  # an export outside the run folder: named, not linked (the page stays relocatable)
            rel = None
        episodes = export.get("episodes", 0)
        count = sum(episodes.values()) if isinstance(episodes, dict) else episodes
        if rel and folder.is_dir():
            files = " · ".join(_link(run_dir, f"{rel}/{p.name}", p.name) for p in sorted(folder.iterdir())
                               if p.is_file() and not p.name.startswith("."))
            items.append(f"<li>exported dataset ({count} episodes, {export.get('steps', '?')} steps): "
                         f"{_link(run_dir, rel + '/', rel + '/')}<br><small>{files}</small></li>")
        else:
            items.append(f"<li>exported dataset: <code>{html.escape(str(path))}</code> (not in this folder)</li>")
    merge = state.get("stages", {}).get("merge", {}).get("result", {})
    for key in ("mixture", "merged"):
        if isinstance(merge.get(key), str) and (run_dir / merge[key]).exists():
            items.append(f"<li>{key}: {_link(run_dir, merge[key])}</li>")
    for rel in ("verdicts.parquet", "kept.txt", "config.yaml", "manifest/run.json"):
        if (run_dir / rel).exists():
            items.append(f"<li>{_link(run_dir, rel)}</li>")
    return "<h2 id='data'>Outputs</h2><ul>" + "".join(items) + "</ul>" if items else ""


# -- the page ----------------------------------------------------------------------------
# the page's hand-written CSS and JavaScript (no library, no CDN), inlined so the page stands alone
PAGE_FILES = Path(__file__).with_name("report_page")


def page_asset(name: str) -> str:
    return (PAGE_FILES / name).read_text(encoding="utf-8")




def player_html(run_dir: Path, streams: list[dict], fps: int, frames: int) -> str:
    figures = []
    for s in streams:
        label = html.escape(s["label"])
        if s["unit"]:
            label = f"<a href='#unit-list' title='{html.escape(s['unit'], quote=True)}'>{label}</a>"
        still = (f"<img src='{html.escape(s['still'], quote=True)}' alt='first frame'>" if s["still"] else "")
        video = (f"<video src='{html.escape(s['video'], quote=True)}' muted loop playsinline preload='auto'></video>"
                 if s["video"] else "<div class='note'>no video</div>")
        figures.append(f"<figure>{still}{video}<figcaption>{label}</figcaption></figure>")
    speeds = "".join(f"<option value='{r}'{' selected' if r == 1 else ''}>{r}x</option>" for r in (0.25, 0.5, 1, 2))
    return (f"<div class='player' data-fps='{fps}' data-frames='{frames}'>"
            f"<div class='streams'>{''.join(figures)}</div>"
            f"<div class='controls'><button class='play' type='button'>&#9654; play</button>"
            f"<input class='seek' type='range' min='0' max='{max(frames - 1, 0)}' value='0'>"
            f"<span class='frame'>frame 0 / {max(frames - 1, 0)}</span>"
            f"<label>speed <select class='speed'>{speeds}</select></label> <span class='note'>{fps} fps</span>"
            f"</div></div>")


def _replay_records(run_dir: Path, units: dict) -> dict[str, dict]:
    """episode key -> the ``"replay"`` metrics of its replay unit's ``rollout.json``."""
    out = {}
    for unit_id, rec in units.items():
        path = run_dir / "rollouts" / unit_id / "rollout.json"
        if is_replay(rec) and path.exists():
            out[rec["episode"]] = json.loads(path.read_text()).get("replay") or {"error": "no metrics recorded"}
    return out


def _saved_config(run_dir: Path) -> dict:
    path = run_dir / "config.yaml"
    return (yaml.safe_load(path.read_text()) or {}) if path.exists() else {}


def _models_line(config: dict) -> str:
    if not config:
        return ""
    rollout, ff = config.get("rollout", {}), config.get("first_frames", {})
    world = rollout.get("model", "")
    if rollout.get("transformer"):
        world += f" (transformer {rollout['transformer']})"
    return (f"<p>world model: <code>{html.escape(str(world))}</code>; first frames: "
            f"<code>{html.escape(str(ff.get('flux', '')))}</code> + "
            f"{len(ff.get('controlnets', []))} ControlNet(s); replay variant: "
            f"{'on' if ff.get('replay') else 'off'}</p>")


def _read_verdicts(run_dir: Path) -> dict[str, dict]:
    folder = run_dir / "verdicts"
    out = {}
    for path in sorted(folder.glob("*.json")) if folder.exists() else []:
        try:
            verdict = json.loads(path.read_text())
        except (OSError, ValueError):  # a damaged verdict: the unit shows as not scored
            continue
        out[verdict.get("clip", path.stem)] = verdict
    return out


def write_report(run_dir, max_sheets: int = 50) -> Path:
    """Write ``RUN/report.html`` and ``RUN/report/``; ``max_sheets``: at most this many
    episodes get their viewer (videos, GIF, contact sheet), the table lists every unit."""
    run_dir = Path(run_dir)
    shards = all_shards(run_dir)
    episodes = {k: v for s in shards for k, v in s["episodes"].items()}
    units = {k: v for s in shards for k, v in s["units"].items()}
    state = RunState(run_dir).data
    config = _saved_config(run_dir)
    fps = int(config.get("rollout", {}).get("fps", 5))
    stages: dict[str, int] = {}
    for rec in units.values():
        stages[rec["stage"]] = stages.get(rec["stage"], 0) + 1
    kept = set((run_dir / "kept.txt").read_text().split()) if (run_dir / "kept.txt").exists() else set()
    assets = run_dir / ASSETS
    # the run folder's name only: the page is moved and copied with it
    parts = [f"<h1>orv-augment run <code>{html.escape(run_dir.resolve().name)}</code></h1>", _models_line(config)]
    nav = ["<a href='#counts'>counts</a>", "<a href='#time'>time</a>", "<a href='#unit-list'>units</a>"]

    skipped = {k: v for k, v in episodes.items() if v["status"] == "skipped"}
    replay_units = sum(1 for rec in units.values() if is_replay(rec))
    parts.append("<h2 id='counts'>Counts</h2>" + _table(
        ["source episodes", "skipped episodes", "units", "of which replay", *sorted(stages), "kept"],
        [[len(episodes), len(skipped), len(units), replay_units, *(stages[s] for s in sorted(stages)), len(kept)]]))
    parts.append(timing_table(state))
    links = dataset_links(run_dir, state)
    if links:
        parts.append(links)
        nav.append("<a href='#data'>outputs</a>")
    run_stages = state.get("stages", {})
    if run_stages:
        rows = []
        for name, record in run_stages.items():
            result = record.get("result") or {}
            shown = "; ".join(f"{k}: {json.dumps(v) if isinstance(v, (dict, list)) else v}" for k, v in result.items())
            rows.append([name, record.get("status", ""), shown])
        parts.append("<h2>Run-wide stages</h2>" + _table(["stage", "status", "result"], rows))
    if skipped:
        parts.append(f"<h2>Skipped source episodes ({len(skipped)})</h2>" + _table(
            ["key", "episode", "reason"], [[k, v["episode_id"], v["reason"]] for k, v in sorted(skipped.items())]))
    reader_skips = [(reason, n, "; ".join(s.get("reader_skips", {}).get("examples", {}).get(reason, [])))
                    for s in shards for reason, n in s.get("reader_skips", {}).get("counts", {}).items()]
    if reader_skips:
        parts.append("<h2>Unreadable source records</h2>" + _table(["reason", "count", "where"], reader_skips))
    failed = {k: v for k, v in units.items() if v["stage"] == FAILED}
    if failed:
        parts.append(f"<h2>Failed units ({len(failed)})</h2>" + _table(
            ["unit", "error"], [[k, v["error"]] for k, v in sorted(failed.items())]))

    replays = _replay_records(run_dir, units)
    verdicts = _read_verdicts(run_dir)
    replay_selected = bool(config.get("export", {}).get("replay"))
    header, rows = unit_rows(run_dir, units, episodes, verdicts, kept, replays, replay_selected)
    decisions = sorted({d for d, _ in rows})
    options = "".join(f"<option value='{html.escape(d, quote=True)}'>{html.escape(d)}</option>" for d in decisions)
    parts.append(
        f"<h2 id='unit-list'>Units ({len(rows)})</h2>"
        "<p class='note'>Click a header to sort (again: reverse; empty cells last). Check values in red failed "
        "their threshold (the cell's tooltip says how).</p>"
        "<div class='tablebar'><input id='unit-filter' type='search' placeholder='filter: text in any column'> "
        f"<select id='decision-filter'><option value=''>every decision</option>{options}</select> "
        "<span id='unit-count'></span></div>"
        "<div class='tablewrap'><table id='units' class='sortable'><thead><tr>"
        + "".join(f"<th>{html.escape(h)}</th>" for h in header)
        + "</tr></thead><tbody>" + "".join(r for _, r in rows) + "</tbody></table></div>")

    if verdicts:
        hist = histograms(list(verdicts.values()), assets / "scores.png")
        if hist:
            parts.append(f"<h2 id='scores'>Scores and checks</h2><img class='plot' src='{ASSETS}/{hist.name}'>")
            nav.append("<a href='#scores'>histograms</a>")

    if replays:
        mean = mean_replay_metrics(list(replays.values()))
        parts.append(
            "<h2 id='replay'>Replay: ground truth vs rollout</h2>"
            "<p>Each episode rolled out from its own recorded first frame with its own actions and maps "
            "(unit <code>KEY__replay</code>), compared with the recorded frames resized to the rollout size; "
            "frame 0 (the given frame) left out, per frame on RGB uint8, then the mean over the clip and "
            "over clips.</p>"
            f"<p><b>run-wide mean over {mean['clips']} replay clip(s): PSNR {format_number(mean['psnr'], 2)} dB, "
            f"SSIM {format_number(mean['ssim'], 3)}</b></p>")
        curves = replay_curves(list(replays.values()), assets / "replay_curves.png")
        if curves:
            parts.append(f"<img class='plot' src='{ASSETS}/{curves.name}'>")
        parts.append(_table(["episode", "id", "PSNR (dB)", "SSIM", "frames compared", "note"], [
            [k, episodes.get(k, {}).get("episode_id", ""), format_number(r.get("psnr"), 2), format_number(r.get("ssim"), 3),
             r.get("frames_compared", 0), r.get("error", "")] for k, r in sorted(replays.items())]))
        nav.append("<a href='#replay'>replay</a>")

    by_episode: dict[str, dict] = {}
    for unit_id, rec in units.items():
        by_episode.setdefault(rec["episode"], {})[unit_id] = rec
    sections = []
    for key in sorted(by_episode)[:max_sheets]:
        try:
            source = load_source(run_dir, key)
        except FileNotFoundError:
            continue
        head = (f"<section class='episode' id='ep-{html.escape(key, quote=True)}'>"
                f"<h3>{html.escape(key)} ({html.escape(episodes.get(key, {}).get('episode_id', ''))})</h3>"
                f"<p>{html.escape(source.instruction)}</p>")
        if key in replays and "error" not in replays[key]:
            r = replays[key]
            head += (f"<p>{REPLAY} vs ground truth: PSNR {format_number(r['psnr'], 2)} dB, SSIM {format_number(r['ssim'], 3)}"
                     f" ({r['frames_compared']} frames)</p>")
        streams = episode_streams(run_dir, source, by_episode[key], fps)
        head += player_html(run_dir, streams, fps, len(source))
        static = ""
        gif = comparison_gif(run_dir, source, by_episode[key], assets / f"compare_{key}.gif", fps)
        if gif:
            static += f"<img src='{ASSETS}/{gif.name}'><br>"
        sheet = contact_sheet(run_dir, key, by_episode[key], assets / f"sheet_{key}.png", source)
        if sheet:
            static += f"<img src='{ASSETS}/{sheet.name}'>"
        if static:
            head += f"<details><summary>Contact sheets and animated GIF (static copies)</summary>{static}</details>"
        sections.append(head + "</section>")
    if sections:
        nav.append("<a href='#episodes'>episodes</a>")
        more = len(by_episode) - max_sheets
        parts.append("<h2 id='episodes'>Episodes: source, condition maps, painted first frames, rollouts</h2>"
                     "<p class='note'>Each column: its first frame, then its video; the videos of an episode play "
                     "in sync under one control.</p>"
                     + (f"<p class='note'>{more} more episode(s) not shown (max_sheets={max_sheets}).</p>"
                        if more > 0 else "") + "".join(sections))
    path = run_dir / "report.html"
    atomic_write_text(path, "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
                            "<meta name='viewport' content='width=device-width'><title>orv-augment report</title>"
                            f"<style>{page_asset('viewer.css')}</style></head><body><nav>{''.join(nav)}</nav>{''.join(parts)}"
                            f"<script>{page_asset('viewer.js')}</script></body></html>")
    return path

"""``RUN/report.html``: what a run made, what it dropped or skipped, and what it cost.

Self-contained HTML (images next to it in ``RUN/report/``): the models used, counts per
stage, time per stage (seconds per unit, units per hour), skipped episodes with reasons,
failed units with their errors, histograms of the scores and cheap-check values once the
scoring stage has run, and per source episode:

- the replay's PSNR/SSIM against the ground truth (:mod:`augment.replay`), with the run-wide
  means and their course over the frames (a plot) in a section of their own;
- an animated GIF, side by side: ground truth | replay rollout | each painted variant's
  rollout (the ground truth is the source's recorded frames at the rollout size, resized
  exactly as the replay's first frame was: ``augment.sources.ground_truth_frames``);
- a contact sheet: source first frame and its depth and semantic maps, then one row each for
  the ground truth, the replay and every painted variant (first frame, then frames of the
  rollout at the same time steps in every row).
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import yaml
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from augment.manifest import RunState, all_shards
from augment.replay import REPLAY, is_replay, mean_replay_metrics, variant_label, variant_order
from augment.sources import load_source
from augment.unit_work import first_frame_path
from orv_engine.atomic_files import atomic_write_text
from orv_engine.occupancy.condition_images import depth_image, semantic_image

TILE = 128  # contact-sheet tile height in pixels
SHEET_STEPS = 4  # columns of a contact-sheet row: the first frame and 3 later time steps


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


def _rollout_frames(run_dir: Path, unit_id: str) -> np.ndarray | None:
    clip = run_dir / "rollouts" / unit_id / "clip.npz"
    if not clip.exists():
        return None
    with np.load(clip) as data:
        return data["frames"]


def _sheet_steps(length: int) -> list[int]:
    return sorted(set(np.linspace(0, length - 1, SHEET_STEPS).round().astype(int).tolist()))


def _stack(rows: list[list[Image.Image]]) -> Image.Image:
    images = [_row(r) for r in rows]
    sheet = Image.new("RGB", (max(i.width for i in images), sum(i.height + 2 for i in images)), (255, 255, 255))
    y = 0
    for i in images:
        sheet.paste(i, (0, y))
        y += i.height + 2
    return sheet


def contact_sheet(run_dir: Path, key: str, units: dict, out: Path, source=None) -> Path | None:
    """Source first frame + maps on the first row, then ground truth, the replay and one row
    per painted variant, each at the same time steps."""
    if source is None:
        try:
            source = load_source(run_dir, key)
        except FileNotFoundError:
            return None
    rows = [[_tile(source.first_frame, "source")]]
    if "depth" in source.conditions:
        rows[0].append(_tile(depth_image(source.conditions["depth"][:1])[0], "depth"))
    if "semantics" in source.conditions:
        rows[0].append(_tile(semantic_image(source.conditions["semantics"][:1])[0], "semantics"))
    steps = _sheet_steps(len(source))
    if source.frames is not None:
        rows.append([_tile(source.frames[t], f"truth t={t}") for t in steps])
    for unit_id, rec in sorted(units.items(), key=lambda kv: variant_order(kv[1])):
        tiles = []
        name = variant_label(rec)
        ff = first_frame_path(run_dir, unit_id)
        if ff.exists():
            tiles.append(_tile(np.asarray(Image.open(ff).convert("RGB")), f"{name} first"))
        frames = _rollout_frames(run_dir, unit_id)
        if frames is not None:
            tiles += [_tile(frames[t], f"{name} t={t}") for t in steps[1:] if t < len(frames)]
        if tiles:
            rows.append(tiles)
    out.parent.mkdir(parents=True, exist_ok=True)
    _stack(rows).save(out)
    return out


def comparison_gif(run_dir: Path, source, units: dict, out: Path, fps: int = 5) -> Path | None:
    """Animated, side by side: ground truth | replay rollout | painted variants' rollouts."""
    videos = []
    if source.frames is not None:
        videos.append(("ground truth", source.frames))
    for unit_id, rec in sorted(units.items(), key=lambda kv: variant_order(kv[1])):
        frames = _rollout_frames(run_dir, unit_id)
        if frames is not None:
            videos.append((variant_label(rec), frames))
    if len(videos) < 2:
        return None
    length = min(len(v) for _, v in videos)
    # fast octree palette per frame, no dithering: Pillow's default quantizer takes ~100x longer
    images = [_row([_tile(v[t], f"{name} t={t}") for name, v in videos]).quantize(
        256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE) for t in range(length)]
    out.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(out, save_all=True, append_images=images[1:], duration=round(1000 / max(fps, 1)), loop=0)
    return out


def replay_curves(records: list[dict], out: Path) -> Path | None:
    """Mean PSNR and SSIM of the replay rollouts per frame index (how fast they drift)."""
    records = [r for r in records if r and "error" not in r]
    if not records:
        return None
    fig = Figure(figsize=(7.0, 2.6))
    axes = fig.subplots(1, 2, squeeze=False)[0]
    for ax, key, name in ((axes[0], "psnr_frames", "PSNR (dB)"), (axes[1], "ssim_frames", "SSIM")):
        length = max(len(r[key]) for r in records)
        means = []
        for t in range(length):
            values = [r[key][t] for r in records if t < len(r[key]) and r[key][t] is not None]
            means.append(float(np.mean(values)) if values else np.nan)
        first = records[0]["skip_first_frames"]
        ax.plot(range(first, first + length), means, marker=".", color="#4477aa")
        ax.set_title(f"replay vs ground truth: {name}", fontsize=9)
        ax.set_xlabel("frame", fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    return out


def _fmt(x, digits: int) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


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


def write_report(run_dir, max_sheets: int = 50) -> Path:
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
    parts = [f"<h1>orv-augment run</h1><p>{html.escape(str(run_dir.resolve()))}</p>", _models_line(config)]

    skipped = {k: v for k, v in episodes.items() if v["status"] == "skipped"}
    replay_units = sum(1 for rec in units.values() if is_replay(rec))
    parts.append("<h2>Counts</h2>" + _table(
        ["source episodes", "skipped episodes", "units", "of which replay", *sorted(stages), "kept"],
        [[len(episodes), len(skipped), len(units), replay_units, *(stages[s] for s in sorted(stages)), len(kept)]]))

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

    replays = _replay_records(run_dir, units)
    if replays:
        mean = mean_replay_metrics(list(replays.values()))
        parts.append(
            "<h2>Replay: ground truth vs rollout</h2>"
            "<p>Each episode rolled out from its own recorded first frame with its own actions and maps "
            "(unit <code>KEY__replay</code>), compared with the recorded frames resized to the rollout size; "
            "frame 0 (the given frame) left out, per frame on RGB uint8, then the mean over the clip and "
            "over clips.</p>"
            f"<p><b>run-wide mean over {mean['clips']} replay clip(s): PSNR {_fmt(mean['psnr'], 2)} dB, "
            f"SSIM {_fmt(mean['ssim'], 3)}</b></p>")
        curves = replay_curves(list(replays.values()), run_dir / "report" / "replay_curves.png")
        if curves:
            parts.append(f"<img src='report/{curves.name}'>")
        parts.append(_table(["episode", "id", "PSNR (dB)", "SSIM", "frames compared", "note"], [
            [k, episodes.get(k, {}).get("episode_id", ""), _fmt(r.get("psnr"), 2), _fmt(r.get("ssim"), 3),
             r.get("frames_compared", 0), r.get("error", "")] for k, r in sorted(replays.items())]))

    verdict_dir = run_dir / "verdicts"
    verdicts = [json.loads(p.read_text()) for p in sorted(verdict_dir.glob("*.json"))] if verdict_dir.exists() else []
    if verdicts:
        hist = histograms(verdicts, run_dir / "report" / "scores.png")
        if hist:
            parts.append(f"<h2>Scores and checks</h2><img src='report/{hist.name}'>")

        replay_selected = bool(config.get("export", {}).get("replay"))

        def decision(clip: str) -> str:
            if clip in kept:
                return "keep"
            return "replay (evaluation)" if is_replay(units.get(clip, {})) and not replay_selected else "drop"

        parts.append(_table(["unit", "keep", "final score", "caption", "reason"], [
            [v["clip"], decision(v["clip"]), v.get("final_score"), v.get("caption") or "", v.get("reason") or ""]
            for v in verdicts]))

    parts.append("<h2>Contact sheets: ground truth | replay | painted variants</h2>")
    by_episode: dict[str, dict] = {}
    for unit_id, rec in units.items():
        by_episode.setdefault(rec["episode"], {})[unit_id] = rec
    for key in sorted(by_episode)[:max_sheets]:
        try:
            source = load_source(run_dir, key)
        except FileNotFoundError:
            continue
        head = f"<h3>{html.escape(key)} ({html.escape(episodes.get(key, {}).get('episode_id', ''))})</h3>"
        head += f"<p>{html.escape(source.instruction)}</p>"
        if key in replays and "error" not in replays[key]:
            r = replays[key]
            head += (f"<p>{REPLAY} vs ground truth: PSNR {_fmt(r['psnr'], 2)} dB, SSIM {_fmt(r['ssim'], 3)}"
                     f" ({r['frames_compared']} frames)</p>")
        gif = comparison_gif(run_dir, source, by_episode[key], run_dir / "report" / f"compare_{key}.gif", fps)
        if gif:
            head += f"<img src='report/{gif.name}'><br>"
        sheet = contact_sheet(run_dir, key, by_episode[key], run_dir / "report" / f"sheet_{key}.png", source)
        if sheet:
            parts.append(head + f"<img src='report/{sheet.name}'>")
    style = ("<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
             "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px}img{max-width:100%}</style>")
    path = run_dir / "report.html"
    atomic_write_text(path, f"<!doctype html><html><head><meta charset='utf-8'><title>orv-augment report</title>"
                            f"{style}</head><body>{''.join(parts)}</body></html>")
    return path

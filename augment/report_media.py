"""The media of ``RUN/report.html``: contact sheets, the side-by-side GIF, score histograms,
replay curves, and the per-episode streams (first frames and H.264 videos) the page plays in
sync. :mod:`augment.report` writes the page around them; every file lands in ``RUN/report/``.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import imageio_ffmpeg
import numpy as np
from matplotlib.figure import Figure
from PIL import Image, ImageDraw

from augment.replay import is_replay, variant_label, variant_order
from augment.sources import load_source
from augment.unit_work import first_frame_path
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


def format_number(x, digits: int) -> str:
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


VIDEO_MIN_HEIGHT = 192  # videos are upscaled (nearest, integer factor) to at least this height
ASSETS = "report"  # RUN/report/: every file the page links to, beside report.html


# -- videos ------------------------------------------------------------------------------
def write_video(frames: np.ndarray, out: Path, fps: int) -> Path:
    """``(T, H, W, 3)`` (or ``(T, H, W)``) uint8 frames -> an H.264 mp4 browsers play.

    yuv420p (the pixel format every browser decodes), ``+faststart`` (the index first: the
    page can show the first frame before the whole file is read), upscaled by an integer
    factor with nearest neighbours to at least :data:`VIDEO_MIN_HEIGHT` rows so that small
    rollouts stay sharp and 4:2:0 chroma does not smear the semantic map's colours; padded
    to even sizes (4:2:0 needs them). Written under a temporary name, then renamed."""
    frames = np.asarray(frames, np.uint8)
    if frames.ndim == 3:
        frames = np.repeat(frames[..., None], 3, axis=-1)
    factor = max(1, math.ceil(VIDEO_MIN_HEIGHT / frames.shape[1]))
    frames = frames.repeat(factor, axis=1).repeat(factor, axis=2)
    pad = ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0))
    frames = np.pad(frames, pad, mode="edge")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")  # a killed run's leftover is removed on resume (".*.tmp")
    writer = imageio_ffmpeg.write_frames(
        str(tmp), (frames.shape[2], frames.shape[1]), fps=max(int(fps), 1), codec="libx264",
        pix_fmt_out="yuv420p", quality=None, macro_block_size=1,
        output_params=["-crf", "18", "-preset", "veryfast", "-movflags", "+faststart", "-f", "mp4"])
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(frame))
    writer.close()
    os.replace(tmp, out)
    return out


def _fresh(out: Path, *inputs: Path) -> bool:
    """``out`` exists and is newer than every existing input (the report is rewritten on every
    run; unchanged videos are not encoded again)."""
    if not out.is_file():
        return False
    mtime = out.stat().st_mtime
    return all(not p.exists() or p.stat().st_mtime <= mtime for p in inputs)


def _save_png(image: np.ndarray, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(image, np.uint8)).save(out)
    return out


def episode_streams(run_dir: Path, source, units: dict, fps: int) -> list[dict]:
    """The columns of an episode's viewer: ``{"label", "still", "video", "unit"}`` with paths
    relative to the run folder (``None`` where there is nothing). Ground truth, the condition
    maps, the replay, then the painted variants in order."""
    folder = run_dir / ASSETS / source.key
    source_files = [run_dir / "sources" / source.key / "source.npz"]
    streams = []

    def add(label, still, video_frames, name, inputs, unit=None):
        still_path = video_path = None
        if still is not None:
            still_path = folder / f"{name}.png"
            if not _fresh(still_path, *inputs):
                _save_png(still, still_path)
        if video_frames is not None:
            video_path = folder / f"{name}.mp4"
            if not _fresh(video_path, *inputs):
                write_video(video_frames(), video_path, fps)
        streams.append({"label": label, "unit": unit,
                        "still": still_path.relative_to(run_dir).as_posix() if still_path else None,
                        "video": video_path.relative_to(run_dir).as_posix() if video_path else None})

    add("ground truth", source.first_frame, (lambda: source.frames) if source.frames is not None else None,
        "truth", source_files)
    if "depth" in source.conditions:
        depth = source.conditions["depth"]
        add("depth (condition)", depth_image(depth[:1])[0], lambda: depth_image(depth), "depth", source_files)
    if "semantics" in source.conditions:
        sem = source.conditions["semantics"]
        add("semantics (condition)", semantic_image(sem[:1])[0], lambda: semantic_image(sem), "semantics",
            source_files)
    for unit_id, rec in sorted(units.items(), key=lambda kv: variant_order(kv[1])):
        ff = first_frame_path(run_dir, unit_id)
        clip = run_dir / "rollouts" / unit_id / "clip.npz"
        still = np.asarray(Image.open(ff).convert("RGB")) if ff.is_file() else None
        frames = (lambda c=clip: _rollout_frames(run_dir, c.parent.name)) if clip.is_file() else None
        name = variant_label(rec)
        label = "replay: recorded first frame, rollout" if is_replay(rec) else f"{name}: painted first frame, rollout"
        if still is None and frames is None:
            continue
        add(label, still, frames, name, [ff, clip], unit_id)
    return streams

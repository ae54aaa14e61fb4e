"""``STORE/report/index.html``: what an occupancy store holds, readable offline.

Counts by status, every skipped or flagged episode with its reason, the consistency score
distribution (an inline SVG histogram), the label set, and for a few sampled episodes the
recorded RGB next to the depth and semantic maps rendered back from their occupancy (first,
middle and last frame) — the check a user makes before training on a store.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
from PIL import Image

from orv_engine.atomic_files import atomic_write_text
from orv_engine.data.clips import resize_frames
from orv_engine.data.rlds_reader import RLDSReader
from orv_engine.data.sharding import episode_key
from orv_engine.occupancy.consistency import depth_to_images, semantics_to_images
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.from_rgb.pipeline import rendered_maps
from orv_engine.occupancy.store.store import DONE, FLAGGED, SKIPPED, OccupancyStore

PREVIEW_SHORT_SIDE = 128


def _histogram_svg(values, bins: int = 20, width: int = 360, height: int = 120) -> str:
    if not values:
        return "<p>no consistency scores (consistency.raft_weights not set)</p>"
    counts, edges = np.histogram(np.asarray(values, dtype=np.float64), bins=bins)
    bar_w = width / bins
    top = max(int(counts.max()), 1)
    bars = "".join(
        f'<rect x="{i * bar_w:.1f}" y="{height - c / top * (height - 14):.1f}" width="{bar_w - 1:.1f}" '
        f'height="{c / top * (height - 14):.1f}" fill="#4a7bd0"><title>{edges[i]:.4f}-{edges[i + 1]:.4f}: {c}'
        f'</title></rect>' for i, c in enumerate(counts))
    return (f'<svg width="{width}" height="{height + 16}" role="img" aria-label="consistency histogram">{bars}'
            f'<text x="0" y="{height + 14}" font-size="11">{edges[0]:.4f}</text>'
            f'<text x="{width}" y="{height + 14}" font-size="11" text-anchor="end">{edges[-1]:.4f}</text></svg>')


def _sample_frames(config, keys: list[str]) -> dict[str, np.ndarray]:
    """The recorded frames of ``keys`` (read again from the dataset: the store keeps no RGB)."""
    ds = config.dataset
    reader = RLDSReader(ds.path, dataset=ds.dataset, split=ds.split, cameras=[ds.camera] if ds.camera else None)
    wanted, out = set(keys), {}
    for file_index, file in enumerate(reader.files):
        for episode in reader.iter_shard(file_index, keep=lambda i, f=file: episode_key(f, i) in wanted):
            out[episode_key(file, episode.meta.index_in_file)] = episode.frames[reader.cameras[0]]
        if len(out) == len(wanted):
            break
    return out


def _preview(store: OccupancyStore, key: str, frames: np.ndarray, folder: Path) -> str:
    result = store.read_episode(key, include_flagged=True)
    height, width = result.image_size
    scale = PREVIEW_SHORT_SIDE / min(height, width)
    h, w = round(height * scale), round(width * scale)
    steps = sorted({0, result.occupancy.num_frames // 2, result.occupancy.num_frames - 1})
    maps = rendered_maps(result, h, w, steps)
    rgb = resize_frames(frames[steps], h, w)
    depth = (depth_to_images(maps["depth"], valid=maps["depth"] > 0) * 255).astype(np.uint8)
    semantics = (semantics_to_images(maps["semantics"], len(result.occupancy.label_names) or None) * 255).astype(np.uint8)
    rows = [np.concatenate([rgb[i], depth[i], semantics[i]], axis=1) for i in range(len(steps))]
    name = f"{key}.png"
    Image.fromarray(np.concatenate(rows, axis=0)).save(folder / name)
    return name


def write_report(store: OccupancyStore, config, sample: int | None = None) -> Path:
    folder = store.root / "report"
    folder.mkdir(parents=True, exist_ok=True)
    records = store.records()
    counts: dict[str, int] = {}
    for record in records.values():
        counts[record.get("status", "?")] = counts.get(record.get("status", "?"), 0) + 1
    scores = [r["consistency"] for r in records.values() if r.get("consistency") is not None]
    sample = config.report_episodes if sample is None else sample
    shown = sorted(k for k, r in records.items() if r.get("status") in (DONE, FLAGGED) and store.has_episode(k))
    shown = [shown[i] for i in np.linspace(0, len(shown) - 1, min(sample, len(shown))).round().astype(int)] if shown else []
    previews, preview_errors = [], []
    if shown:
        frames = _sample_frames(config, shown)
        for key in shown:
            try:
                previews.append((key, _preview(store, key, frames[key], folder)))
            except (OccupancyInputError, KeyError) as err:
                preview_errors.append((key, str(err)))
    label_set = store.label_set()
    esc = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>occupancy store</title>",
             "<style>body{font-family:sans-serif;margin:2em}td,th{padding:2px 8px;text-align:left}"
             "img{image-rendering:pixelated}</style></head><body>",
             f"<h1>Occupancy store <code>{esc(store.root.name)}</code></h1>",
             f"<p>dataset <code>{esc(config.dataset.path)}</code>, depth <b>{esc(config.depth.kind)}</b>, "
             f"instances <b>{esc(config.segmenter.kind)}</b>, voxel {config.voxel_size}</p>",
             "<h2>Episodes</h2><table><tr><th>status</th><th>episodes</th></tr>",
             *(f"<tr><td>{esc(k)}</td><td>{v}</td></tr>" for k, v in sorted(counts.items())),
             f"<tr><th>all</th><th>{len(records)}</th></tr></table>",
             "<h2>Consistency (RAFT warping error of the rendered depth; lower is steadier)</h2>",
             _histogram_svg(scores)]
    if label_set is not None:
        parts.append(f"<h2>Label set ({len(label_set.names)})</h2><p>{esc(', '.join(label_set.names))}</p>")
    parts.append("<h2>Sampled episodes: RGB | rendered depth | rendered semantics (first, middle, last frame)</h2>")
    for key, image in previews:
        record = records[key]
        parts.append(f"<h3>{esc(key)} <small>{esc(record.get('episode_id', ''))} · {esc(record.get('status'))} · "
                     f"consistency {record.get('consistency')}</small></h3><img src='{esc(image)}' alt='{esc(key)}'>")
    for key, error in preview_errors:
        parts.append(f"<p>{esc(key)}: no preview ({esc(error)})</p>")
    skipped = sorted((k, r) for k, r in records.items() if r.get("status") in (SKIPPED, FLAGGED))
    parts.append(f"<h2>Skipped and flagged ({len(skipped)})</h2><table><tr><th>key</th><th>episode</th>"
                 "<th>status</th><th>reason</th></tr>")
    parts += [f"<tr><td>{esc(k)}</td><td>{esc(r.get('episode_id') or '')}</td><td>{esc(r.get('status'))}</td>"
              f"<td>{esc(r.get('reason') or '')}</td></tr>" for k, r in skipped]
    parts.append("</table></body></html>")
    path = folder / "index.html"
    atomic_write_text(path, "\n".join(parts))
    return path

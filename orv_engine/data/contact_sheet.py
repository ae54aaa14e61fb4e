"""A contact sheet: one row per clip, a few frames across, labelled. For a quick look."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from orv_engine.data.clips import Clip


# Colours of semantic labels (index % len); background (-1) is black.
_PALETTE = np.array([[70, 70, 70], [160, 120, 60], [210, 210, 210], [220, 40, 40], [40, 170, 70],
                     [240, 200, 30], [40, 90, 220], [170, 60, 200], [60, 200, 200], [250, 140, 40]], np.uint8)


def condition_rows(clip: Clip) -> list[np.ndarray]:
    """Extra rows of (F, H, W, 3) images for a clip's depth and semantic condition maps."""
    rows = []
    depth = clip.conditions.get("depth")
    if depth is not None:
        valid = depth > 0
        lo, hi = (np.percentile(depth[valid], [2, 98]) if valid.any() else (0.0, 1.0))
        gray = np.where(valid, 1.0 - np.clip((depth - lo) / max(hi - lo, 1e-6), 0, 1), 0.0)
        rows.append((np.repeat(gray[..., None], 3, axis=-1) * 255).astype(np.uint8))
    semantics = clip.conditions.get("semantics")
    if semantics is not None:
        colours = _PALETTE[np.mod(semantics, len(_PALETTE))]
        colours[semantics < 0] = 0
        rows.append(colours)
    return rows


def contact_sheet(
    clips: Sequence[Clip],
    path: str | Path,
    *,
    frames_per_row: int = 8,
    tile: int = 96,
    label_height: int = 14,
) -> Path:
    """Write a PNG: each row shows evenly spaced real frames of one clip and its label; clips
    with condition maps (``clip.conditions``: depth, semantics) get a row for each below."""
    if not clips:
        raise ValueError("contact_sheet needs at least one clip")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h0, w0 = clips[0].frames.shape[1:3]
    tile_w = tile
    tile_h = max(1, int(round(tile * h0 / w0)))
    blocks = [[clip.frames] + condition_rows(clip) for clip in clips]
    height = sum(label_height + tile_h * len(block) for block in blocks)
    sheet = Image.new("RGB", (frames_per_row * tile_w, height), "white")
    draw = ImageDraw.Draw(sheet)
    y = 0
    for clip, block in zip(clips, blocks):
        n = clip.num_real_frames
        picks = np.linspace(0, n - 1, num=min(frames_per_row, n)).round().astype(int)
        label = f"{clip.episode_id.split('/')[-1]} @{clip.start}: {clip.instruction}"[:120]
        draw.text((2, y + 1), label, fill="black")
        y += label_height
        for images in block:
            for col, k in enumerate(picks):
                image = Image.fromarray(images[k]).resize((tile_w, tile_h), Image.NEAREST if images is not clip.frames else Image.BILINEAR)
                sheet.paste(image, (col * tile_w, y))
            y += tile_h
    sheet.save(path)
    return path

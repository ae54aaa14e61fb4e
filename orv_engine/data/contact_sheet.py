"""A contact sheet: one row per clip, a few frames across, labelled. For a quick look."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from orv_engine.data.clips import Clip


def contact_sheet(
    clips: Sequence[Clip],
    path: str | Path,
    *,
    frames_per_row: int = 8,
    tile: int = 96,
    label_height: int = 14,
) -> Path:
    """Write a PNG: each row shows evenly spaced real frames of one clip and its label."""
    if not clips:
        raise ValueError("contact_sheet needs at least one clip")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    h0, w0 = clips[0].frames.shape[1:3]
    tile_w = tile
    tile_h = max(1, int(round(tile * h0 / w0)))
    row_h = tile_h + label_height
    sheet = Image.new("RGB", (frames_per_row * tile_w, len(clips) * row_h), "white")
    draw = ImageDraw.Draw(sheet)
    for row, clip in enumerate(clips):
        real = clip.frames[: clip.num_real_frames]
        picks = np.linspace(0, len(real) - 1, num=min(frames_per_row, len(real))).round().astype(int)
        y = row * row_h
        label = f"{clip.episode_id.split('/')[-1]} @{clip.start}: {clip.instruction}"[:120]
        draw.text((2, y + 1), label, fill="black")
        for col, k in enumerate(picks):
            image = Image.fromarray(real[k]).resize((tile_w, tile_h), Image.BILINEAR)
            sheet.paste(image, (col * tile_w, y + label_height))
    sheet.save(path)
    return path

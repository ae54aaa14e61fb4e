"""A contact sheet: one row per clip, a few frames across, labelled. For a quick look."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from orv_engine.data.clips import Clip
from orv_engine.occupancy.condition_images import depth_image, semantic_image


def condition_rows(clip: Clip) -> list[np.ndarray]:
    """Extra rows of (F, H, W, 3) images for a clip's depth and semantic condition maps,
    drawn as the VAE sees them (:mod:`orv_engine.occupancy.condition_images`)."""
    rows = []
    if clip.conditions.get("depth") is not None:
        rows.append(depth_image(clip.conditions["depth"]))
    if clip.conditions.get("semantics") is not None:
        rows.append(semantic_image(clip.conditions["semantics"]))
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

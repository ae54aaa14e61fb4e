"""Write generated videos to mp4 (imageio-ffmpeg), the format reviewers and the report use."""

from __future__ import annotations

from pathlib import Path

import imageio.v2 as imageio
import numpy as np


def save_mp4(frames, path: str | Path, fps: int = 5) -> Path:
    """frames: (F, H, W, 3) float in [0, 1] or uint8, or a list of PIL images -> ``path``."""
    if isinstance(frames, (list, tuple)) and frames and hasattr(frames[0], "convert"):
        array = np.stack([np.asarray(f.convert("RGB")) for f in frames])
    else:
        array = np.asarray(frames)
        if array.dtype != np.uint8:
            array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    if array.ndim != 4 or array.shape[-1] != 3:
        raise ValueError(f"frames must be (F, H, W, 3), got shape {array.shape}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # macro_block_size=1: keep small test videos at their size instead of padding to 16.
    with imageio.get_writer(str(path), fps=fps, codec="libx264", macro_block_size=1) as writer:
        for frame in array:
            writer.append_data(frame)
    return path

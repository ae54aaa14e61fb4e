"""RAFT temporal-consistency score of rendered condition sequences, used to drop sequences
whose conditions flicker (ORV-Data: "RAFT filters rendered data with poor inter-frame
consistency").

torchvision's RAFT (weights from a local state_dict file) estimates the flow from frame t
to t+1; frame t+1 is warped back with it (``grid_sample``) and compared with frame t. The
score of a pair is the mean absolute warping error over pixels that stay inside the image
(images in [0, 1]); the sequence score is the mean over pairs — lower is more consistent.
Flicker that no motion explains (popping Gaussians, label swaps) leaves a residual.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.optical_flow import raft_large, raft_small

from orv_engine.occupancy.errors import OccupancyInputError

MIN_SIZE = 128  # RAFT's feature pyramid needs at least 128 x 128 pixels


@dataclass
class ConsistencyScore:
    pair_errors: np.ndarray  # (T-1,) mean warping error of each consecutive pair
    score: float  # mean of pair_errors; lower is better

    def keep(self, max_error: float) -> bool:
        return self.score <= max_error


def depth_to_images(depth, valid=None) -> np.ndarray:
    """``(T, H, W)`` depth -> ``(T, H, W, 3)`` float in [0, 1], one range for the sequence."""
    depth = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0) if valid is None else np.asarray(valid, dtype=bool)
    if not valid.any():
        return np.zeros(depth.shape + (3,), np.float32)
    lo, hi = depth[valid].min(), depth[valid].max()
    scaled = np.where(valid, (depth - lo) / max(hi - lo, 1e-12) * 0.9 + 0.1, 0.0)
    return np.repeat(scaled[..., None], 3, axis=-1).astype(np.float32)


def semantics_to_images(semantics, num_labels: int | None = None) -> np.ndarray:
    """``(T, H, W)`` label ids (negative = background) -> fixed-palette colour images."""
    semantics = np.asarray(semantics)
    count = int(num_labels or max(int(semantics.max()) + 1, 1))
    palette = np.random.default_rng(0).uniform(0.2, 1.0, size=(count, 3)).astype(np.float32)
    images = palette[np.clip(semantics, 0, count - 1)]
    images[semantics < 0] = 0.0
    return images


class RaftConsistency:
    """RAFT (``small`` or ``large``) with weights from ``weights_path`` (a torch state_dict)."""

    def __init__(self, weights_path, variant: str = "small", device: str = "cpu", num_flow_updates: int = 12):
        builders = {"small": raft_small, "large": raft_large}
        if variant not in builders:
            raise OccupancyInputError(f"variant: expected 'small' or 'large', got {variant!r}")
        path = Path(weights_path)
        if not path.is_file():
            raise OccupancyInputError(f"weights_path: {path} is not a file (a RAFT state_dict saved with torch.save)")
        self.model = builders[variant](weights=None)
        self.model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        self.model = self.model.to(device).eval()
        self.device = device
        self.num_flow_updates = num_flow_updates

    @torch.no_grad()
    def flow(self, first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        """Flow ``(B, 2, H, W)`` from ``first`` to ``second`` (``(B, 3, H, W)`` in [0, 1])."""
        height, width = first.shape[-2:]
        pad_h, pad_w = (-height) % 8, (-width) % 8  # RAFT needs sizes divisible by 8
        pad = (0, pad_w, 0, pad_h)
        a = F.pad(first * 2 - 1, pad, mode="replicate").to(self.device)
        b = F.pad(second * 2 - 1, pad, mode="replicate").to(self.device)
        flows = self.model(a, b, num_flow_updates=self.num_flow_updates)
        return flows[-1][..., :height, :width].cpu()

    def score(self, images, batch_size: int = 4) -> ConsistencyScore:
        """Score a ``(T, H, W, 3)`` sequence in [0, 1] (see ``depth_to_images``)."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise OccupancyInputError(f"images: expected (T, H, W, 3), got {images.shape}")
        if images.shape[0] < 2:
            raise OccupancyInputError(f"images: need at least 2 frames to score consistency, got {images.shape[0]}")
        height, width = images.shape[1:3]
        if height < MIN_SIZE or width < MIN_SIZE:
            raise OccupancyInputError(
                f"images: RAFT needs frames of at least {MIN_SIZE}x{MIN_SIZE} pixels, got {height}x{width}"
            )
        frames = torch.from_numpy(images).permute(0, 3, 1, 2)
        errors = []
        ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32), indexing="ij")
        for start in range(0, frames.shape[0] - 1, batch_size):
            first = frames[start:start + batch_size]
            second = frames[start + 1:start + 1 + batch_size]
            first = first[: second.shape[0]]
            flow = self.flow(first, second)
            target_x = xs + flow[:, 0]
            target_y = ys + flow[:, 1]
            grid = torch.stack([target_x / (width - 1) * 2 - 1, target_y / (height - 1) * 2 - 1], dim=-1)
            warped = F.grid_sample(second, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
            inside = ((target_x >= 0) & (target_x <= width - 1) & (target_y >= 0) & (target_y <= height - 1)).float()
            residual = (warped - first).abs().mean(1) * inside
            errors.append((residual.sum((1, 2)) / inside.sum((1, 2)).clamp(min=1)).numpy())
        pair_errors = np.concatenate(errors).astype(np.float64)
        return ConsistencyScore(pair_errors, float(pair_errors.mean()))

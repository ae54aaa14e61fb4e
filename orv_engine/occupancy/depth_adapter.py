"""Depth for RGB-only datasets (BridgeV2, RT-1) from transformers' depth-estimation models
(Depth Anything, ZoeDepth; weights from a local folder), with one scale per episode.

Monocular models are right only up to scale (relative Depth Anything even up to an affine
map of disparity), and per-frame normalisation would make the occupancy breathe over time.
So one (scale, shift) is fitted per episode — to a reference depth of one frame (MonST3R
point map, sensor) with Eq. 1 in the model's own output space — or, with no reference, set
so the reference frame's median depth is ``target_median``; then applied to every frame.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
from transformers import AutoImageProcessor, AutoModelForDepthEstimation

from orv_engine.occupancy.alignment import fit_depth_alignment
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.model_folders import read_model_folder


@dataclass
class EpisodeDepth:
    depth: np.ndarray  # (T, H, W) float32, NaN where the model gives no usable depth
    scale: float  # applied to the model output (disparity or depth), fixed per episode
    shift: float
    output_kind: str  # "disparity" or "depth": what the model predicts


class DepthAdapter:
    """A transformers depth-estimation model loaded from ``model_path`` (no hub access)."""

    def __init__(self, model_path, device: str = "cpu", output_kind: str = "auto", batch_size: int = 8):
        path, _ = read_model_folder("model_path", model_path)
        self.model = AutoModelForDepthEstimation.from_pretrained(path, local_files_only=True).to(device).eval()
        self.processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        self.device = device
        self.batch_size = batch_size
        if output_kind == "auto":
            config = self.model.config
            metric = config.model_type == "zoedepth" or getattr(config, "depth_estimation_type", "relative") == "metric"
            output_kind = "depth" if metric else "disparity"
        if output_kind not in ("depth", "disparity"):
            raise OccupancyInputError(f"output_kind: expected 'auto', 'depth' or 'disparity', got {output_kind!r}")
        self.output_kind = output_kind

    def _post_process(self, outputs, size):
        post = self.processor.post_process_depth_estimation
        kwargs = {"target_sizes": [size] * outputs.predicted_depth.shape[0]}
        if "source_sizes" in inspect.signature(post).parameters:
            kwargs["source_sizes"] = kwargs["target_sizes"]
        return torch.stack([item["predicted_depth"] for item in post(outputs, **kwargs)])

    @torch.no_grad()
    def predict(self, frames) -> np.ndarray:
        """Raw model output (disparity or depth) ``(T, H, W)`` for ``(T, H, W, 3)`` uint8 frames."""
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise OccupancyInputError(f"frames: expected (T, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
        size = frames.shape[1:3]
        out = []
        for start in range(0, frames.shape[0], self.batch_size):
            inputs = self.processor(images=list(frames[start:start + self.batch_size]), return_tensors="pt")
            outputs = self.model(**{k: v.to(self.device) for k, v in inputs.items()})
            out.append(self._post_process(outputs, size).float().cpu())
        return torch.cat(out).numpy()

    def episode_depth(self, frames, reference_depth=None, reference_frame: int = 0,
                      with_shift: bool = False, target_median: float = 1.0) -> EpisodeDepth:
        """Depth of every frame with one scale (and shift) fixed for the whole episode."""
        raw = self.predict(frames).astype(np.float64)
        if not 0 <= reference_frame < raw.shape[0]:
            raise OccupancyInputError(f"reference_frame: {reference_frame} outside 0..{raw.shape[0] - 1}")
        anchor = raw[reference_frame]
        if reference_depth is not None:
            reference_depth = np.asarray(reference_depth, dtype=np.float64)
            if reference_depth.shape != anchor.shape:
                raise OccupancyInputError(
                    f"reference_depth: expected shape {anchor.shape}, got {reference_depth.shape}"
                )
            target = reference_depth if self.output_kind == "depth" else 1.0 / np.where(reference_depth > 0, reference_depth, np.nan)
            fit = fit_depth_alignment(anchor, target, with_shift=with_shift)
            scale, shift = fit.scale, fit.shift
        else:
            positive = anchor[np.isfinite(anchor) & (anchor > 0)]
            if positive.size == 0:
                raise OccupancyInputError("frames: the model predicts no positive value on the reference frame")
            median = float(np.median(positive))
            # depth: scale * median = target; disparity: 1 / (scale * median) = target
            scale = target_median / median if self.output_kind == "depth" else 1.0 / (median * target_median)
            shift = 0.0
        values = scale * raw + shift
        if self.output_kind == "disparity":
            depth = np.where(values > 0, 1.0 / np.where(values > 0, values, 1.0), np.nan)
        else:
            depth = np.where(values > 0, values, np.nan)
        return EpisodeDepth(depth.astype(np.float32), float(scale), float(shift), self.output_kind)

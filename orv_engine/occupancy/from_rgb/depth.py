"""Per-episode depth for RGB-only episodes (BridgeV2, RT-1): the first stage of
occupancy-from-RGB, so that the frames can be back-projected into voxels.

Two estimators, both loaded from a local transformers folder (no hub access):

* :class:`DepthProEstimator` — Apple's Depth Pro (``apple/DepthPro-hf``) is metric: it
  predicts a *canonical* inverse depth plus the horizontal field of view, and the metric
  inverse depth is ``canonical * W / f_px`` with ``f_px = W / (2 tan(fov / 2))`` (Depth Pro
  paper, Sec. 3; its ``infer``). When the camera's focal length is known (a dataset's
  calibration or a camera preset) it replaces the network's FOV, as in Apple's code.
  A whole episode shares one camera, so one focal length is used for every frame: the known
  one, or the median of the per-frame FOV estimates; the returned pinhole ``K`` is built
  from it, so depth and intrinsics agree when the frames are back-projected.
* :class:`DepthAnythingEstimator` — relative Depth Anything (V2) through
  :class:`~orv_engine.occupancy.depth_adapter.DepthAdapter`: disparity up to an affine map,
  turned into depth with one scale per episode (reference frame's median depth =
  ``target_median``), so the occupancy does not breathe from frame to frame.

Depth is NaN wherever the model gives nothing usable (non-finite or non-positive inverse
depth); an episode frame without a single usable pixel is an error, not a silent hole.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import torch

from orv_engine.occupancy.cameras import pinhole
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.model_folders import read_model_folder, require_model_type

SUPPORTED_MODEL_TYPES = ("depth_pro", "depth_anything")
# Apple's infer() clamps inverse depth to [1e-4, 1e4] before inverting: depth in [1e-4, 1e4] m.
_MIN_INVERSE_DEPTH, _MAX_INVERSE_DEPTH = 1e-4, 1e4


@dataclass
class DepthEstimate:
    depth: np.ndarray  # (T, H, W) float32: metres (metric model) or episode-scaled units; NaN where unusable
    intrinsics: np.ndarray | None  # (3, 3) float64 pinhole K at the frames' (H, W), or None
    metric: bool  # True for Depth Pro, False for relative Depth Anything
    scale: float  # per-episode factor applied to the model output (1.0 for metric)
    shift: float


@runtime_checkable
class DepthEstimator(Protocol):
    name: str  # "depth_pro" | "depth_anything"

    def estimate(self, frames: np.ndarray, focal_length_px: float | None = None) -> DepthEstimate: ...


def check_frames(frames) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 with ``T >= 1``, or OccupancyInputError."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or 0 in frames.shape:
        raise OccupancyInputError(
            f"frames: expected a non-empty (T, H, W, 3) uint8 array, got shape {frames.shape} dtype {frames.dtype}"
        )
    return frames


def _check_focal(focal_length_px) -> float:
    try:
        focal = float(focal_length_px)
    except (TypeError, ValueError):
        raise OccupancyInputError(f"focal_length_px: expected a number, got {focal_length_px!r}") from None
    if not math.isfinite(focal) or focal <= 0:
        raise OccupancyInputError(f"focal_length_px: expected a positive finite focal length in pixels, got {focal}")
    return focal


def _check_usable(depth: np.ndarray, model: str) -> None:
    usable = np.isfinite(depth) & (depth > 0)
    empty = np.flatnonzero(~usable.reshape(depth.shape[0], -1).any(axis=1))
    if empty.size:
        frames = empty.tolist()
        shown = frames[:10] + (["..."] if len(frames) > 10 else [])
        raise OccupancyInputError(
            f"depth: {model} gives no usable (finite, positive) depth on frame(s) {shown} of {depth.shape[0]}"
        )


def _checkpoint_has_fov_head(path: Path) -> bool:
    """Whether the folder's safetensors weights (single file or sharded) include ``fov_model.*``."""
    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            names = json.loads(index.read_text()).get("weight_map", {})
        except (OSError, ValueError):
            return False
        return any(name.startswith("fov_model.") for name in names)
    single = path / "model.safetensors"
    if not single.is_file():
        return False
    from safetensors import safe_open

    with safe_open(str(single), framework="pt") as weights:
        return any(name.startswith("fov_model.") for name in weights.keys())


class DepthProEstimator:
    """Metric depth (and the field of view) from a local Depth Pro folder."""

    name = "depth_pro"

    def __init__(self, model_path, device: str = "cpu", batch_size: int = 4):
        from transformers import AutoImageProcessor, DepthProForDepthEstimation

        path, config = read_model_folder("model_path", model_path)
        require_model_type("model_path", path, config, ("depth_pro",))
        if batch_size < 1:
            raise OccupancyInputError(f"batch_size: expected >= 1, got {batch_size}")
        self.model_path = path
        # transformers builds the FOV head only when config.use_fov_model is true and would then
        # silently drop FOV weights a checkpoint does hold: build it whenever they are there.
        use_fov = bool(config.get("use_fov_model", False)) or _checkpoint_has_fov_head(path)
        self.model = DepthProForDepthEstimation.from_pretrained(
            path, local_files_only=True, use_fov_model=use_fov
        ).to(device).eval()
        self.processor = AutoImageProcessor.from_pretrained(path, local_files_only=True)
        self.device = device
        self.batch_size = batch_size

    @torch.no_grad()
    def predict(self, frames) -> tuple[np.ndarray, np.ndarray | None]:
        """Canonical inverse depth resized to the frames' ``(T, H, W)`` (bilinear, float64)
        and the per-frame horizontal field of view in degrees ``(T,)`` (None without a FOV head).

        Resizing before the focal scaling equals Apple's order (scale, then resize): both
        are linear, and it keeps only frame-sized maps in memory.
        """
        frames = check_frames(frames)
        size = frames.shape[1:3]
        canonical, fovs = [], []
        for start in range(0, frames.shape[0], self.batch_size):
            inputs = self.processor(images=list(frames[start:start + self.batch_size]), return_tensors="pt")
            pixels = inputs["pixel_values"].to(self.device, dtype=self.model.dtype)
            outputs = self.model(pixel_values=pixels)
            resized = torch.nn.functional.interpolate(
                outputs.predicted_depth.float().unsqueeze(1), size=size, mode="bilinear", align_corners=False
            )
            canonical.append(resized[:, 0].double().cpu())
            if outputs.field_of_view is not None:
                fovs.append(outputs.field_of_view.double().reshape(-1).cpu())
        fov = torch.cat(fovs).numpy() if len(fovs) == len(canonical) else None
        return torch.cat(canonical).numpy(), fov

    def estimate(self, frames, focal_length_px: float | None = None) -> DepthEstimate:
        frames = check_frames(frames)
        height, width = frames.shape[1:3]
        focal = None if focal_length_px is None else _check_focal(focal_length_px)
        canonical, fov = self.predict(frames)
        if focal is None:
            focal = self._focal_from_fov(fov, width)
        inverse = canonical * (width / focal)
        usable = np.isfinite(inverse) & (inverse > 0)
        clamped = np.clip(np.where(usable, inverse, 1.0), _MIN_INVERSE_DEPTH, _MAX_INVERSE_DEPTH)
        depth = np.where(usable, 1.0 / clamped, np.nan).astype(np.float32)
        _check_usable(depth, f"Depth Pro ({self.model_path})")
        intrinsics = pinhole(focal, focal, (width - 1) / 2.0, (height - 1) / 2.0)
        return DepthEstimate(depth, intrinsics, metric=True, scale=1.0, shift=0.0)

    def _focal_from_fov(self, fov: np.ndarray | None, width: int) -> float:
        """One focal length for the episode: the median over frames of ``W / (2 tan(fov / 2))``."""
        if fov is None:
            raise OccupancyInputError(
                f"focal_length_px: {self.model_path} has no field-of-view head (config use_fov_model is false); "
                "give the camera's focal length"
            )
        good = np.isfinite(fov) & (fov > 0) & (fov < 180)
        if not good.any():
            raise OccupancyInputError(
                f"field_of_view: Depth Pro's estimates are unusable on every frame (expected 0 < fov < 180 degrees, "
                f"got e.g. {fov[:5].tolist()}); give focal_length_px"
            )
        focals = 0.5 * width / np.tan(0.5 * np.deg2rad(fov[good]))
        return float(np.median(focals))


class DepthAnythingEstimator:
    """Relative Depth Anything through DepthAdapter, with one scale per episode."""

    name = "depth_anything"

    def __init__(self, model_path, device: str = "cpu", batch_size: int = 8, target_median: float = 1.0):
        from orv_engine.occupancy.depth_adapter import DepthAdapter

        path, config = read_model_folder("model_path", model_path)
        require_model_type("model_path", path, config, ("depth_anything",))
        if not (math.isfinite(target_median) and target_median > 0):
            raise OccupancyInputError(f"target_median: expected a positive finite depth, got {target_median}")
        if batch_size < 1:
            raise OccupancyInputError(f"batch_size: expected >= 1, got {batch_size}")
        self.model_path = path
        self.adapter = DepthAdapter(path, device=device, batch_size=batch_size)
        self.target_median = float(target_median)

    def estimate(self, frames, focal_length_px: float | None = None) -> DepthEstimate:
        """Depth scaled so frame 0's median is ``target_median``; ``focal_length_px`` is
        accepted for the common interface and unused (a relative model has no metric scale
        to fix with it)."""
        frames = check_frames(frames)
        if focal_length_px is not None:
            _check_focal(focal_length_px)
        result = self.adapter.episode_depth(frames, reference_frame=0, target_median=self.target_median)
        depth = np.where(np.isfinite(result.depth) & (result.depth > 0), result.depth, np.nan).astype(np.float32)
        _check_usable(depth, f"Depth Anything ({self.model_path})")
        return DepthEstimate(depth, None, metric=False, scale=result.scale, shift=result.shift)


def load_depth_estimator(model_path, kind: str = "auto", device: str = "cpu") -> DepthEstimator:
    """The estimator for a local model folder; ``kind="auto"`` reads config.json's model_type."""
    path, config = read_model_folder("model_path", model_path)
    model_type = config.get("model_type")
    if kind == "auto":
        kind = model_type
        if kind not in SUPPORTED_MODEL_TYPES:
            raise OccupancyInputError(
                f"model_path: {path}/config.json has unsupported model_type {model_type!r}; "
                f"expected one of {list(SUPPORTED_MODEL_TYPES)}"
            )
    elif kind not in SUPPORTED_MODEL_TYPES:
        raise OccupancyInputError(f"kind: expected 'auto' or one of {list(SUPPORTED_MODEL_TYPES)}, got {kind!r}")
    if kind == "depth_pro":
        return DepthProEstimator(path, device=device)
    return DepthAnythingEstimator(path, device=device)

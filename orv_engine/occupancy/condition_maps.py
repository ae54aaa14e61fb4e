"""``ConditionMaps`` (depth, semantics, valid mask per frame) and rendering them from an
``Occupancy4D`` for a whole sequence and any number of cameras (ORV-MV needs side views),
with the Occ2GS backend picked by name from one registry (``RENDERERS``, ``renderer_for``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from orv_engine.occupancy.cameras import check_intrinsics, check_poses
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.occupancy4d import Occupancy4D
from orv_engine.occupancy.projection import SplatSettings, visible_depth_range
from orv_engine.occupancy.render_gsplat import gsplat_available, rasterize_gsplat, require_gsplat
from orv_engine.occupancy.render_numba import numba_available, render_numba, require_numba, visible_depth_range_numba
from orv_engine.occupancy.render_occ2gs import BACKGROUND_LABEL, RenderedView, render_torch


@dataclass(frozen=True)
class Renderer:
    """One Occ2GS backend: how it renders a frame, where its depth range comes from, whether it runs here."""

    # (means, labels, K, cam_to_world, height, width, voxel_size, settings, depth_range) -> RenderedView
    render: Callable[..., RenderedView]
    # (means, K, cam_to_world, height, width, near) -> (min z, max z) of the centres in view, or None
    depth_range: Callable[..., tuple[float, float] | None]
    available: Callable[[], bool]
    require: Callable[[], None]  # raises a RuntimeError that says what is missing


def _always() -> bool:
    return True


def _nothing_to_require() -> None:
    return None


RENDERERS: dict[str, Renderer] = {
    "torch": Renderer(render_torch, visible_depth_range, _always, _nothing_to_require),
    "numba": Renderer(render_numba, visible_depth_range_numba, numba_available, require_numba),
    "gsplat": Renderer(rasterize_gsplat, visible_depth_range, gsplat_available, require_gsplat),
}
AUTO_ORDER = ("gsplat", "numba", "torch")  # "auto": the first of these that can run here
BACKENDS = ("auto", *RENDERERS)


def renderer_for(backend: str) -> Renderer:
    """The renderer of ``backend``; "auto" is gsplat when gsplat and CUDA are present, else numba
    when it imports, else torch. Raises ``OccupancyInputError`` for an unknown name and
    ``RuntimeError`` where the backend asked for cannot run here."""
    if backend not in BACKENDS:
        raise OccupancyInputError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        backend = next(name for name in AUTO_ORDER if RENDERERS[name].available())
    renderer = RENDERERS[backend]
    renderer.require()
    return renderer


@dataclass
class ConditionMaps:
    depth: np.ndarray  # (F, H, W) float32 camera depth, 0 on background
    semantics: np.ndarray  # (F, H, W) int32 label ids, BACKGROUND_LABEL (-1) on background
    valid: np.ndarray  # (F, H, W) bool, accumulated alpha >= background threshold
    alpha: np.ndarray  # (F, H, W) float32 accumulated opacity
    label_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.depth.shape[0])

    def frames(self, start: int, stop: int) -> "ConditionMaps":
        """The maps of frames ``start:stop`` (e.g. one clip of an episode)."""
        window = slice(start, stop)
        return ConditionMaps(self.depth[window], self.semantics[window], self.valid[window],
                             self.alpha[window], self.label_names)

    def as_dict(self) -> dict[str, np.ndarray]:
        """The arrays by name, as ``Clip.conditions`` holds them."""
        return {"depth": self.depth, "semantics": self.semantics, "valid": self.valid}


@dataclass
class ViewCamera:
    """A camera to render from: intrinsics (3, 3) or (F, 3, 3), cam-to-world (4, 4) or (F, 4, 4)."""

    intrinsics: np.ndarray
    cam_to_world: np.ndarray
    height: int
    width: int


def render_condition_maps(occupancy: Occupancy4D, camera: ViewCamera, settings: SplatSettings | None = None,
                          backend: str = "auto", depth_normalization: str = "frame") -> ConditionMaps:
    """Render every frame of ``occupancy`` from ``camera``.

    ``depth_normalization`` picks the z range of the scale rule: "frame" (the paper's
    min/max over the Gaussians in view of each frame) or "sequence" (one range for all
    frames, steadier Gaussian sizes across time). ``backend``: "auto" (gsplat with CUDA, else
    numba when installed, else torch), or "numba", "torch", "gsplat" explicitly (``renderer_for``).
    """
    settings = settings or SplatSettings()
    renderer = renderer_for(backend)
    if depth_normalization not in ("frame", "sequence"):
        raise OccupancyInputError(f"depth_normalization: expected 'frame' or 'sequence', got {depth_normalization!r}")
    if camera.height <= 0 or camera.width <= 0:
        raise OccupancyInputError(f"camera: height and width must be positive, got {camera.height}x{camera.width}")
    if occupancy.is_empty:
        raise OccupancyInputError("occupancy: no occupied voxel in any frame; nothing to render")
    num_frames = occupancy.num_frames
    Ks = torch.from_numpy(check_intrinsics(camera.intrinsics, num_frames, "camera.intrinsics"))
    poses = torch.from_numpy(check_poses(camera.cam_to_world, num_frames, "camera.cam_to_world"))
    H, W = camera.height, camera.width
    means = [torch.from_numpy(occupancy.centers(t)).float() for t in range(num_frames)]
    labels = [torch.from_numpy(occupancy.labels[t]).long() for t in range(num_frames)]
    ranges = [renderer.depth_range(means[t], Ks[t].float(), poses[t].float(), H, W, settings.near)
              for t in range(num_frames)]
    if depth_normalization == "sequence":
        seen = [r for r in ranges if r is not None]
        joint = (min(r[0] for r in seen), max(r[1] for r in seen)) if seen else None
        ranges = [joint] * num_frames
    depth = np.zeros((num_frames, H, W), np.float32)
    semantics = np.full((num_frames, H, W), BACKGROUND_LABEL, np.int32)
    alpha = np.zeros((num_frames, H, W), np.float32)
    voxel = occupancy.grid.voxel_size
    for t in range(num_frames):
        if ranges[t] is None:  # nothing in view: background frame
            continue
        view = renderer.render(means[t], labels[t], Ks[t], poses[t], H, W, voxel, settings, ranges[t])
        depth[t], semantics[t], alpha[t] = view.depth.numpy(), view.semantics.numpy(), view.alpha.numpy()
    return ConditionMaps(depth, semantics, semantics != BACKGROUND_LABEL, alpha, occupancy.label_names)


def render_views(occupancy: Occupancy4D, cameras: dict[str, ViewCamera], **kwargs) -> dict[str, ConditionMaps]:
    """Condition maps of every named view (anchor + calibrated side views)."""
    return {name: render_condition_maps(occupancy, camera, **kwargs) for name, camera in cameras.items()}

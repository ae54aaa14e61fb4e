"""Condition maps for ORV-MV's side views (paper Sec. 8, Fig. 9 and 11).

The 4D occupancy comes from the reference ("anchor") view alone (MonST3R over its frames),
so the side views' conditions are that occupancy rendered from each side camera. Side
cameras come from another reconstruction (VGGT over the first frame of all views) whose
frame is the reference camera too, but whose scale differs. Eq. 1 fits that scale on the
two depth maps of the reference view (:func:`.alignment.fit_depth_alignment`, scale only,
as the paper does in practice); scaling the side cameras' translations by it
(:func:`.alignment.rescale_cameras`) brings them into the occupancy's frame.

Calibrated datasets (simulation, DROID with its extrinsics) skip the alignment: their
cameras are already in the occupancy's world frame (:func:`episode_view_cameras`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from orv_engine.occupancy.alignment import DepthAlignment, fit_depth_alignment, rescale_cameras
from orv_engine.occupancy.clip_conditions import view_condition_maps
from orv_engine.occupancy.condition_images import condition_images
from orv_engine.occupancy.condition_maps import ConditionMaps, ViewCamera, render_condition_maps
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.from_episode import occupancy_from_episode
from orv_engine.occupancy.occupancy4d import Occupancy4D


@dataclass
class AlignedCameras:
    cameras: dict[str, ViewCamera]  # every camera, in the occupancy's (reference) frame
    alignment: DepthAlignment  # the Eq. 1 fit that scaled them


def align_side_cameras(
    cameras: Mapping[str, ViewCamera],
    reference_depth_other: np.ndarray,
    reference_depth_anchor: np.ndarray,
    mask: np.ndarray | None = None,
) -> AlignedCameras:
    """Bring cameras of another reconstruction into the anchor reconstruction's frame.

    ``cameras``: cam-to-world poses in the other reconstruction's frame (its first view is
    the reference camera); ``reference_depth_other`` / ``reference_depth_anchor``: the
    reference view's first-frame depth in each reconstruction (same pixels). Eq. 1 is fitted
    scale-only (a shift of depth is no rigid change of cameras; the paper drops it too).
    """
    if not cameras:
        raise OccupancyInputError("cameras: no camera to align")
    alignment = fit_depth_alignment(reference_depth_other, reference_depth_anchor, with_shift=False, mask=mask)
    if not np.isfinite(alignment.scale) or alignment.scale <= 0:
        raise OccupancyInputError(f"reference depths: fitted scale {alignment.scale} is not positive")
    aligned = {name: replace(cam, cam_to_world=rescale_cameras(cam.cam_to_world, alignment.scale))
               for name, cam in cameras.items()}
    return AlignedCameras(aligned, alignment)


def side_view_conditions(
    occupancy: Occupancy4D,
    cameras: Mapping[str, ViewCamera],
    views: Sequence[str],
    **render_kwargs,
) -> list[ConditionMaps]:
    """The reference view's occupancy rendered from each camera in ``views`` (model order).

    ``render_kwargs`` go to :func:`.condition_maps.render_condition_maps` (settings, backend,
    depth_normalization). A view without a camera is an error naming the known cameras.
    """
    missing = [v for v in views if v not in cameras]
    if missing:
        raise OccupancyInputError(
            f"views {missing} have no camera (known cameras: {sorted(cameras)}); side-view conditions need a "
            "calibrated camera per view"
        )
    if len(set(views)) != len(views):
        raise OccupancyInputError(f"views: duplicates in {list(views)}")
    return [render_condition_maps(occupancy, cameras[v], **render_kwargs) for v in views]


def reference_occupancy(episode, reference_camera: str, **kwargs) -> Occupancy4D:
    """The episode's 4D occupancy from the reference camera's depth alone (the paper builds it
    from the anchor view), for rendering every view's conditions; kwargs as
    :func:`.from_episode.occupancy_from_episode`."""
    if episode.depth is None or reference_camera not in episode.depth:
        have = sorted(episode.depth) if episode.depth else []
        raise OccupancyInputError(f"episode {episode.meta.episode_id}: no depth for the reference camera "
                                  f"{reference_camera!r} (depth cameras: {have})")
    return occupancy_from_episode(episode, cameras=[reference_camera], **kwargs)


def episode_view_conditions(episode, views: Sequence[str], steps, height: int, width: int, kinds,
                            reference_camera: str | None = None,
                            occupancy: Occupancy4D | None = None) -> list[dict[str, np.ndarray]]:
    """Per-view condition images of ``steps`` of a calibrated episode, in ``views`` order: the
    reference camera's occupancy rendered from every view's camera, as
    ``ORVMultiViewPipeline(conditions=...)`` and ORV-MV training take them."""
    if occupancy is None:
        occupancy = reference_occupancy(episode, reference_camera or views[0])
    return [condition_images(view_condition_maps(episode, view, steps, height, width, occupancy), kinds)
            for view in views]


def episode_view_cameras(episode, views: Sequence[str], height: int, width: int) -> dict[str, ViewCamera]:
    """Cameras of a calibrated episode (``Episode.intrinsics`` / ``extrinsics``), intrinsics
    rescaled from the recorded frame size to ``height`` x ``width``."""
    where = f"episode {episode.meta.episode_id}"
    cameras = {}
    for view in views:
        if not episode.intrinsics or view not in episode.intrinsics:
            raise OccupancyInputError(f"{where}: no intrinsics for camera {view!r}")
        if not episode.extrinsics or view not in episode.extrinsics:
            raise OccupancyInputError(f"{where}: no extrinsics for camera {view!r}")
        if view not in episode.frames:
            raise OccupancyInputError(f"{where}: no frames for camera {view!r} (cameras: {episode.cameras})")
        src_h, src_w = episode.frames[view].shape[1:3]
        K = np.array(episode.intrinsics[view], dtype=np.float64, copy=True)
        K[..., 0, :] *= width / src_w
        K[..., 1, :] *= height / src_h
        cameras[view] = ViewCamera(K, np.asarray(episode.extrinsics[view], dtype=np.float64), height, width)
    return cameras

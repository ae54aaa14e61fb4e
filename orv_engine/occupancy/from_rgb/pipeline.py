"""One episode's video -> ``Occupancy4D``, the paper's ORV-Data steps (Sec. 3.3, supplementary
10.1) joined: depth -> camera -> semantic labels per pixel -> world points -> voxels (one grid
for the episode, majority-vote labels) -> optionally the RAFT consistency of the maps
rendered back from it.

Each step takes what the episode records when it records it (``depth_estimator=None``: the
episode's own depth; ``segmenter=None``: its own segmentation), so simulated or sensor
episodes and RGB-only ones go through the same code — which is also how the RGB path is
checked: with the simulator's depth and segmentation standing in for the models it must give
the geometry path's occupancy (tests/test_occupancy_rgb_store.py).

Labels: every pixel gets an id in ``label_names`` (the dataset's label set, ``unknown``
appended): the segmenter's class for pixels in an object mask, ``unknown`` elsewhere (the
table, the background: they occupy space too). Frames keep their pixels' labels as
``Occupancy4D`` stores them; ``orv_engine.occupancy.condition_maps`` renders them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from orv_engine.occupancy.condition_maps import ViewCamera, render_condition_maps
from orv_engine.occupancy.consistency import ConsistencyScore, RaftConsistency, depth_to_images
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.from_episode import episode_grid
from orv_engine.occupancy.from_rgb.camera import EpisodeCamera, episode_camera, preset_focal_length
from orv_engine.occupancy.grid import DEFAULT_VOXEL_SIZE
from orv_engine.occupancy.occupancy4d import Occupancy4D
from orv_engine.occupancy.points import depth_to_points
from orv_engine.occupancy.segmentation import UNKNOWN

RECORDED = "recorded"  # the stage name when the episode's own data stands in for a model


@dataclass
class EpisodeOccupancy:
    """What the store keeps of one episode: its occupancy and the camera it was seen from."""

    occupancy: Occupancy4D
    camera: str  # the dataset camera the occupancy was built from
    cameras: EpisodeCamera  # intrinsics (T, 3, 3) at image_size, extrinsics (T, 4, 4)
    image_size: tuple[int, int]  # (H, W) of the frames the intrinsics belong to
    sources: dict[str, str] = field(default_factory=dict)  # stage -> "recorded" | model name | preset
    metric: bool = True  # depth in metres (recorded, Depth Pro) or per-episode scaled units
    labelled_fraction: float = 0.0  # share of valid-depth pixels inside an object mask
    consistency: ConsistencyScore | None = None
    seconds: dict[str, float] = field(default_factory=dict)  # stage -> wall time (benchmarks/occupancy_store.py)


def label_ids(segmentation: np.ndarray, class_names, label_names) -> np.ndarray:
    """Class indices (``-1``: no object) -> ids into ``label_names`` (``unknown`` for -1 and for
    a class the label set does not hold)."""
    index = {name: i for i, name in enumerate(label_names)}
    unknown = index[UNKNOWN]
    table = np.array([index.get(name, unknown) for name in class_names] + [unknown], dtype=np.int64)
    segmentation = np.asarray(segmentation, dtype=np.int64)
    return table[np.where(segmentation >= 0, segmentation, len(class_names))]


def _with_unknown(names) -> tuple[str, ...]:
    names = tuple(names)
    return names if UNKNOWN in names else names + (UNKNOWN,)


def _recorded(episode, camera: str, what: str) -> np.ndarray:
    value = getattr(episode, what)
    if value is None or camera not in value:
        raise OccupancyInputError(
            f"episode {episode.meta.episode_id}: records no {what} for camera {camera!r}; "
            f"configure a {'depth model' if what == 'depth' else 'segmenter'} instead of '{RECORDED}'"
        )
    return np.asarray(value[camera])


def occupancy_from_video(episode, camera: str | None = None, depth_estimator=None, segmenter=None,
                         class_names=(), label_names=None, voxel_size: float = DEFAULT_VOXEL_SIZE) -> EpisodeOccupancy:
    """Build one episode's 4D occupancy from ``camera``'s video (default: the first camera).

    ``depth_estimator`` (``from_rgb.depth.DepthEstimator``) or None for the recorded depth;
    ``segmenter`` (``from_rgb.instances.InstanceSegmenter``) prompted with ``class_names``, or
    None for the recorded segmentation (its values index ``episode.labels``). ``label_names``:
    the dataset's label set (default: ``class_names``, or the episode's own labels).
    Raises :class:`OccupancyInputError` with the episode id for anything that makes the
    episode unusable (no valid depth, no object found, no intrinsics).
    """
    name = episode.meta.episode_id
    camera = camera or episode.cameras[0]
    if camera not in episode.frames:
        raise OccupancyInputError(f"episode {name}: no camera {camera!r} (has {', '.join(episode.frames)})")
    frames = np.asarray(episode.frames[camera])
    num_frames, height, width = frames.shape[:3]
    sources: dict[str, str] = {}
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    # 1. depth: the recorded one, or a model (told the focal length when the dataset or a preset knows it)
    if depth_estimator is None:
        depth = _recorded(episode, camera, "depth").astype(np.float32)
        estimated_intrinsics, metric = None, True
        sources["depth"] = RECORDED
    else:
        estimate = depth_estimator.estimate(frames, focal_length_px=preset_focal_length(episode, camera, height, width))
        depth, estimated_intrinsics, metric = estimate.depth, estimate.intrinsics, estimate.metric
        sources["depth"] = depth_estimator.name
    if depth.shape != (num_frames, height, width):
        raise OccupancyInputError(f"episode {name}: depth of shape {depth.shape} for frames {frames.shape[:3]}")
    if not np.any(np.isfinite(depth[0]) & (depth[0] > 0)):
        raise OccupancyInputError(f"episode {name}: no valid depth on the first frame (all NaN, inf or <= 0)")
    seconds["depth"], clock = time.perf_counter() - clock, time.perf_counter()

    # 2. camera: recorded > dataset preset > the depth model's field of view; static when not recorded
    cameras = episode_camera(episode, camera, estimated_intrinsics)
    sources["camera"] = cameras.source

    # 3. per-pixel labels in the label set
    if segmenter is None:
        seg = _recorded(episode, camera, "segmentation")
        recorded_names = tuple(episode.labels or ())
        label_names = _with_unknown(label_names if label_names is not None else recorded_names)
        if recorded_names:
            labels = label_ids(np.where(seg < len(recorded_names), seg, -1), recorded_names, label_names)
        else:  # raw ids are the labels (no names recorded)
            labels = seg.astype(np.int64)
            label_names = ()
        sources["segmentation"] = RECORDED
        objects = labels != (label_names.index(UNKNOWN) if label_names else -1)
    else:
        class_names = list(class_names)
        if not class_names:
            raise OccupancyInputError(f"episode {name}: no object class to prompt the segmenter with")
        label_names = _with_unknown(label_names if label_names is not None else class_names)
        classes = segmenter.segment(frames, class_names)
        if not np.any(classes >= 0):
            raise OccupancyInputError(
                f"episode {name}: the segmenter found no instance of {', '.join(class_names)} in any frame")
        labels = label_ids(classes, class_names, label_names)
        objects = classes >= 0
        sources["segmentation"] = segmenter.name
    valid = np.isfinite(depth) & (depth > 0)
    seconds["instances"], clock = time.perf_counter() - clock, time.perf_counter()

    # 4. points -> voxels in one grid for the episode (the dataset's extent, centred on frame 0)
    points = [depth_to_points(depth[t], cameras.intrinsics[t], cameras.extrinsics[t], labels[t], mask=valid[t])
              for t in range(num_frames)]
    grid = episode_grid(episode, voxel_size=voxel_size, first_points=points[0].points)
    occupancy = Occupancy4D.from_points(points, grid, label_names)
    if occupancy.num_voxels(0) == 0:
        raise OccupancyInputError(f"episode {name}: no point of the first frame falls inside the occupancy grid")
    seconds["voxels"] = time.perf_counter() - clock
    return EpisodeOccupancy(occupancy, camera, cameras, (height, width), sources, metric,
                            float(objects[valid].mean()) if valid.any() else 0.0, seconds=seconds)


def rendered_maps(result: EpisodeOccupancy, height: int, width: int, steps=None, **render_kwargs) -> dict[str, np.ndarray]:
    """The occupancy rendered from its own camera at ``height x width`` (intrinsics rescaled):
    ``{"depth": (F, H, W) float32, "semantics": (F, H, W) int32}`` for ``steps`` (default all)."""
    occupancy = result.occupancy
    steps = list(range(occupancy.num_frames)) if steps is None else list(steps)
    subset = Occupancy4D(occupancy.grid, [occupancy.coords[i] for i in steps],
                         [occupancy.labels[i] for i in steps], occupancy.label_names)
    K = result.cameras.intrinsics[steps].astype(np.float32).copy()
    h0, w0 = result.image_size
    K[:, 0] *= width / w0
    K[:, 1] *= height / h0
    poses = result.cameras.extrinsics[steps].astype(np.float32)
    maps = render_condition_maps(subset, ViewCamera(K, poses, height, width), **render_kwargs)
    return {"depth": maps.depth, "semantics": maps.semantics}


def consistency_score(result: EpisodeOccupancy, raft: RaftConsistency, size: int = 128,
                      max_frames: int = 16) -> ConsistencyScore:
    """RAFT warping error of the depth maps rendered from the occupancy (ORV-Data drops
    sequences whose rendered conditions flicker), at ``size`` (>= 128: RAFT's pyramid) on the
    short side, on at most ``max_frames`` consecutive frames from the start."""
    height, width = result.image_size
    scale = size / min(height, width)
    h, w = max(size, round(height * scale)), max(size, round(width * scale))
    steps = list(range(min(result.occupancy.num_frames, max_frames)))
    if len(steps) < 2:
        raise OccupancyInputError("consistency: the episode has fewer than 2 frames")
    maps = rendered_maps(result, h, w, steps)
    return raft.score(depth_to_images(maps["depth"], valid=maps["depth"] > 0))

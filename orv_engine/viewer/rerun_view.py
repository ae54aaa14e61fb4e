"""Log an RLDS episode, or one unit of an ``orv-augment`` run, to Rerun (``orv-data view``).

What an episode becomes, on the ``step`` timeline (one tick per episode step)::

    instruction                           TextDocument (static)
    world                                 ViewCoordinates RIGHT_HAND_Z_UP (robot base; static)
    world/occupancy                       the 4D semantic occupancy: Points3D (or Boxes3D) of the
                                          voxel centres, class ids -> the label set's names and colours
                                          (AnnotationContext, static)
    world/cameras/CAM                     Pinhole + Transform3D (camera-to-world), where known
    world/cameras/CAM/rgb                 Image
    world/cameras/CAM/depth               DepthImage (metres), where the episode records depth
    world/cameras/CAM/semantics           SegmentationImage, where the episode records it
    world/cameras/CAM/rendered_depth      the store's occupancy rendered from its camera (Occ2GS:
    world/cameras/CAM/rendered_semantics  what the world model is conditioned on), with --occupancy STORE
    action/NAME, state/NAME               Scalars, one series per dimension (x y z roll pitch yaw gripper)

The occupancy is the store's (``--occupancy STORE``, ``orv-occupancy``'s layout, found by the
episode's key) or, for episodes with depth and cameras (simulation), built from the episode
(``occupancy_from_episode``). RGB-only episodes without a store get no voxels.

A run's unit (``RUN/rollouts/UNIT`` + ``RUN/sources/KEY``, see augment/rollout.py) becomes::

    unit                                  TextDocument: rollout.json (static)
    ground_truth/rgb                      the source's recorded frames at the rollout size
    rollout/rgb                           the generated frames (clip.npz)
    maps/depth, maps/semantics            the occupancy-rendered condition maps it was conditioned on
    action/NAME, state/NAME               Scalars
    metrics/psnr, metrics/ssim            per frame, for the replay unit

What is shown is read by :mod:`orv_engine.viewer.inputs`; this module logs it and reads a
recording back. ``rerun`` is imported only here and only when a view is made, so ``orv-data`` keeps starting
without it (it is the optional ``viewer`` extra).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from orv_engine.data.episode import Episode
from orv_engine.occupancy.condition_images import PALETTE
from orv_engine.occupancy.occupancy4d import Occupancy4D
from orv_engine.viewer.inputs import (StoreEpisode, ViewerError, episode_occupancy, read_episode, read_store_episode,
                                      read_unit)

TIMELINE = "step"
DIM_NAMES = ("x", "y", "z", "roll", "pitch", "yaw", "gripper")  # BridgeV2's convention (Episode)
VOXEL_KINDS = ("points", "boxes")
POINT_RADIUS_UI = 2.0  # voxels drawn as points: screen size


def rerun_module():
    """``import rerun``, or a :class:`ViewerError` that says how to install it."""
    try:
        import rerun  # noqa: PLC0415  (optional dependency: only the viewer needs it)
    except ImportError as err:
        raise ViewerError(f"the Rerun view needs rerun-sdk: pip install -e '.[viewer]' ({err})") from None
    return rerun


def new_recording(name: str, recording_id: str | None = None):
    rr = rerun_module()
    return rr.RecordingStream(application_id="orv-data", recording_id=recording_id or name)


# A served recording shuts its gRPC server down when it is garbage collected: kept here until exit.
_SERVED: list = []


def check_sink(out=None, spawn: bool = False, serve: bool = False) -> None:
    """Refuse a bad ``--out`` before any episode is read."""
    if not (spawn or serve) and Path(out).suffix != ".rrd":
        raise ViewerError(f"--out {out}: a Rerun recording file ends in .rrd")


def open_sink(rec, out: str | Path | None = None, spawn: bool = False, serve: bool = False, blueprint=None) -> str:
    """Send ``rec`` to a spawned viewer, a gRPC server, or (the default) ``out``'s partial file,
    which :func:`close_sink` renames into place: a view that fails half-way leaves no ``.rrd``.
    ``blueprint``: the layout the viewer opens with."""
    if spawn:
        try:
            rec.spawn(default_blueprint=blueprint)
        except (RuntimeError, OSError) as err:
            raise ViewerError(f"--spawn: cannot start a Rerun viewer here ({err}); write a file with --out") from None
        return "a spawned Rerun viewer"
    if serve:
        _SERVED.append(rec)
        return f"{rec.serve_grpc(default_blueprint=blueprint)} (open it with: rerun URL)"
    check_sink(out)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec.save(str(_partial(path)), default_blueprint=blueprint)
    return str(path)


def close_sink(rec, out=None, spawn: bool = False, serve: bool = False) -> None:
    rec.flush()
    if not (spawn or serve):
        rec.disconnect()  # closes the file sink: the recording is complete on disk
        _partial(Path(out)).replace(out)


def _partial(path: Path) -> Path:
    return path.with_name(f".{path.name}.partial")


def serve_until_interrupted() -> None:
    """Keep the served recordings up until Ctrl-C."""
    print("serving; Ctrl-C to stop")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        _SERVED.clear()


# -- episodes ----------------------------------------------------------------------------------
def _per_step(matrix, steps: int) -> np.ndarray:
    matrix = np.asarray(matrix, np.float64)
    return np.repeat(matrix[None], steps, axis=0) if matrix.ndim == 2 else matrix


def _colors(num: int) -> np.ndarray:
    return PALETTE[np.arange(num) % len(PALETTE)]


def log_labels(rec, entity: str, label_names, empty: bool = False) -> int:
    """Class id -> name and colour (the contact sheets' palette), static. ``empty``: one more
    class after the names, black, for the pixels no voxel covers (rendered maps: label -1);
    returns its id."""
    rr = rerun_module()
    names = list(label_names)
    colors = [tuple(int(c) for c in color) for color in _colors(len(names))]
    if empty:
        names.append("(no voxel)")
        colors.append((0, 0, 0))
    rec.log(entity, rr.AnnotationContext([
        rr.AnnotationInfo(id=i, label=name, color=color) for i, (name, color) in enumerate(zip(names, colors))
    ]), static=True)
    return len(names) - 1


def _class_ids(labels: np.ndarray, empty_id: int) -> np.ndarray:
    """Rendered label ids (-1: no voxel) -> class ids of :func:`log_labels` with ``empty``."""
    return np.where(labels < 0, empty_id, labels).astype(np.uint16)


def log_occupancy(rec, occupancy: Occupancy4D, entity: str = "world/occupancy", voxels: str = "points",
                  steps: int | None = None) -> None:
    """One voxel set per step: centres with class ids (colours and names from the annotation context)."""
    rr = rerun_module()
    if voxels not in VOXEL_KINDS:
        raise ViewerError(f"--voxels: expected one of {', '.join(VOXEL_KINDS)}, got {voxels!r}")
    log_labels(rec, entity, occupancy.label_names)
    half = occupancy.grid.voxel_size / 2.0
    for t in range(occupancy.num_frames if steps is None else min(steps, occupancy.num_frames)):
        rec.set_time(TIMELINE, sequence=t)
        centers = occupancy.centers(t).astype(np.float32)
        labels = occupancy.labels[t].astype(np.uint16)
        if voxels == "boxes":
            rec.log(entity, rr.Boxes3D(centers=centers, half_sizes=np.full_like(centers, half), class_ids=labels,
                                       fill_mode="solid"))
        else:
            # radius in UI points (negative: rerun's convention), not half a voxel: 1 mm voxels of
            # a surface seen from ~0.5 m would be sub-pixel dots (--voxels boxes draws true sizes)
            rec.log(entity, rr.Points3D(centers, class_ids=labels, radii=-POINT_RADIUS_UI))


def log_series(rec, prefix: str, values: np.ndarray, names=DIM_NAMES) -> None:
    """``values`` (T, D) -> one Scalars series per dimension, ``prefix/NAME``, on the step timeline."""
    rr = rerun_module()
    values = np.asarray(values, np.float64)
    steps = np.arange(values.shape[0])
    for d in range(values.shape[1]):
        name = names[d] if d < len(names) else str(d)
        rec.send_columns(f"{prefix}/{name}", indexes=[rr.TimeColumn(TIMELINE, sequence=steps)],
                         columns=rr.Scalars.columns(scalars=values[:, d]))


def log_camera_pose(rec, entity: str, intrinsics, extrinsics, height: int, width: int, steps: int) -> None:
    rr = rerun_module()
    K = _per_step(intrinsics, steps) if intrinsics is not None else None
    pose = _per_step(extrinsics, steps) if extrinsics is not None else None
    for t in range(steps):
        rec.set_time(TIMELINE, sequence=t)
        if pose is not None:
            rec.log(entity, rr.Transform3D(translation=pose[t, :3, 3], mat3x3=pose[t, :3, :3]))
        if K is not None:
            rec.log(entity, rr.Pinhole(image_from_camera=K[t], resolution=[width, height],
                                       camera_xyz=rr.ViewCoordinates.RDF))  # OpenCV axes (Episode.extrinsics)


def log_episode(rec, episode: Episode, *, occupancy: Occupancy4D | None = None,
                store: StoreEpisode | None = None, voxels: str = "points") -> dict:
    """Log ``episode`` (and its occupancy) into ``rec``; returns what was logged, by kind."""
    rr = rerun_module()
    steps = len(episode)
    logged: dict = {"steps": steps, "cameras": list(episode.frames), "occupancy": None, "entities": []}
    rec.log("instruction", rr.TextDocument(f"{episode.instruction}\n\n{episode.meta.episode_id}"), static=True)
    rec.log("world", rr.ViewCoordinates.RIGHT_HAND_Z_UP, static=True)
    labels = list(episode.labels or [])
    for camera, frames in episode.frames.items():
        base = f"world/cameras/{camera}"
        height, width = frames.shape[1:3]
        K = (episode.intrinsics or {}).get(camera)
        pose = (episode.extrinsics or {}).get(camera)
        if store is not None and store.camera == camera and K is None:
            K = store.intrinsics * np.array([[width / store.image_size[1]], [height / store.image_size[0]], [1.0]])
            pose = store.extrinsics
        if K is not None or pose is not None:
            log_camera_pose(rec, base, K, pose, height, width, steps)
            logged["entities"].append(base)
        depth = (episode.depth or {}).get(camera)
        segmentation = (episode.segmentation or {}).get(camera)
        if segmentation is not None:
            log_labels(rec, f"{base}/semantics", labels or [str(i) for i in range(int(segmentation.max()) + 1)])
        rendered = store.rendered if store is not None and store.camera == camera else None
        if rendered is not None:
            empty_id = log_labels(rec, f"{base}/rendered_semantics", store.occupancy.label_names, empty=True)
        for t in range(steps):
            rec.set_time(TIMELINE, sequence=t)
            rec.log(f"{base}/rgb", rr.Image(frames[t]))
            if depth is not None:
                rec.log(f"{base}/depth", rr.DepthImage(depth[t], meter=1.0))
            if segmentation is not None:
                rec.log(f"{base}/semantics", rr.SegmentationImage(segmentation[t].astype(np.uint16)))
            if rendered is not None and t < len(rendered["depth"]):
                rec.log(f"{base}/rendered_depth", rr.DepthImage(rendered["depth"][t], meter=1.0))
                rec.log(f"{base}/rendered_semantics",
                        rr.SegmentationImage(_class_ids(rendered["semantics"][t], empty_id)))
        logged["entities"] += [f"{base}/rgb"] + [f"{base}/{k}" for k, v in
                                                 (("depth", depth), ("semantics", segmentation)) if v is not None]
        if rendered is not None:
            logged["entities"] += [f"{base}/rendered_depth", f"{base}/rendered_semantics"]
    if store is not None:
        occupancy = store.occupancy
        logged["occupancy"] = "store"
    elif occupancy is not None:
        logged["occupancy"] = "episode"
    if occupancy is not None:
        log_occupancy(rec, occupancy, voxels=voxels, steps=steps)
        logged["entities"].append("world/occupancy")
    log_series(rec, "action", episode.actions)
    log_series(rec, "state", episode.states)
    logged["entities"] += [f"{p}/{n}" for p in ("action", "state") for n in DIM_NAMES]
    return logged


def image_kinds(episode: Episode, camera: str, store: StoreEpisode | None = None) -> list[str]:
    """The images :func:`log_episode` logs under ``world/cameras/CAMERA``."""
    kinds = ["rgb"] + [kind for kind, maps in (("depth", episode.depth), ("semantics", episode.segmentation))
                       if maps is not None and camera in maps]
    if store is not None and store.camera == camera and store.rendered is not None:
        kinds += ["rendered_depth", "rendered_semantics"]
    return kinds


def episode_blueprint(episode: Episode, store: StoreEpisode | None = None, occupancy: Occupancy4D | None = None):
    """The layout a viewer opens with: the 3D scene (voxels, camera frusta with their images,
    seen from behind the first camera, looking at the occupancy grid's centre) and the instruction; one row
    of images per camera; actions and states as two plots of one line per dimension (rerun's
    own default puts every entity in a panel of its own)."""
    rrb = rerun_module().blueprint
    rows, hidden = [], []
    for camera in sorted(episode.frames):
        kinds = image_kinds(episode, camera, store)
        rows.append(rrb.Horizontal(*[rrb.Spatial2DView(origin=f"world/cameras/{camera}/{kind}", name=f"{camera} {kind}")
                                     for kind in kinds]))
        # in 3D, a depth image under a pinhole is drawn as its point cloud and a segmentation as an
        # image plane: both hide the voxels (the 2D views show them); the rgb plane stays
        hidden += [f"- world/cameras/{camera}/{kind}" for kind in kinds if kind != "rgb"]
    eye = None
    occupancy = store.occupancy if store is not None else occupancy
    if occupancy is not None:
        grid = occupancy.grid
        target = np.asarray(grid.origin) + grid.extent / 2.0
        poses = [np.asarray(v, np.float64) for v in (episode.extrinsics or {}).values()]
        if store is not None:
            poses.append(np.asarray(store.extrinsics, np.float64))
        camera = poses[0].reshape(-1, 4, 4)[0, :3, 3] if poses else target + grid.extent
        # behind and above the first camera, so that its frustum and image are in view too
        back = camera - target
        position = target + 1.4 * back + np.array([0.0, 0.0, 0.3 * np.linalg.norm(back)])
        eye = rrb.EyeControls3D(position=position, look_target=target, eye_up=(0.0, 0.0, 1.0))
    plots = rrb.Vertical(rrb.TimeSeriesView(origin="action", name="actions"),
                         rrb.TimeSeriesView(origin="state", name="states"))
    text = rrb.TextDocumentView(origin="instruction", name="instruction")
    if occupancy is None and not episode.intrinsics:  # RGB only (Bridge, RT-1): nothing to place in 3D
        return rrb.Blueprint(rrb.Horizontal(rrb.Vertical(*rows, text, row_shares=[3] * len(rows) + [1]), plots,
                                            column_shares=[3, 2]), collapse_panels=True)
    scene = rrb.Spatial3DView(origin="world", name="occupancy and cameras", contents=["+ $origin/**", *hidden],
                              eye_controls=eye)
    return rrb.Blueprint(rrb.Horizontal(rrb.Vertical(scene, text, row_shares=[4, 1]), rrb.Vertical(*rows), plots,
                                        column_shares=[3, 3, 2]), collapse_panels=True)


def view_episode(path, index: int, *, split: str = "train", dataset: str | None = None, occupancy_store=None,
                 voxels: str = "points", out=None, spawn: bool = False, serve: bool = False) -> tuple[str, dict]:
    """``orv-data view DATASET --episode N``: read, log, and send to ``out`` / a viewer."""
    if voxels not in VOXEL_KINDS:
        raise ViewerError(f"--voxels: expected one of {', '.join(VOXEL_KINDS)}, got {voxels!r}")
    check_sink(out, spawn, serve)
    episode = read_episode(path, index, split=split, dataset=dataset)
    store = read_store_episode(occupancy_store, episode) if occupancy_store else None
    occupancy = None if store is not None else episode_occupancy(episode)
    rec = new_recording(f"episode-{index}", recording_id=episode.meta.episode_id)
    where = open_sink(rec, out, spawn, serve, episode_blueprint(episode, store, occupancy))
    logged = log_episode(rec, episode, occupancy=occupancy, store=store, voxels=voxels)
    close_sink(rec, out, spawn, serve)
    return where, logged


# -- a run's unit ------------------------------------------------------------------------------
def log_unit(rec, unit: dict) -> dict:
    rr = rerun_module()
    record, clip, source = unit["record"], unit["clip"], unit["source"]
    frames = clip["frames"]
    steps = int(frames.shape[0])
    rec.log("unit", rr.TextDocument(json.dumps(record, indent=1)), static=True)
    rec.log("instruction", rr.TextDocument(str(record.get("instruction", ""))), static=True)
    entities = ["rollout/rgb"]
    gt = source.get("frames")
    depth = source.get("condition_depth")
    semantics = source.get("condition_semantics")
    if semantics is not None:  # source.npz keeps no label names: the ids name the classes
        empty_id = log_labels(rec, "maps/semantics", [str(i) for i in range(max(int(semantics.max()) + 1, 0))],
                              empty=True)
    for t in range(steps):
        rec.set_time(TIMELINE, sequence=t)
        rec.log("rollout/rgb", rr.Image(frames[t]))
        if gt is not None and t < len(gt):
            rec.log("ground_truth/rgb", rr.Image(gt[t]))
        if depth is not None and t < len(depth):
            rec.log("maps/depth", rr.DepthImage(depth[t].astype(np.float32), meter=1.0))
        if semantics is not None and t < len(semantics):
            rec.log("maps/semantics", rr.SegmentationImage(_class_ids(semantics[t], empty_id)))
    entities += [name for name, arr in (("ground_truth/rgb", gt), ("maps/depth", depth), ("maps/semantics", semantics))
                 if arr is not None]
    log_series(rec, "action", clip["actions"])
    log_series(rec, "state", clip["states"])
    entities += [f"{p}/{n}" for p in ("action", "state") for n in DIM_NAMES]
    replay = record.get("replay") or {}
    skip = int(replay.get("skip_first_frames", 0))
    for name in ("psnr", "ssim"):
        values = replay.get(f"{name}_frames")
        if values:
            rec.send_columns(f"metrics/{name}",
                             indexes=[rr.TimeColumn(TIMELINE, sequence=np.arange(skip, skip + len(values)))],
                             columns=rr.Scalars.columns(scalars=np.asarray(values, np.float64)))
            entities.append(f"metrics/{name}")
    return {"steps": steps, "entities": entities}


def unit_blueprint(unit: dict):
    """Ground truth | rollout above the condition maps; actions, states and replay metrics beside."""
    rrb = rerun_module().blueprint
    source = unit["source"]
    top = [rrb.Spatial2DView(origin=path, name=name) for path, name, present in (
        ("ground_truth/rgb", "ground truth", "frames" in source), ("rollout/rgb", "rollout", True)) if present]
    maps = [rrb.Spatial2DView(origin=f"maps/{kind}", name=f"{kind} map") for kind in ("depth", "semantics")
            if f"condition_{kind}" in source]
    plots = [rrb.TimeSeriesView(origin="action", name="actions"), rrb.TimeSeriesView(origin="state", name="states")]
    if (unit["record"].get("replay") or {}).get("psnr_frames"):
        plots.append(rrb.TimeSeriesView(origin="metrics", name="replay PSNR / SSIM"))
    images = rrb.Vertical(rrb.Horizontal(*top), rrb.Horizontal(*maps)) if maps else rrb.Horizontal(*top)
    return rrb.Blueprint(rrb.Horizontal(images, rrb.Vertical(*plots, rrb.TextDocumentView(origin="unit", name="unit")),
                                        column_shares=[3, 2]), collapse_panels=True)


def view_unit(run_dir, unit_id: str, *, out=None, spawn: bool = False, serve: bool = False) -> tuple[str, dict]:
    """``orv-data view RUN --unit UNIT``: ground truth | rollout, maps, actions."""
    check_sink(out, spawn, serve)
    unit = read_unit(run_dir, unit_id)
    rec = new_recording(f"unit-{unit_id}", recording_id=unit_id)
    where = open_sink(rec, out, spawn, serve, unit_blueprint(unit))
    logged = log_unit(rec, unit)
    close_sink(rec, out, spawn, serve)
    return where, logged


# -- reading a recording back ------------------------------------------------------------------
def read_recording(path) -> dict[str, dict]:
    """A ``.rrd`` file's contents by entity path (rerun's ``RrdReader``), for the tests and for a
    user checking a file: ``{"steps": sorted step values, "static": bool, "columns": {component
    column, e.g. "Scalars:scalars": [one Arrow value per row, in step order (static rows first)]}}``.
    :func:`as_array` turns a value into a flat numpy array."""
    rr = rerun_module()
    rows: dict[str, dict] = {}
    for chunk in rr.chunk.RrdReader(str(path)).stream().to_chunks():
        batch = chunk.to_record_batch()
        entry = rows.setdefault(chunk.entity_path, {"steps": set(), "static": False, "columns": {}})
        entry["static"] = entry["static"] or chunk.is_static
        steps = batch.column(TIMELINE).to_pylist() if TIMELINE in batch.schema.names else [-1] * batch.num_rows
        entry["steps"].update(s for s in steps if s >= 0)
        for name in batch.schema.names:
            if ":" in name:  # components are "Archetype:field"; the row id and timelines are not
                column = batch.column(name)
                entry["columns"].setdefault(name, []).extend((steps[i], column[i]) for i in range(batch.num_rows))
    return {path: {"steps": sorted(entry["steps"]), "static": entry["static"],
                   "columns": {name: [v for _, v in sorted(pairs, key=lambda p: p[0])]
                               for name, pairs in entry["columns"].items()}}
            for path, entry in rows.items()}


def as_array(value) -> np.ndarray:
    """One row's Arrow value (a list of scalars, of fixed-size lists, ...) -> a flat numpy array."""
    import pyarrow as pa  # noqa: PLC0415  (rerun's dependency; only reading a recording needs it)

    array = value.values if isinstance(value, pa.Scalar) and hasattr(value, "values") else value
    if array is None:
        return np.zeros(0)
    while pa.types.is_list(array.type) or pa.types.is_large_list(array.type) or pa.types.is_fixed_size_list(array.type):
        array = array.flatten()
    return array.to_numpy(zero_copy_only=False)

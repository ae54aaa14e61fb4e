"""``orv-data view``: episodes and run units logged to a Rerun ``.rrd`` file, read back with
rerun's own reader (``rerun.chunk.RrdReader``) and compared with what was logged.

The Bridge test reads one real episode of the Bridge debug set in ``../shared/data`` (skipped
when that folder is not there); the others use the simulated episodes shipped in
``orv_engine/demo_data`` (depth, segmentation, cameras: their 4D occupancy is built from them)
and a run folder made here in ``orv-augment``'s layout.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

rr = pytest.importorskip("rerun", reason="rerun-sdk is the viewer extra: pip install -e '.[viewer]'")

from orv_engine.data.cli import main  # noqa: E402
from orv_engine.data.sharding import episode_key  # noqa: E402
from orv_engine.occupancy.condition_images import PALETTE  # noqa: E402
from orv_engine.occupancy.from_episode import occupancy_from_episode  # noqa: E402
from orv_engine.occupancy.from_rgb.camera import EpisodeCamera  # noqa: E402
from orv_engine.occupancy.from_rgb.pipeline import EpisodeOccupancy  # noqa: E402
from orv_engine.occupancy.store import OccupancyStore  # noqa: E402
from orv_engine.occupancy.store.store import STORE_FORMAT  # noqa: E402
from orv_engine.viewer.inputs import read_episode  # noqa: E402
from orv_engine.viewer.rerun_view import DIM_NAMES, as_array, read_recording  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "orv_engine" / "demo_data" / "orv_tabletop" / "1.0.0"
BRIDGE = ROOT.parent / "shared" / "data" / "bridge_debug" / "bridge_dataset" / "1.0.0"


@pytest.fixture(scope="module")
def demo_episode():
    return read_episode(DEMO, 1)


def run_view(args, capsys) -> tuple[int, str]:
    code = main(["view", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def check_series(rec, episode) -> None:
    """Every action/state dimension: one scalar per step, equal to the episode's value."""
    steps = list(range(len(episode)))
    for prefix, values in (("action", episode.actions), ("state", episode.states)):
        for d, name in enumerate(DIM_NAMES):
            entry = rec[f"/{prefix}/{name}"]
            assert entry["steps"] == steps
            logged = np.array([as_array(v)[0] for v in entry["columns"]["Scalars:scalars"]])
            np.testing.assert_allclose(logged, values[:, d], rtol=0, atol=1e-6)


def check_images(entry, frames, component: str, dtype) -> None:
    assert entry["steps"] == list(range(len(frames)))
    for t in (0, len(frames) // 2, len(frames) - 1):
        logged = as_array(entry["columns"][component][t]).view(dtype) if dtype != np.uint8 else \
            as_array(entry["columns"][component][t])
        np.testing.assert_array_equal(logged.reshape(frames[t].shape), frames[t])


@pytest.mark.skipif(not BRIDGE.is_dir(), reason=f"Bridge debug set not at {BRIDGE}")
def test_bridge_episode_round_trips(tmp_path, capsys):
    out = tmp_path / "bridge.rrd"
    code, text = run_view([BRIDGE, "--episode", 0, "--out", out], capsys)
    assert code == 0, text
    episode = read_episode(BRIDGE, 0)
    rec = read_recording(out)
    cameras = list(episode.frames)
    assert cameras and f"logged {len(episode)} steps" in text
    expected = {f"/world/cameras/{c}/rgb" for c in cameras} | {"/instruction", "/world"} | \
        {f"/{p}/{n}" for p in ("action", "state") for n in DIM_NAMES}
    assert expected <= set(rec), sorted(expected - set(rec))
    for camera in cameras:
        check_images(rec[f"/world/cameras/{camera}/rgb"], episode.frames[camera], "Image:buffer", np.uint8)
    check_series(rec, episode)
    # Bridge records no depth, segmentation or cameras: no voxels, no pinhole, said by absence
    assert "/world/occupancy" not in rec and not any(p.endswith("/depth") for p in rec)
    assert episode.instruction in rec["/instruction"]["columns"]["TextDocument:text"][0].as_py()[0]


def test_demo_episode_with_occupancy_round_trips(tmp_path, capsys, demo_episode):
    out = tmp_path / "demo.rrd"
    code, text = run_view([DEMO, "--episode", 1, "--out", out], capsys)
    assert code == 0, text
    episode = demo_episode
    occupancy = occupancy_from_episode(episode)
    rec = read_recording(out)
    steps = list(range(len(episode)))
    camera = "image_0"
    base = f"/world/cameras/{camera}"
    check_images(rec[f"{base}/rgb"], episode.frames[camera], "Image:buffer", np.uint8)
    check_images(rec[f"{base}/depth"], episode.depth[camera], "DepthImage:buffer", np.float32)
    check_images(rec[f"{base}/semantics"], episode.segmentation[camera].astype(np.uint16),
                 "SegmentationImage:buffer", np.uint16)
    check_series(rec, episode)
    # the camera: per-step pinhole (K) and camera-to-world transform
    pose = rec[base]
    assert pose["steps"] == steps
    K = as_array(pose["columns"]["Pinhole:image_from_camera"][5]).reshape(3, 3).T  # rerun stores column-major
    np.testing.assert_allclose(K, episode.intrinsics[camera][5], rtol=1e-6)
    np.testing.assert_allclose(as_array(pose["columns"]["Transform3D:translation"][5]),
                               episode.extrinsics[camera][5][:3, 3], rtol=1e-6)
    # the 4D occupancy: one voxel set per step, centres and class ids as built from the episode
    voxels = rec["/world/occupancy"]
    assert voxels["steps"] == steps
    for t in (0, len(steps) - 1):
        positions = as_array(voxels["columns"]["Points3D:positions"][t]).reshape(-1, 3)
        assert positions.shape[0] == occupancy.num_voxels(t) > 100
        np.testing.assert_allclose(positions, occupancy.centers(t), atol=1e-6)
        np.testing.assert_array_equal(as_array(voxels["columns"]["Points3D:class_ids"][t]), occupancy.labels[t])
    # the layout the viewer opens with: the 3D scene, 3 images, 2 plots, the instruction
    blueprint = rr.chunk.RrdReader(str(out)).blueprints()
    assert len(blueprint) == 1
    views = {c.entity_path for c in rr.chunk.RrdReader(str(out)).stream(store=blueprint[0]).to_chunks()
             if c.entity_path.startswith("/view/") and c.entity_path.count("/") == 2}
    assert len(views) == 7
    # class names and colours: the label set of the episode
    context = [c["class_description"]["info"] for c in voxels["columns"]["AnnotationContext:context"][0].as_py()[0]]
    assert [c["label"] for c in context] == list(episode.labels)
    r, g, b = PALETTE[1]
    assert context[1]["color"] == (int(r) << 24) | (int(g) << 16) | (int(b) << 8) | 0xFF  # packed RGBA


def test_demo_episode_from_an_occupancy_store(tmp_path, capsys, demo_episode):
    """--occupancy STORE: voxels, camera and rendered depth/semantics from the store's entry."""
    episode = demo_episode
    occupancy = occupancy_from_episode(episode)
    # the store's entry keeps every other voxel, so that the view's voxels are told from the episode's own
    stored = type(occupancy)(occupancy.grid, [c[::2] for c in occupancy.coords],
                             [lab[::2] for lab in occupancy.labels], occupancy.label_names)
    camera = "image_0"
    h, w = episode.frames[camera].shape[1:3]
    store = tmp_path / "store"
    store.mkdir()
    (store / "store.json").write_text(json.dumps({"format": STORE_FORMAT, "config": {}}))
    key = episode_key(Path(episode.meta.source_file).name, episode.meta.index_in_file)
    cameras = EpisodeCamera(np.asarray(episode.intrinsics[camera], np.float64),
                            np.asarray(episode.extrinsics[camera], np.float64), "dataset")
    OccupancyStore(store).write_episode(key, episode.meta.episode_id,
                                        EpisodeOccupancy(stored, camera, cameras, (h, w)))
    out = tmp_path / "store.rrd"
    code, text = run_view([DEMO, "--episode", 1, "--occupancy", store, "--voxels", "boxes", "--out", out], capsys)
    assert code == 0, text
    rec = read_recording(out)
    voxels = rec["/world/occupancy"]
    centres = as_array(voxels["columns"]["Boxes3D:centers"][3]).reshape(-1, 3)
    np.testing.assert_allclose(centres, stored.centers(3), atol=1e-6)
    np.testing.assert_allclose(as_array(voxels["columns"]["Boxes3D:half_sizes"][3]).reshape(-1, 3),
                               occupancy.grid.voxel_size / 2, rtol=1e-6)
    base = f"/world/cameras/{camera}"
    depth = rec[f"{base}/rendered_depth"]
    assert depth["steps"] == list(range(len(episode)))
    rendered = as_array(depth["columns"]["DepthImage:buffer"][0]).view(np.float32).reshape(h, w)
    recorded = episode.depth[camera][0]
    both = (rendered > 0) & (recorded > 0)
    assert both.mean() > 0.3  # the occupancy covers most of the recorded scene
    assert np.median(np.abs(rendered[both] - recorded[both])) < 0.05  # metres
    assert f"{base}/rendered_semantics" in rec


def make_run(run: Path, unit: str = "ep-000000__replay", key: str = "ep-000000", steps: int = 6) -> dict:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (steps, 16, 16, 3), dtype=np.uint8)
    truth = rng.integers(0, 255, (steps, 16, 16, 3), dtype=np.uint8)
    actions = rng.normal(size=(steps, 7)).astype(np.float32)
    states = rng.normal(size=(steps, 7)).astype(np.float32)
    depth = rng.uniform(0.2, 0.6, (steps, 16, 16)).astype(np.float32)
    semantics = rng.integers(-1, 5, (steps, 16, 16)).astype(np.int32)
    folder = run / "rollouts" / unit
    folder.mkdir(parents=True)
    np.savez(folder / "clip.npz", frames=frames, actions=actions, states=states)
    (folder / "clip.json").write_text(json.dumps({"caption": "pick", "provenance": {}}))
    psnr = list(rng.uniform(15, 25, steps - 1))
    (folder / "rollout.json").write_text(json.dumps({
        "unit": unit, "source_key": key, "instruction": "pick the cube", "variant": "replay",
        "replay": {"psnr_frames": psnr, "ssim_frames": [0.5] * (steps - 1), "skip_first_frames": 1}}))
    source = run / "sources" / key
    source.mkdir(parents=True)
    np.savez(source / "source.npz", first_frame=truth[0], actions=actions, states=states, frames=truth,
             condition_depth=depth, condition_semantics=semantics)
    (source / "source.json").write_text(json.dumps({"key": key, "steps": steps}))
    return dict(frames=frames, truth=truth, actions=actions, states=states, depth=depth, semantics=semantics,
                psnr=psnr)


def test_run_unit_round_trips(tmp_path, capsys):
    run = tmp_path / "run"
    data = make_run(run)
    out = tmp_path / "unit.rrd"
    code, text = run_view([run, "--unit", "ep-000000__replay", "--out", out], capsys)
    assert code == 0, text
    rec = read_recording(out)
    check_images(rec["/rollout/rgb"], data["frames"], "Image:buffer", np.uint8)
    check_images(rec["/ground_truth/rgb"], data["truth"], "Image:buffer", np.uint8)
    check_images(rec["/maps/depth"], data["depth"], "DepthImage:buffer", np.float32)
    empty = data["semantics"].max() + 1  # "-1, no voxel": a class of its own after the ids
    check_images(rec["/maps/semantics"], np.where(data["semantics"] < 0, empty, data["semantics"]).astype(np.uint16),
                 "SegmentationImage:buffer", np.uint16)
    for d, name in enumerate(DIM_NAMES):
        logged = np.array([as_array(v)[0] for v in rec[f"/action/{name}"]["columns"]["Scalars:scalars"]])
        np.testing.assert_allclose(logged, data["actions"][:, d], atol=1e-6)
    psnr = rec["/metrics/psnr"]
    assert psnr["steps"] == list(range(1, 6))
    np.testing.assert_allclose([as_array(v)[0] for v in psnr["columns"]["Scalars:scalars"]], data["psnr"])
    assert json.loads(rec["/unit"]["columns"]["TextDocument:text"][0].as_py()[0])["variant"] == "replay"


@pytest.mark.parametrize("args, needle", [
    (["/nonexistent/dataset", "--episode", "0"], "/nonexistent/dataset"),
    ([DEMO, "--episode", "999"], "no episode 999"),
    ([DEMO, "--episode", "-1"], "no episode -1"),
    ([DEMO, "--episode", "0", "--split", "nosuch"], "no split 'nosuch'"),
    ([DEMO, "--episode", "0", "--occupancy", "/nonexistent/store"], "/nonexistent/store"),
    ([DEMO, "--episode", "0", "--out", "view.txt"], "ends in .rrd"),
    (["/nonexistent/run", "--unit", "u"], "run folder not found: /nonexistent/run"),
])
def test_bad_input_names_it_and_exits_2(tmp_path, capsys, args, needle):
    args = [a if str(a) != "view.txt" else tmp_path / "view.txt" for a in args]
    if "--out" not in args:
        args += ["--out", tmp_path / "x.rrd"]
    code, text = run_view(args, capsys)
    assert code == 2 and needle in text and "Traceback" not in text, text
    assert not list(tmp_path.glob("*.rrd")) and not list(tmp_path.glob(".*.partial"))  # nothing half-written


def test_unknown_unit_lists_the_units(tmp_path, capsys):
    run = tmp_path / "run"
    make_run(run)
    code, text = run_view([run, "--unit", "nosuch", "--out", tmp_path / "x.rrd"], capsys)
    assert code == 2 and "no unit 'nosuch'" in text and "ep-000000__replay" in text, text

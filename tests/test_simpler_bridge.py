"""SimplerEnv's four Bridge tasks, for real, on a format twin of ``bridge_v2_real2sim``.

The twin (:mod:`orv_engine.testing.bridge_real2sim_assets`) has the real layout, JSON keys,
robot and overlay images, and stand-in box meshes; the environment classes are ManiSkill3's
own. Everything goes through ``orv-simpler``'s ``main``: all four task classes with the
scripted policy (2 episodes each, full length), then a probe policy that keeps the exact
first image it is given, to see the real overlay in the observation and that a seed gives
the same configuration in another run. About 2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

import vla_finetune  # noqa: F401  (import order)
from orv_engine.testing.bridge_real2sim_assets import OVERLAYS, TASK_DIR, write_bridge_real2sim_assets
from vla_finetune.simpler.cli import main
from vla_finetune.simpler.tasks import BRIDGE_SUITE, TASKS

pytest.importorskip("mani_skill", reason="the sim extra (mani-skill) is not installed")


def _records(out) -> dict[str, list[dict]]:
    by_task: dict[str, list[dict]] = {}
    for line in (out / "episodes.jsonl").read_text().splitlines():
        record = json.loads(line)
        by_task.setdefault(record["task"], []).append(record)
    return by_task


@pytest.fixture(scope="module")
def twin(tmp_path_factory, shared_data):
    asset_dir = tmp_path_factory.mktemp("ms_assets")
    robot = shared_data / "maniskill" / "data" / "robots" / "widowx"
    write_bridge_real2sim_assets(asset_dir, shared_data / "bridge_real", robot)
    return asset_dir


@pytest.fixture(scope="module")
def probe_run(twin, tmp_path_factory):
    """The Bridge suite through the CLI with a probe policy: 3 short episodes per task."""
    out = tmp_path_factory.mktemp("bridge_probe")
    with pytest.MonkeyPatch.context() as patch:  # the simulator processes inherit the environment
        patch.setenv("ORV_SIMPLER_PROBE_DIR", str(out))
        rc = main(["--policy", "simpler_policies:FirstFrameProbe", "--suite", "bridge", "--episodes", "3",
                   "--max-steps", "2", "--asset-dir", str(twin), "--out", str(out / "eval")])
    return rc, out


def test_twin_has_the_layout_the_loader_reads(twin):
    root = twin / TASK_DIR
    stages = ("stages/bridge_table_1_v1.glb", "stages/bridge_table_1_v2.glb")
    for name in (*stages, *(f"real_inpainting/{o}" for o in OVERLAYS)):
        assert (root / name).is_file(), name
    info = json.loads((root / "custom" / "info_bridge_custom_v0.json").read_text())
    baked = json.loads((root / "custom" / "info_bridge_custom_baked_tex_v0.json").read_text())
    for model_id, entry in {**info, **baked}.items():
        assert set(entry) == {"bbox", "scales", "density"} and set(entry["bbox"]) == {"min", "max"}
        folder = root / "custom" / "models" / model_id
        assert (folder / "collision.obj").is_file()
        assert (folder / "textured.obj").is_file() or (folder / "textured.glb").is_file()
    assert (twin / "data" / "robots" / "widowx" / "wx250s.urdf").is_file()
    assert (root / "stages" / "bridge_table_1_v1.glb").read_bytes()[:4] == b"glTF"


def test_all_four_bridge_tasks_run_with_simplerenv_episode_ids_and_the_real_overlay(probe_run, shared_data):
    rc, out = probe_run
    assert rc == 0
    records = _records(out / "eval")
    metrics = json.loads((out / "eval" / "metrics.json").read_text())
    assert list(records) == list(BRIDGE_SUITE)
    for name, rows in records.items():
        assert [r["error"] for r in rows] == [None] * 3 and [r["steps"] for r in rows] == [2] * 3, rows
        # SimplerEnv's scheme: episode e is episode_id seed + e (seed 0), one configuration each
        assert [r["episode_id"] for r in rows] == [0, 1, 2] and [r["config_id"] for r in rows] == [0, 1, 2]
        assert metrics["tasks"][name]["config_ids"] == [0, 1, 2]
        assert {"success", "is_src_obj_grasped", "src_on_target"} <= set(rows[0]["final_info"])
    # configurations 0, 1, 2 of ManiSkill's tables (position id // 2, rotation id % 2): the carrot
    # on the first grid corner rotated by pi, by -pi/2, by pi; the plate on the second corner,
    # then the third
    poses = [r["initial_poses"] for r in records["carrot_on_plate"]]
    carrot = np.array([p["bridge_carrot_generated_modified"] for p in poses])
    plate = np.array([p["bridge_plate_objaverse_larger"] for p in poses])
    np.testing.assert_allclose(carrot[:, :2], [[-0.235, -0.075]] * 3, atol=2e-3)
    np.testing.assert_allclose(plate[:, :2], [[-0.235, 0.075]] * 2 + [[-0.085, -0.075]], atol=2e-3)
    np.testing.assert_allclose(np.abs(carrot[:, 3:]), [[0, 0, 0, 1], [0.7071, 0, 0, 0.7071], [0, 0, 0, 1]], atol=1e-3)
    # what the policy saw: the real photo wherever neither the robot nor a task object is drawn
    overlay_for = {"put the spoon on the towel": "bridge_real_eval_1.png",
                   "put carrot on plate": "bridge_real_eval_1.png",
                   "stack the green block on the yellow block": "bridge_real_eval_1.png",
                   "put eggplant into yellow basket": "bridge_sink.png"}
    probes = [np.load(f) for f in sorted(out.glob("*.npz"))]
    assert sorted(str(p["instruction"]) for p in probes) == sorted(list(overlay_for) * 3)
    for probe in probes:
        image = probe["image"]
        photo = shared_data / "bridge_real" / overlay_for[str(probe["instruction"])]
        overlay = np.asarray(Image.open(photo).convert("RGB"))
        assert image.shape == overlay.shape == (480, 640, 3) and image.dtype == np.uint8
        from_photo = (image == overlay).all(-1).mean()
        # most of the frame is the photo, pixel for pixel; the robot and the kept objects are drawn over it
        assert 0.6 < from_photo < 0.99, (str(probe["instruction"]), from_photo)


def test_scripted_episodes_succeed_and_a_seed_repeats_its_scene_whatever_ran_before(probe_run, twin, tmp_path):
    rc = main(["--policy", "scripted", "--tasks", "carrot_on_plate", "eggplant_in_basket", "--episodes", "2",
               "--seed", "0", "--asset-dir", str(twin), "--out", str(tmp_path)])
    assert rc == 0
    scripted, probed = _records(tmp_path), _records(probe_run[1] / "eval")
    for name in ("carrot_on_plate", "eggplant_in_basket"):
        rows = scripted[name]
        assert [r["steps"] for r in rows] == [TASKS[name].max_steps] * 2 and all(r["video"] for r in rows)
        # the privileged policy places the object of configuration 0: the environment's own
        # grasp and success flags reach the records
        assert rows[0]["grasped"] and rows[0]["success"], rows[0]
        # episode 1 follows an episode that left the robot over the scene here, an idle one in
        # the probe run: the same seed still gives the same settled scene
        again, before = rows[1], probed[name][1]
        assert (again["episode_id"], again["config_id"]) == (before["episode_id"], before["config_id"]) == (1, 1)
        assert again["initial_poses"].keys() == before["initial_poses"].keys()
        for obj, pose in again["initial_poses"].items():
            np.testing.assert_allclose(pose, before["initial_poses"][obj], atol=1e-4, err_msg=f"{name}: {obj}")

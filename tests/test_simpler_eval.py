"""The SimplerEnv harness for real on ManiSkill3 tasks whose assets are here (CPU, lavapipe)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import vla_finetune  # noqa: F401  (import order)
from vla_finetune.simpler import cli
from vla_finetune.simpler.adapter import BadActionError, ControllerAdapter
from vla_finetune.simpler.evaluate import evaluate
from vla_finetune.simpler.tasks import BRIDGE_SUITE, CI_SUITE, TASKS, get_task


def test_adapter_converts_bridge_actions_to_controller_actions():
    raw = ControllerAdapter(normalize=False)
    out = raw([0.01, -0.02, 0.03, 0.1, -0.2, 0.3, 0.9])
    np.testing.assert_allclose(out[:3], [0.01, -0.02, 0.03], atol=1e-7)
    np.testing.assert_allclose(Rotation.from_rotvec(out[3:6]).as_euler("xyz"), [0.1, -0.2, 0.3], atol=1e-6)
    assert out[6] == 1.0 and raw([0, 0, 0, 0, 0, 0, 0.2])[6] == -1.0  # 1 = open, binarised at 0.5
    scaled = ControllerAdapter(normalize=True, pos_bound=0.1, rot_bound=0.1)(
        [0.05, 0.5, 0, 0, 0, 0.05, 1])
    np.testing.assert_allclose(scaled[:3], [0.5, 1.0, 0.0], atol=1e-6)  # clipped to the controller's range
    np.testing.assert_allclose(scaled[5], 0.5, atol=1e-6)
    for bad in (np.zeros(6), [np.nan] * 7, "left"):
        with pytest.raises(BadActionError):
            raw(bad)


def test_task_table_follows_simplerenv():
    assert [TASKS[t].env_id for t in BRIDGE_SUITE] == [
        "PutSpoonOnTableClothInScene-v1", "PutCarrotOnPlateInScene-v1",
        "StackGreenCubeOnYellowCubeBakedTexInScene-v1", "PutEggplantInBasketScene-v1"]
    assert [TASKS[t].max_steps for t in BRIDGE_SUITE] == [60, 60, 60, 120]
    # 24 configurations each; the eggplant's 64, three times (SimplerEnv's ManiSkill3 eggplant run)
    assert [TASKS[t].episodes for t in BRIDGE_SUITE] == [24, 24, 24, 192]
    # BaseBridgeEnv supports only rgb+segmentation; episodes reset by SimplerEnv's episode ids
    assert all(TASKS[t].obs_mode == "rgb+segmentation" and TASKS[t].reset_by_episode_id for t in BRIDGE_SUITE)
    assert not any(TASKS[t].reset_by_episode_id for t in CI_SUITE)
    assert get_task("PutCarrotOnPlateInScene-v1").name == "carrot_on_plate"


def test_cli_keeps_the_policys_own_execution_convention_unless_asked(monkeypatch, tmp_path, capsys):
    calls = []

    def fake_evaluate(tasks, policy, out, episodes, max_steps, asset_dir, **options):
        calls.append(options)
        return {"tasks": {}, "failed_episodes": 0}

    monkeypatch.setattr(cli, "evaluate", fake_evaluate)
    folder = str(tmp_path)
    assert cli.main(["--policy", folder, "--out", str(tmp_path / "a")]) == 0
    assert "policy_kwargs" not in calls[-1] and calls[-1]["first_seed"] == 0
    cli.main(["--policy", folder, "--execute-steps", "2", "--seed", "5", "--out", str(tmp_path / "b")])
    assert calls[-1]["policy_kwargs"] == {"execute_steps": 2} and calls[-1]["first_seed"] == 5
    cli.main(["--policy", folder, "--execution", "ensemble", "--out", str(tmp_path / "c")])
    assert calls[-1]["policy_kwargs"] == {"execution": "ensemble"}
    with pytest.raises(SystemExit):
        cli.main(["--policy", "scripted", "--execution", "chunk", "--out", str(tmp_path / "d")])


def test_scripted_policy_through_the_adapter_grasps_and_succeeds(tmp_path, shared_data):
    summary = evaluate(CI_SUITE, "scripted", tmp_path, episodes=1, asset_dir=str(shared_data / "maniskill"))
    for name in CI_SUITE:
        task = summary["tasks"][name]
        assert task["errors"] == {} and task["grasp_rate"] == 1.0 and task["success_rate"] == 1.0, task
    records = [json.loads(line) for line in (tmp_path / "episodes.jsonl").read_text().splitlines()]
    assert len(records) == 2 and all(r["video"] and r["steps"] > 5 for r in records)
    assert (tmp_path / "metrics.csv").read_text().count("\n") == 3 and (tmp_path / "success_by_task.png").is_file()


def test_bad_policies_unknown_tasks_and_missing_assets_are_recorded_and_the_run_goes_on(tmp_path, shared_data):
    empty_assets = tmp_path / "assets"
    empty_assets.mkdir()
    summary = evaluate(["no_such_task", "carrot_on_plate", "widowx_cube_on_towel"], "simpler_policies:MisbehavingPolicy",
                       tmp_path / "out", episodes=4, max_steps=3, asset_dir=str(shared_data / "maniskill"))
    records = [json.loads(line) for line in (tmp_path / "out" / "episodes.jsonl").read_text().splitlines()]
    assert summary["tasks"]["no_such_task"]["errors"] == {"unknown task": 4}
    carrot = [r["error"] for r in records if r["task"] == "carrot_on_plate"]
    assert all("download_asset bridge_v2_real2sim" in e for e in carrot)
    widowx = [r for r in records if r["task"] == "widowx_cube_on_towel"]
    assert "non-finite" in widowx[0]["error"] and "shape (7,)" in widowx[1]["error"]
    assert "policy exploded" in widowx[2]["error"] and widowx[3]["error"] is None and widowx[3]["steps"] == 3
    assert summary["failed_episodes"] == 4 + 4 + 3
    # a missing asset leaves no (empty) folder behind
    evaluate(["carrot_on_plate"], "scripted", tmp_path / "out2", episodes=1, asset_dir=str(empty_assets))
    assert list(empty_assets.iterdir()) == []


def test_a_tiny_trained_policy_runs_through_the_harness(tmp_path, shared_data, bridge_debug):
    from vla_fixtures import train_tiny, write_statistics

    from orv_engine.testing.tiny_vla import build_tiny_kosmos2

    backbone = build_tiny_kosmos2(tmp_path / "kosmos2")
    statistics = write_statistics(bridge_debug, tmp_path / "dataset_statistics_openvla.json")
    train_tiny("tiny_robovlm", tmp_path, backbone, bridge_debug, statistics, steps=4, options={"history_len": 2})
    policy = tmp_path / "run" / "final"
    summary = evaluate(["widowx_cube_on_towel"], str(policy), tmp_path / "eval", episodes=2, max_steps=6,
                       asset_dir=str(shared_data / "maniskill"), policy_kwargs={"execution": "ensemble"})
    task = summary["tasks"]["widowx_cube_on_towel"]
    assert task["errors"] == {} and task["ran"] == 2, task
    records = [json.loads(line) for line in (tmp_path / "eval" / "episodes.jsonl").read_text().splitlines()]
    assert all(r["steps"] == 6 and r["video"] for r in records)
    assert records[0]["instruction"].startswith("put the")


def test_a_killed_evaluation_resumes_with_the_missing_episodes_only(tmp_path, shared_data, capsys):
    """Killed after one episode and half a line: the rerun keeps the first, runs the other two,
    and gives the uninterrupted run's records; other settings in the same folder are refused."""
    assets = str(shared_data / "maniskill")
    whole = evaluate(["widowx_cube_on_towel"], "scripted", tmp_path / "whole", episodes=3, max_steps=8,
                     asset_dir=assets)
    expected = [json.loads(line) for line in (tmp_path / "whole" / "episodes.jsonl").read_text().splitlines()]
    assert whole["resumed_episodes"] == 0 and len(expected) == 3

    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "evaluation.json").write_text((tmp_path / "whole" / "evaluation.json").read_text())
    lines = (tmp_path / "whole" / "episodes.jsonl").read_text().splitlines()
    (killed / "episodes.jsonl").write_text(lines[0] + "\n" + lines[1][: len(lines[1]) // 2])  # cut mid-write
    resumed = evaluate(["widowx_cube_on_towel"], "scripted", killed, episodes=3, max_steps=8, asset_dir=assets)
    assert resumed["resumed_episodes"] == 1
    printed = capsys.readouterr().out
    assert "resume: 1 episode(s)" in printed and "1 unreadable line(s) dropped" in printed
    got = [json.loads(line) for line in (killed / "episodes.jsonl").read_text().splitlines()]
    drop = ("seconds", "video")
    assert [{k: v for k, v in r.items() if k not in drop} for r in got] == \
        [{k: v for k, v in r.items() if k not in drop} for r in expected]
    assert sorted(p.name for p in (killed / "videos" / "widowx_cube_on_towel").iterdir()) == \
        ["episode_001.mp4", "episode_002.mp4"]  # episode 0 was not run again
    assert resumed["tasks"] == whole["tasks"]

    # done: nothing runs; other settings: refused, naming what differs; --overwrite starts over
    again = evaluate(["widowx_cube_on_towel"], "scripted", killed, episodes=3, max_steps=8, asset_dir=assets)
    assert again["resumed_episodes"] == 3
    assert cli.main(["--policy", "scripted", "--tasks", "widowx_cube_on_towel", "--episodes", "3", "--max-steps",
                     "9", "--asset-dir", assets, "--out", str(killed)]) == 2
    assert "max_steps: 8 -> 9" in capsys.readouterr().err
    assert cli.main(["--policy", "scripted", "--tasks", "widowx_cube_on_towel", "--episodes", "1", "--max-steps",
                     "9", "--asset-dir", assets, "--out", str(killed), "--overwrite"]) == 0
    assert len((killed / "episodes.jsonl").read_text().splitlines()) == 1


def test_episodes_that_never_started_are_tried_again(tmp_path, shared_data):
    """A missing asset on the first run is recorded; once the assets are there, the rerun runs them."""
    empty = tmp_path / "empty"
    empty.mkdir()
    first = evaluate(["widowx_cube_on_towel"], "scripted", tmp_path / "out", episodes=1, max_steps=4,
                     asset_dir=str(empty))
    assert first["failed_episodes"] == 1
    settings = json.loads((tmp_path / "out" / "evaluation.json").read_text())
    assert settings["episodes"] == {"widowx_cube_on_towel": 1} and settings["max_steps"] == 4
    second = evaluate(["widowx_cube_on_towel"], "scripted", tmp_path / "out", episodes=1, max_steps=4,
                      asset_dir=str(shared_data / "maniskill"))
    assert second["resumed_episodes"] == 0 and second["failed_episodes"] == 0

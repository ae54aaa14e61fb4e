"""The VP² benchmark for real in the simulator (robosuite 1.5.2, RoboDesk, MuJoCo 3.3.7),
in the side venv built by ``scripts/setup_vp2_venv.sh`` (robosuite needs numpy<2), in one
subprocess (tests/vp2_side_checks.py): a small CLI run with the tiny world model and the simulator oracle, and the bad-input paths (NaN
predictions, a crashing model, an unknown task id) recorded per episode.

Skipped when ``.venv-vp2`` is missing (with the command to build it) or ``ORV_SKIP_VP2=1``.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VP2_PYTHON = Path(os.environ.get("VP2_VENV", ROOT / ".venv-vp2")) / "bin" / "python"

pytestmark = pytest.mark.skipif(
    os.environ.get("ORV_SKIP_VP2") == "1" or not VP2_PYTHON.is_file(),
    reason=f"VP² venv not found at {VP2_PYTHON} (bash scripts/setup_vp2_venv.sh) or ORV_SKIP_VP2=1",
)


def _run(args, timeout=600):
    env = {**os.environ, "MUJOCO_GL": os.environ.get("MUJOCO_GL", "egl")}
    done = subprocess.run([str(VP2_PYTHON), *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def tiny_world_model(tmp_path_factory):
    from benchmarks.vp2.tiny_world_model import save_tiny_world_model

    return save_tiny_world_model(tmp_path_factory.mktemp("vp2-run") / "orv-tiny-action", action_dim=7)


@pytest.fixture(scope="module")
def side_checks(tiny_world_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("vp2-cli") / "run"
    stdout = _run([str(ROOT / "tests" / "vp2_side_checks.py"), str(tiny_world_model), str(out)])
    line = [l for l in stdout.splitlines() if l.startswith("VP2_RESULT ")][-1]
    return {**json.loads(line[len("VP2_RESULT "):]), "cli_out": out, "stdout": stdout}


def test_cli_runs_model_and_oracle_and_records_unknown_tasks(side_checks):
    out, stdout = side_checks["cli_out"], side_checks["stdout"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["unknown_tasks"] == ["robosuite/lift_the_moon"] and not summary["complete"]
    assert "unknown VP² task id 'robosuite/lift_the_moon'" in summary["tasks"]["robosuite/lift_the_moon"]["error_messages"][0]
    push = summary["tasks"]["robosuite/push"]
    assert push["episodes"] == 1 and push["completed"] == 1 and push["errors"] == 0
    assert push["success_rate"] in (0.0, 1.0)
    assert summary["oracle"]["robosuite/push"]["completed"] == 1
    assert "normalised_score" in summary and summary["config"]["horizon"] == 2
    rows = list(csv.DictReader(open(out / "episodes.csv")))
    assert {(r["model"], r["task"], r["status"]) for r in rows} == {
        ("orv", "robosuite/push", "ok"), ("orv", "robosuite/lift_the_moon", "unknown_task"),
        ("simulator", "robosuite/push", "ok"), ("simulator", "robosuite/lift_the_moon", "unknown_task"),
    }
    ok = [r for r in rows if r["status"] == "ok"]
    assert all(int(r["steps"]) == 3 and float(r["start_score"]) > 0.07 for r in ok)  # pushes >= 1.5x 5 cm
    assert float(ok[0]["plan_seconds_per_step"]) > 0
    assert (out / "frames" / "robosuite_push_000.png").is_file()
    assert "unknown_task" in stdout


def test_nan_predictions_and_crashes_are_recorded_and_the_run_goes_on(side_checks):
    faults = side_checks["faults"]
    assert [r["episode"] for r in faults] == [0, 1, 2]
    assert faults[0]["status"] == "error" and "NaN" in faults[0]["error"] and "InvalidPlanError" in faults[0]["error"]
    assert faults[1]["status"] == "error" and "simulated crash" in faults[1]["error"]
    assert faults[2]["status"] == "ok" and faults[2]["steps"] == 2 and faults[2]["success"] is not None


def test_simulator_oracle_and_push_goals(side_checks):
    assert side_checks["oracle_restores_state"]
    assert side_checks["oracle_max_abs_diff"] < 1e-6  # the oracle shows exactly what stepping shows
    assert side_checks["oracle_frames_change"] > 1e-3  # and the actions did move something
    assert side_checks["push_goal_score"] == 0.0
    assert side_checks["push_start_score"] > 1.5 * side_checks["push_threshold"]
    assert side_checks["goal_image"] == [[64, 64, 3], "uint8"]


def test_robodesk_goal_is_rendered_success_and_plans_with_padded_actions(side_checks):
    assert side_checks["robodesk_goal_score"] == -1.0  # RoboDesk's success reward at the goal
    assert side_checks["robodesk_start_score"] == 0.0
    episode = side_checks["robodesk_episode"]
    assert episode["status"] == "ok" and episode["steps"] == 2 and episode["task"] == "robodesk/push_red"

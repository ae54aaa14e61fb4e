"""``orv-convert robovlms`` / ``orv-convert spatialvla`` on format twins of the released
checkpoints, and ``load_policy`` running each converted folder with its own release's
execution convention (the numerical equivalence to the raw weights is in
test_vla_robovlms_release.py and test_vla_spatialvla_release.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

import vla_finetune  # noqa: F401  (import order)
from vla_finetune.convert_cli import main as convert_main
from orv_engine.testing.released_robovlms import write_released_robovlms
from orv_engine.testing.released_spatialvla import build_released_spatialvla
from vla_finetune.policies.interface import ActionChunkExecutor, GripperOpenAfter, TemporalEnsembler, load_policy


def test_robovlms_through_the_cli_runs_its_first_action_of_each_chunk(tmp_path, capsys):
    files = write_released_robovlms(tmp_path / "release")
    dst = tmp_path / "robovlms-oxe"
    assert convert_main(["robovlms", str(files["checkpoint"]), str(dst), "--statistics", str(files["statistics"]),
                         "--backbone", str(files["backbone"]), "--config", str(files["config"])]) == 0
    assert f"wrote {dst}" in capsys.readouterr().out
    policy = load_policy(dst)  # RoboVLMs' Simpler wrapper: first action of each chunk, gripper rule
    assert isinstance(policy, GripperOpenAfter) and policy.count == 2
    assert isinstance(policy.policy, ActionChunkExecutor) and policy.policy.execute_steps == 1
    policy.reset("put the spoon on the towel")
    action = policy.act(np.zeros((32, 32, 3), np.uint8))
    assert action.shape == (7,) and np.isfinite(action).all() and action[6] in (0.0, 1.0)
    assert load_policy(dst, execute_steps=2, gripper_open_after=1).execute_steps == 2  # the caller decides
    # a second conversion into the same folder, and a checkpoint without statistics: named, exit 2
    assert convert_main(["robovlms", str(files["checkpoint"]), str(dst), "--statistics", str(files["statistics"]),
                         "--backbone", str(files["backbone"])]) == 2
    missing = tmp_path / "no_stats.json"
    assert convert_main(["robovlms", str(files["checkpoint"]), str(tmp_path / "other"), "--statistics", str(missing),
                         "--backbone", str(files["backbone"])]) == 2
    assert str(missing) in capsys.readouterr().err


def test_spatialvla_through_the_cli_ensembles_as_released(tmp_path, capsys):
    src = build_released_spatialvla(tmp_path / "spatialvla-4b-224-pt")
    with pytest.raises(ValueError, match="orv-convert spatialvla SRC DST"):
        load_policy(src)  # the release as it is: a hint, not a bare model_type error
    dst = tmp_path / "spatialvla-converted"
    assert convert_main(["spatialvla", str(src), str(dst), "--dataset", "bridge_orig/1.0.0"]) == 0
    config = json.loads((dst / "config.json").read_text())
    policy = load_policy(dst)
    assert isinstance(policy, TemporalEnsembler)
    assert policy.weight_decay == pytest.approx(config["ensemble_weight_decay"]) and policy.weight_decay < 0
    policy.reset("put the carrot on the plate")
    assert policy.act(np.zeros((48, 64, 3), np.uint8)).shape == (7,)
    assert convert_main(["spatialvla", str(src), str(tmp_path / "x"), "--dataset", "no_such_dataset"]) == 2
    assert "no_such_dataset" in capsys.readouterr().err

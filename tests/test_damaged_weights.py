"""A damaged weights file (an interrupted download or copy) is named before any loader meets it:
the header check of every loader of a user-given folder, and the commands' clean exit."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import augment  # noqa: F401  (import order)
from augment.config import check_inputs, config_from_dict
from orv_engine.config_validation import ConfigError
from orv_engine.weight_files import CheckpointError, check_weight_files
from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.model_folders import check_model_folder
from orv_engine.pipelines.pipeline_orv import ORVPipeline
from vla_finetune.policies.common import check_model_folder as check_policy_folder

SHIPPED = Path(__file__).resolve().parents[1] / "orv_engine" / "pretrained" / "small_orv"


@pytest.fixture()
def damaged_pipeline(tmp_path) -> tuple[Path, Path]:
    """A copy of the shipped small ORV pipeline whose VAE weights lost their second half."""
    folder = tmp_path / "small_orv"
    shutil.copytree(SHIPPED, folder)
    weights = folder / "vae" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    return folder, weights


def test_the_shipped_pipeline_passes_the_check():
    check_weight_files(SHIPPED)


def test_a_truncated_file_is_named(damaged_pipeline):
    folder, weights = damaged_pipeline
    with pytest.raises(CheckpointError, match=f"{weights} is truncated"):
        check_weight_files(folder)
    with pytest.raises(CheckpointError, match=f"{weights} is truncated"):
        ORVPipeline.from_pretrained(folder)


def test_a_foreign_file_and_a_missing_shard_are_named(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"<html>404 not found</html>")
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"a": "model-00001-of-00002.safetensors"}}))
    with pytest.raises(CheckpointError) as error:
        check_weight_files(tmp_path)
    message = str(error.value)
    assert f"{tmp_path / 'model.safetensors'} is not a readable safetensors file" in message
    assert "model-00001-of-00002.safetensors" in message and "missing" in message


def test_orv_augment_refuses_before_starting(damaged_pipeline):
    folder, weights = damaged_pipeline
    config = config_from_dict({"rollout": {"model": str(folder)}, "score": {"checks_only": True}})
    with pytest.raises(ConfigError, match=f"(?s)rollout.model: .*{weights} is truncated"):
        check_inputs(config, ["rollouts"])


def test_model_folders_of_occupancy_and_policies(tmp_path, damaged_pipeline):
    folder, _ = damaged_pipeline
    vae = folder / "vae"
    (vae / "config.json").write_text(json.dumps({"model_type": "depth_pro"}))
    with pytest.raises(OccupancyInputError, match=f"(?s)model_path: .*{vae}.*truncated"):
        check_model_folder("model_path", vae, ("depth_pro",))
    with pytest.raises(CheckpointError, match=f"(?s){vae}.*truncated"):
        check_policy_folder(vae, "Kosmos-2 backbone")


def test_orv_train_names_the_damaged_file_and_exits_2(damaged_pipeline, tmp_path, capsys):
    from orv_engine.training.cli import main

    folder, weights = damaged_pipeline
    config = Path(__file__).resolve().parents[1] / "configs" / "tiny.yaml"
    code = main([str(config), "--set", f"model.pretrained_path={folder}", "--set", f"output_dir={tmp_path / 'run'}",
                 "--set", f"data.latents_dir={tmp_path / 'latents'}", "--set", "train.max_steps=1"])
    assert code == 2
    assert f"{weights} is truncated" in capsys.readouterr().err

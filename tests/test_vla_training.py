"""The VLA trainer: exact resume, logs, config checks, the orv-vla-train CLI, the paper configs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from vla_fixtures import PROJECT_ROOT, tiny_config, write_statistics


@pytest.fixture(scope="module")
def setup_files(tmp_path_factory, bridge_debug):
    from orv_engine.testing.tiny_vla import build_tiny_kosmos2

    tmp = tmp_path_factory.mktemp("vla_training")
    return {"tmp": tmp, "backbone": build_tiny_kosmos2(tmp / "kosmos2"),
            "statistics": write_statistics(bridge_debug, tmp / "dataset_statistics_openvla.json")}


def _config(setup_files, bridge_debug, out: str, **train):
    config = tiny_config("tiny_robovlm", setup_files["tmp"] / out, setup_files["backbone"], bridge_debug,
                         setup_files["statistics"], batch_size=2, **train)
    config.policy.options.update(history_len=2, chunk_size=2)
    config.data.shuffle_buffer = 16
    return config


def test_exact_resume(setup_files, bridge_debug):
    from vla_finetune.training.trainer import VLATrainer

    quiet = dict(log=lambda message: None)
    straight = VLATrainer(_config(setup_files, bridge_debug, "straight", max_steps=4, checkpoint_every=2), **quiet)
    reference = straight.train()["losses"]

    config = _config(setup_files, bridge_debug, "resumed", max_steps=4, checkpoint_every=2)
    first = VLATrainer(config, **quiet).train(stop_after=2)["losses"]
    out = Path(config.output_dir)
    checkpoint = out / "checkpoints" / "checkpoint-0000002"
    assert (checkpoint / "train_state.json").is_file() and (checkpoint / "stream-rank0.json").is_file()
    assert json.loads((checkpoint / "stream-rank0.json").read_text()) == {"epoch": 0, "position": 2}
    second = VLATrainer(config, **quiet).train(resume="latest")["losses"]
    assert first + second == pytest.approx(reference, rel=1e-5, abs=1e-7)
    assert len(set(round(x, 6) for x in reference)) == 4  # the batches differ: a real position restore

    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [2, 4] or [r["step"] for r in log][-1] == 4
    assert list((out / "logs").rglob("events.out.tfevents.*")), "no TensorBoard event file"
    assert (out / "final" / "model.safetensors").is_file()


def test_a_damaged_checkpoint_is_named_and_latest_passes_over_it(setup_files, bridge_debug):
    """A checkpoint damaged after it was written (a truncated weights file, a cut optimizer file):
    ``--resume latest`` resumes from the newest intact one and says so; naming the damaged one
    is a CheckpointError naming the file, not a bare traceback."""
    from orv_engine.weight_files import CheckpointError, check_training_checkpoint
    from vla_finetune.training.trainer import VLATrainer

    config = _config(setup_files, bridge_debug, "damaged", max_steps=4, checkpoint_every=2)
    VLATrainer(config, log=lambda message: None).train(stop_after=4)
    root = Path(config.output_dir) / "checkpoints"
    newest, older = root / "checkpoint-0000004", root / "checkpoint-0000002"
    weights = next(newest.glob("*model.*"))  # accelerate's model file (.bin or .safetensors)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    messages = []
    summary = VLATrainer(config, log=messages.append).train(resume="latest")
    assert any("passing over a damaged checkpoint" in m and "checkpoint-0000004" in m for m in messages), messages
    assert any(m.startswith("resumed from") and older.name in m for m in messages), messages
    assert summary["step"] == 4 and (newest / "train_state.json").is_file()  # step 4 saved again, intact
    check_training_checkpoint(newest)
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=f"{weights.name}"):
        VLATrainer(config, log=lambda message: None).train(resume=str(newest))
    stream = older / "stream-rank0.json"  # a file torch does not write: read when loading
    stream.write_text(stream.read_text()[:5])
    with pytest.raises(CheckpointError, match="checkpoint-0000002 cannot be resumed from"):
        VLATrainer(config, log=lambda message: None).train(resume=str(older))
    optimizer = older / "optimizer.bin"
    optimizer.write_bytes(optimizer.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="optimizer.bin is not a complete torch file"):
        VLATrainer(config, log=lambda message: None).train(resume=str(older))


def test_config_errors(setup_files, bridge_debug, tmp_path):
    from orv_engine.config_validation import ConfigError
    from vla_finetune.training.config import config_from_dict

    good = yaml.safe_load((PROJECT_ROOT / "configs" / "vla" / "tiny_robovlm.yaml").read_text())
    good["policy"]["pretrained_path"] = str(setup_files["backbone"])
    good["data"]["datasets"] = [{"path": str(bridge_debug), "weight": 1.0}]
    good["data"]["statistics"] = str(setup_files["statistics"])
    config_from_dict(good)
    cases = [
        (["train.max_stepz=3"], "train.max_stepz: unknown key"),
        (["policy.kind=openvla"], "policy.kind: must be one of"),
        (["policy.options.lstm_hiden=3"], "policy.options.lstm_hiden: not a RoboVLMConfig field"),
        ([f"policy.pretrained_path={tmp_path / 'nothing'}"], "policy.pretrained_path: .* not a model folder"),
        ([f"data.statistics={tmp_path / 'missing.json'}"], "data.statistics: .*missing.json does not exist"),
        (["data.statistics=null"], "data.statistics: required"),
        (["optim.learning_rate=-1"], "optim.learning_rate: must be > 0"),
        ([f"data.datasets=[{{path: {tmp_path / 'no_data'}}}]"], r"data.datasets\[0\].path: .* does not exist"),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError, match=message):
            config_from_dict(good, overrides)


def test_cli_check_and_errors(setup_files, bridge_debug, tmp_path, capsys):
    from vla_finetune.train_cli import main

    config = tmp_path / "c.yaml"
    values = yaml.safe_load((PROJECT_ROOT / "configs" / "vla" / "tiny_spatialvla.yaml").read_text())
    values["data"]["datasets"] = [{"path": str(bridge_debug), "weight": 1.0}]
    values["data"]["statistics"] = str(setup_files["statistics"])
    values["policy"]["pretrained_path"] = str(tmp_path / "missing_paligemma")
    config.write_text(yaml.safe_dump(values))
    assert main([str(config), "--check"]) == 2
    assert "policy.pretrained_path" in capsys.readouterr().err
    assert main([str(config), "--check", "--set", f"policy.pretrained_path={setup_files['backbone']}"]) == 0
    assert "kind: spatialvla" in capsys.readouterr().out


def test_paper_configs_hold_the_paper_recipe():
    from vla_finetune.training.config import load_config

    robovlm = load_config(PROJECT_ROOT / "configs" / "vla" / "robovlm_bridge_orv.yaml", check_paths=False)
    assert robovlm.policy.kind == "robovlm" and robovlm.optim.optimizer == "adam"
    assert robovlm.optim.learning_rate == 2e-5 and robovlm.optim.max_grad_norm == 1.0
    assert robovlm.policy.options == {"history_len": 16, "chunk_size": 10, "lstm_hidden_size": 1024,
                                      "lstm_num_layers": 4, "arm_loss": "huber", "gripper_loss_weight": 0.01}
    spatial = load_config(PROJECT_ROOT / "configs" / "vla" / "spatialvla_bridge_orv.yaml", check_paths=False)
    assert spatial.policy.kind == "spatialvla" and spatial.policy.lora
    assert spatial.optim.learning_rate == 5e-4
    assert (spatial.policy.options["lora_rank"], spatial.policy.options["lora_alpha"],
            spatial.policy.options["chunk_size"]) == (32, 32, 4)
    for config in (robovlm, spatial):
        assert config.train.mixed_precision == "bf16" and config.data.mixture
    for name in ("ddp_8gpu", "deepspeed_zero2", "fsdp_8gpu"):
        values = yaml.safe_load((PROJECT_ROOT / "configs" / "vla" / "accelerate" / f"{name}.yaml").read_text())
        assert values["mixed_precision"] == "bf16" and values["num_processes"] == 8


def test_config_reads_an_orv_export_mixture(setup_files, tiny_bridge, tmp_path):
    """``data.mixture``: the mixture.json of `orv-export merge` gives datasets, weights and statistics."""
    from rlds_fixtures import bridge_episode, write_bridge

    from vla_finetune.mixture import write_mixture
    from vla_finetune.training.config import config_from_dict, mixture_datasets

    synthetic = write_bridge(tmp_path / "tfds", {"train": [bridge_episode(8, seed=9)]}, name="orv_bridge")
    description = write_mixture(tiny_bridge, synthetic, tmp_path / "mix", synthetic_fraction=0.25)
    values = yaml.safe_load((PROJECT_ROOT / "configs" / "vla" / "tiny_robovlm.yaml").read_text())
    values["policy"]["pretrained_path"] = str(setup_files["backbone"])
    values["data"] = {"mixture": str(tmp_path / "mix" / "mixture.json")}
    config = config_from_dict(values)
    entries, statistics = mixture_datasets(config)
    assert [e.weight for e in entries] == pytest.approx([1.0, 1 / 3])
    assert Path(entries[0].path).resolve() == Path(tiny_bridge).resolve()
    assert Path(entries[1].path).resolve() == Path(synthetic).resolve()
    assert statistics == description["statistics"]["openvla"]

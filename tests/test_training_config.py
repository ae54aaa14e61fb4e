"""Training configs fail before any work, naming the key; the shipped configs are valid."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from orv_engine.training.cli import main
from orv_engine.training.config import ConfigError, config_from_dict, load_config
from orv_engine.training.config_mv import load_multiview_config
from orv_engine.training.vae import load_config as load_vae_config

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def paths(tmp_path):
    model = tmp_path / "model"
    for sub in ("vae", "scheduler", "text_encoder", "tokenizer", "transformer"):
        (model / sub).mkdir(parents=True)
    data = tmp_path / "data"
    data.mkdir()
    return {"model": {"pretrained_path": str(model)}, "data": {"path": str(data), "preset": "bridge-tiny"},
            "output_dir": str(tmp_path / "out")}


def test_a_good_config_loads_with_overrides(paths):
    config = config_from_dict(paths, ["train.max_steps=7", "optim.learning_rate=3e-4", "model.condition_kinds=[depth]"])
    assert config.train.max_steps == 7
    assert config.optim.learning_rate == pytest.approx(3e-4)
    assert config.model.condition_kinds == ["depth"]
    assert config.optim.betas == [0.9, 0.95] and config.optim.weight_decay == 1e-3


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["train.max_stepz=5"], "train.max_stepz"),
        (["optimizer.lr=1"], "optimizer"),
        (["data.clip.num_framez=8"], "data.clip.num_framez"),
        (["train.ema.decai=0.9"], "train.ema.decai"),
    ],
)
def test_unknown_keys_are_named(paths, overrides, key):
    with pytest.raises(ConfigError, match=rf"^{key.replace('.', '[.]')}: unknown key"):
        config_from_dict(paths, overrides)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["train.max_steps=many"], "train.max_steps"),
        (["train.max_steps=2.5"], "train.max_steps"),
        (["optim.learning_rate=fast"], "optim.learning_rate"),
        (["model.gradient_checkpointing=3"], "model.gradient_checkpointing"),
        (["model.condition_kinds=depth"], "model.condition_kinds"),
        (["train.ema=on"], "train.ema"),
        (["model.condition_kinds=[normals]"], "model.condition_kinds"),
        (["train.mixed_precision=fp8"], "train.mixed_precision"),
        (["optim.lr_scheduler=wiggly"], "optim.lr_scheduler"),
        (["loss.null_action_prob=1.5"], "loss.null_action_prob"),
        (["train.batch_size=0"], "train.batch_size"),
        (["data.clip.num_frames=10"], "data.clip"),
    ],
)
def test_wrong_types_and_values_are_named(paths, overrides, key):
    with pytest.raises(ConfigError, match=rf"^{key.replace('.', '[.]')}"):
        config_from_dict(paths, overrides)


def test_missing_paths_are_named(paths, tmp_path):
    with pytest.raises(ConfigError, match=r"^model\.pretrained_path: path .* does not exist"):
        config_from_dict(paths, [f"model.pretrained_path={tmp_path / 'nowhere'}"])
    with pytest.raises(ConfigError, match=r"^data\.path: path .* does not exist"):
        config_from_dict(paths, [f"data.path={tmp_path / 'no-data'}"])
    with pytest.raises(ConfigError, match=r"^model\.transformer_path: path"):
        config_from_dict(paths, [f"model.transformer_path={tmp_path / 'no-transformer'}"])
    with pytest.raises(ConfigError, match=r"^model\.pretrained_path: required"):
        config_from_dict({k: v for k, v in paths.items() if k != "model"})


def test_the_command_fails_before_any_work(paths, tmp_path, capsys):
    import yaml

    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({**paths, "train": {"max_stepz": 3}}))
    start = time.perf_counter()
    assert main([str(config)]) == 2
    assert main([str(config), "--set", "train.max_stepz=null", "--set", "data.path=/no/such/dataset"]) == 2
    assert time.perf_counter() - start < 20  # no model, data or accelerate set-up
    err = capsys.readouterr().err
    assert "train.max_stepz: unknown key" in err
    assert not (tmp_path / "out").exists()  # nothing was created


def test_shipped_configs_are_valid():
    configs = sorted((ROOT / "configs").glob("**/*.yaml"))
    training = [p for p in configs if not {"accelerate", "augment", "vla", "small_painter"} & set(p.parts)  # other tools' configs
                and not p.name.startswith("vae")]  # orv-vae-train's
    assert len(training) >= 8
    for name in ("vae.yaml", "vae_restart.yaml"):
        vae = load_vae_config(ROOT / "configs" / "small" / name, check_paths=False)
        assert vae.data.num_frames % 4 == 1 and len(vae.model.block_out_channels) == 3
    restart = load_vae_config(ROOT / "configs" / "small" / "vae_restart.yaml", check_paths=False)
    assert restart.model.pretrained_path == "outputs/small/vae/final/vae"
    for path in training:  # ORV-MV configs (a multiview section) go through their own loader
        multiview = "multiview" in yaml.safe_load(path.read_text())
        config = (load_multiview_config if multiview else load_config)(path, check_paths=False)
        assert config.optim.betas == [0.9, 0.95] and config.optim.weight_decay == pytest.approx(1e-3)
    for dataset, preset in (("bridge", "bridge"), ("droid", "droid"), ("rt1", "rt1")):
        stage1 = load_config(ROOT / "configs" / dataset / "stage1.yaml", check_paths=False)
        stage2 = load_config(ROOT / "configs" / dataset / "stage2.yaml", check_paths=False)
        assert stage1.data.preset == stage2.data.preset == preset
        assert (stage1.train.max_steps, stage1.optim.learning_rate, stage1.optim.lr_warmup_steps) == (30000, 1e-4, 1000)
        assert stage1.model.condition_kinds == [] and stage2.model.condition_kinds == ["depth", "semantics"]
        assert stage2.model.transformer_path.startswith(stage1.output_dir)


def test_orv_train_runs_multiview_by_config(tmp_path, capsys):
    """One entry point: a config with a ``multiview`` section is an ORV-MV run."""
    from orv_engine.training.cli import load_run_config, main, main_multiview
    from orv_engine.training.config import Config
    from orv_engine.training.config_mv import MultiViewConfig

    root = Path(__file__).resolve().parents[1] / "configs"
    assert type(load_run_config(root / "tiny_mv.yaml", check_paths=False)) is MultiViewConfig
    assert type(load_run_config(root / "tiny.yaml", check_paths=False)) is Config
    assert main([str(root / "tiny_mv.yaml"), "--check"]) == 2  # checked as an ORV-MV config: its paths are missing here
    assert "orv-train: config error" in capsys.readouterr().err
    assert main_multiview([str(root / "tiny.yaml"), "--check"]) == 2
    assert "has no multiview section" in capsys.readouterr().err

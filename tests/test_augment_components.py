"""First-frame painting (FLUX + XLabs-style ControlNets) and the Ray mode, on tiny models."""

from __future__ import annotations

import numpy as np
import pytest

import augment  # noqa: F401  (import order)
import augment.demo
from augment.config import ControlNetConfig, config_from_dict
from augment.demo import write_demo_models
from augment.first_frames import FirstFramePainter
from augment.manifest import Manifest
from orv_engine.atomic_files import atomic_write_text
from orv_engine.data.sharding import parse_shard


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return write_demo_models(tmp_path_factory.mktemp("augment_models"))


def maps(seed: int):
    rng = np.random.default_rng(seed)
    depth = np.full((64, 64), 0.8, np.float32)
    depth[16:48, 16:48] = rng.uniform(0.3, 0.5)
    labels = np.zeros((64, 64), np.int32)
    labels[16:48, 16:48] = rng.integers(1, 10)
    return {"depth": depth, "semantics": labels}


def test_painter_is_seeded_and_follows_prompt_and_control_images(models):
    painter = FirstFramePainter(models / "flux", [
        ControlNetConfig(str(models / "controlnet-depth"), "depth", 0.8),
        ControlNetConfig(str(models / "controlnet-semantics"), "semantics", 0.8)], num_inference_steps=2)
    assert type(painter.pipe.controlnet).__name__ == "FluxMultiControlNetModel"
    assert painter.pipe.controlnet.nets[0].input_hint_block is not None  # XLabs style
    base = painter.paint(maps(0), "a wooden table", seed=0, height=64, width=64)
    assert base.shape == (64, 64, 3) and base.dtype == np.uint8
    np.testing.assert_array_equal(base, painter.paint(maps(0), "a wooden table", seed=0, height=64, width=64))
    assert np.abs(base.astype(int) - painter.paint(maps(0), "a wooden table", seed=1, height=64, width=64)).mean() > 1
    assert np.abs(base.astype(int) - painter.paint(maps(0), "a marble counter", seed=0, height=64, width=64)).mean() > 0
    changed = painter.paint(maps(5), "a wooden table", seed=0, height=64, width=64)
    assert np.abs(base.astype(int) - changed).mean() > 0  # the control images steer the frame
    # sizes FLUX cannot take (multiples of 16) are painted at the nearest and resized
    assert painter.paint(maps(0), "a wooden table", seed=0, height=60, width=72).shape == (60, 72, 3)


def test_manifest_survives_a_torn_write_and_parses_shards(tmp_path):
    manifest = Manifest(tmp_path, (1, 4))
    manifest.add_episode("ep", {"status": "ready"}, {"ep__v0": {"variant": 0, "seed": 1, "prompt": "p"}})
    manifest.set_state("ep__v0", "first_frame", 1.5)
    (manifest.path.parent / f".{manifest.path.name}.junk.tmp").write_text("{torn")  # a killed writer's leftover
    again = Manifest(tmp_path, (1, 4))
    assert again.units["ep__v0"]["stage"] == "first_frame" and again.units["ep__v0"]["seconds"]["first_frame"] == 1.5
    assert parse_shard("3/8") == (3, 8) and parse_shard(None) == (0, 1)
    for bad in ("8/8", "x", "1/0"):
        with pytest.raises(ValueError):
            parse_shard(bad)
    atomic_write_text(tmp_path / "a.json", "1")
    assert (tmp_path / "a.json").read_text() == "1"


def test_ray_mode_gives_the_same_rollouts_as_the_local_runner(models, tmp_path):
    pytest.importorskip("ray")
    from augment.ray_runner import RayAugmentRun
    from augment.runner import AugmentRun

    values = {
        "device": "cpu",
        "source": {"path": str(augment.demo.DEMO_DATASET), "max_episodes": 1, "max_steps": 8},
        "first_frames": {"flux": str(models / "flux"),
                         "controlnets": [{"path": str(models / "controlnet-depth"), "condition": "depth"}],
                         "variants_per_episode": 2, "num_inference_steps": 2, "max_sequence_length": 128},
        "rollout": {"model": str(models / "orv"), "height": 64, "width": 64, "chunk_frames": 8,
                    "num_inference_steps": 2},
        "score": {"enabled": False},
        "ray": {"num_actors": 1, "num_gpus_per_actor": 0, "num_cpus_per_actor": 1},
    }
    stages = ("sources", "first_frames", "rollouts")
    local = AugmentRun(config_from_dict(values), tmp_path / "local", progress=False)
    local.run(stages)
    import ray

    try:
        on_ray = RayAugmentRun(config_from_dict(values), tmp_path / "ray", progress=False)
        on_ray.run(stages)
    finally:
        ray.shutdown()
    assert on_ray.manifest.counts() == {"rollout": 3}  # 2 painted variants + the replay
    for unit in local.manifest.units:
        with np.load(tmp_path / "local" / "rollouts" / unit / "clip.npz") as a, \
                np.load(tmp_path / "ray" / "rollouts" / unit / "clip.npz") as b:
            np.testing.assert_allclose(a["frames"].astype(int), b["frames"].astype(int), atol=2)


def test_shipped_configs_validate():
    from pathlib import Path

    from augment.config import load_config

    paths = sorted((Path(__file__).resolve().parents[1] / "configs" / "augment").glob("*.yaml"))
    assert paths
    for path in paths:
        config = load_config(path)
        assert config.first_frames.variants_per_episode == 3 and config.rollout.height == 320


def test_write_config_explains_every_key_and_reads_back_as_the_defaults(tmp_path):
    from augment.cli import main
    from augment.config import AugmentConfig, config_from_dict

    path = tmp_path / "defaults.yaml"
    assert main(["--write-config", str(path)]) == 0
    text = path.read_text()
    assert "# paper Sec. 10.3.1" in text and "chunk_frames: 16  # frames per generated chunk" in text
    import yaml

    values = yaml.safe_load(text)
    assert values["rollout"]["height"] == 320
    from orv_engine.config_validation import build_dataclass

    assert build_dataclass(AugmentConfig, values) == AugmentConfig()
    with pytest.raises(Exception, match="score.filter.model"):  # defaults need a VLM (or checks_only)
        config_from_dict(values)


def test_failed_units_can_be_retried_from_the_stage_they_failed_in(tmp_path):
    manifest = Manifest(tmp_path)
    manifest.add_episode("ep", {"status": "ready"}, {f"ep__v{i}": {"variant": i, "seed": i, "prompt": "p"}
                                                     for i in range(2)})
    manifest.set_state("ep__v0", "first_frame", 1.0)
    manifest.set_state("ep__v0", "failed", error="rollouts: RuntimeError: CUDA out of memory")
    manifest.set_state("ep__v1", "failed", error="first_frames: boom")
    assert Manifest(tmp_path).counts() == {"failed": 2}
    assert manifest.retry_failed() == ["ep__v0", "ep__v1"]
    again = Manifest(tmp_path)
    assert again.units["ep__v0"]["stage"] == "first_frame" and again.units["ep__v1"]["stage"] == "planned"
    assert again.units["ep__v0"]["error"] is None


def test_every_subcommand_names_stages_of_the_runner_and_each_per_unit_stage_moves_units_one_state_on():
    from augment.cli import STAGE_COMMANDS
    from augment.manifest import FAILED, PLANNED, SCORED
    from augment.runner import ALL_STAGES, PER_UNIT_STAGES, STAGE_STATES, TERMINAL_STATES

    assert [s for stages in STAGE_COMMANDS.values() for s in stages] == list(ALL_STAGES)
    assert STAGE_COMMANDS["first-frames"] == ("first_frames",)
    assert list(STAGE_STATES) == list(PER_UNIT_STAGES[1:])
    states = [PLANNED] + [after for _, after in STAGE_STATES.values()]
    assert [before for before, _ in STAGE_STATES.values()] == states[:-1]
    assert states == ["planned", "first_frame", "rollout", "scored"] and TERMINAL_STATES == (SCORED, FAILED)

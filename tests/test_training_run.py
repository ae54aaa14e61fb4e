"""The tiny config trains on CPU: loss falls, a SIGKILLed run resumes exactly, stage 2 runs.

All runs use configs/tiny.yaml (the real shared Bridge episodes, 64x64, 8+1 frames) with a
tiny random-weight pipeline folder written in the real diffusers formats, and latents
pre-encoded once for the module. benchmarks/training_benchmark.py runs the full 300 steps.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from training_helpers import PROJECT_ROOT, SIM_DATA, TINY_CONFIG, TINY_STAGE2_CONFIG, tiny_overrides

from orv_engine.training.config import load_config
from orv_engine.training.trainer import Trainer

MAX_CLIPS = 24
VARIANTS = 2  # stored noise-augmented first frames per clip (configs/tiny.yaml: 4)


@pytest.fixture(scope="module")
def tiny_setup(tmp_path_factory, bridge_debug):
    from orv_engine.training import latents
    from orv_engine.training.components import load_components
    from orv_engine.testing.tiny_orv import save_tiny_pipeline

    root = tmp_path_factory.mktemp("tiny-train")
    model = save_tiny_pipeline(root / "tiny-orv-random")
    lat = root / "latents"
    config = load_config(TINY_CONFIG, tiny_overrides(model, bridge_debug, lat, root / "unused",
                                                     **{"data.max_clips": MAX_CLIPS, "data.first_frame_variants": VARIANTS,
                                                        "validation.every": 1}))
    vae = load_components(model, None, []).vae
    latents.pre_encode(config, vae)
    latents.write_index(config)
    return {"root": root, "model": model, "data": bridge_debug, "latents": lat}


def _overrides(setup, output_dir, **extra):
    return tiny_overrides(setup["model"], setup["data"], setup["latents"], output_dir,
                          **{"data.max_clips": MAX_CLIPS, "data.first_frame_variants": VARIANTS, **extra})


def _log(output_dir) -> list[dict]:
    path = output_dir / "train_log.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_tiny_loss_halves_and_validation_writes_metrics_and_videos(tiny_setup):
    out = tiny_setup["root"] / "loss-run"
    config = load_config(TINY_CONFIG, _overrides(
        tiny_setup, out, **{"train.max_steps": 60, "train.checkpoint_every": 60, "validation.every": 60,
                            "validation.num_clips": 1, "validation.num_inference_steps": 4, "tracker": "tensorboard",
                            "train.ema.enabled": True, "train.ema.decay": 0.9}))
    summary = Trainer(config, log=lambda m: None).train()
    losses = np.array(summary["losses"])
    assert len(losses) == 60 and np.isfinite(losses).all()
    first, last = losses[:10].mean(), losses[-10:].mean()
    assert last < 0.5 * first, f"loss fell from {first:.4f} to {last:.4f} only"
    assert np.isfinite(summary["val/psnr"]) and 0 < summary["val/ssim"] <= 1
    assert (out / "validation" / "step-0000060" / "00.mp4").stat().st_size > 0
    assert list((out / "logs").rglob("events.out.tfevents.*"))
    assert (out / "final" / "model_index.json").is_file()  # a complete ORV pipeline folder
    assert (out / "checkpoints" / "checkpoint-0000060" / "transformer" / "config.json").is_file()
    assert (out / "checkpoints" / "checkpoint-0000060" / "transformer_ema" / "config.json").is_file()


def test_a_run_killed_by_sigkill_resumes_with_the_same_losses(tiny_setup):
    steps, every = 16, 4
    extra = {"train.max_steps": steps, "train.checkpoint_every": every, "train.log_every": 1,
             "optim.lr_warmup_steps": 3}
    reference = Trainer(load_config(TINY_CONFIG, _overrides(tiny_setup, tiny_setup["root"] / "ref", **extra)),
                        log=lambda m: None).train()["losses"]

    out = tiny_setup["root"] / "killed"
    command = [sys.executable, "-m", "orv_engine.training.cli", str(TINY_CONFIG)]
    for item in _overrides(tiny_setup, out, **extra):
        command += ["--set", item]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(PROJECT_ROOT)}
    with open(tiny_setup["root"] / "killed.log", "w") as logfile:
        proc = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=logfile, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            if any(r.get("step", 0) >= 2 * every + 1 for r in _log(out)):
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the run ended before it could be killed:\n" + (tiny_setup["root"] / "killed.log").read_text()[-3000:]
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait() == -signal.SIGKILL
    killed_at = max(r["step"] for r in _log(out))
    assert killed_at < steps and not (out / "final").exists()

    # resume (in this process: the same Trainer.train the command calls, without a second start-up)
    messages = []
    config = load_config(TINY_CONFIG, _overrides(tiny_setup, out, **extra))
    Trainer(config, log=messages.append).train(resume="latest")
    resumed_at = [int(m.rsplit(" ", 1)[1]) for m in messages if m.startswith("resumed from")]
    assert resumed_at and every <= resumed_at[0] < killed_at, messages  # replayed steps past the checkpoint
    resumed = [r["loss"] for r in _log(out) if "loss" in r]
    assert [r["step"] for r in _log(out) if "loss" in r] == list(range(1, steps + 1))
    np.testing.assert_allclose(resumed, reference, rtol=1e-5, atol=1e-7)


def test_stage2_trains_from_the_stage1_checkpoint_with_conditions(tiny_setup, tmp_path):
    from orv_engine.training.components import load_transformer

    stage1 = load_transformer(tiny_setup["model"] / "transformer", [])
    stage1.save_pretrained(tmp_path / "stage1-transformer")
    out = tmp_path / "stage2"
    config = load_config(TINY_STAGE2_CONFIG, [
        f"model.pretrained_path={tiny_setup['model']}", f"model.transformer_path={tmp_path / 'stage1-transformer'}",
        f"data.path={SIM_DATA}", "data.conditions_source=episode", f"data.latents_dir={tmp_path / 'lat'}",
        "data.max_clips=4", "train.max_steps=3", "train.checkpoint_every=3", "validation.every=3",
        "validation.num_clips=1", "validation.num_inference_steps=2", f"output_dir={out}", "tracker=none",
    ])
    summary = Trainer(config, log=lambda m: None).train()
    assert len(summary["losses"]) == 3 and np.isfinite(summary["losses"]).all()
    assert np.isfinite(summary["val/psnr"])
    saved = json.loads((out / "final" / "transformer" / "config.json").read_text())
    assert saved["condition_kinds"] == ["depth", "semantics"]


@pytest.mark.parametrize("source", ["clips", "latents"])
def test_the_batch_stream_restores_its_position_across_epochs(tiny_setup, source):
    import torch

    from orv_engine.training.stream import BatchStream

    extra = {"train.batch_size": 8} if source == "latents" else {"data.latents_dir": None, "data.first_frame_variants": 0,
                                                                 "train.batch_size": 16}
    config = load_config(TINY_CONFIG, _overrides(tiny_setup, tiny_setup["root"] / "unused", **extra))
    stream = BatchStream(config)
    assert stream.kind == source
    key = "video" if source == "clips" else "video_mean"
    seen = [next(stream)[key] for _ in range(7)]  # 4 or 5 batches per epoch: crosses an epoch
    assert stream.epoch >= 1
    again = BatchStream(config)
    ahead = BatchStream(config)
    for _ in range(3):
        next(ahead)
    again.load_state_dict(ahead.state_dict())
    for expected in seen[3:]:
        assert torch.equal(next(again)[key], expected)


def test_stage2_from_an_official_stage1_checkpoint_trains_with_its_conventions(tiny_setup, tmp_path):
    """An official ORV stage-1 folder as the starting point: the run takes its action convention
    and condition encoding, refuses a config that contradicts them, and records them."""
    from upstream_orv import write_upstream_folder

    official = write_upstream_folder(tmp_path / "official-stage1", "stage1", seed=1)
    out = tmp_path / "stage2-official"
    base = [
        f"model.pretrained_path={tiny_setup['model']}", f"model.transformer_path={official}",
        f"data.path={SIM_DATA}", "data.conditions_source=episode", f"data.latents_dir={tmp_path / 'lat'}",
        "data.max_clips=4", "train.max_steps=2", "train.checkpoint_every=2", "validation.every=2",
        "validation.num_clips=1", "validation.num_inference_steps=2", f"output_dir={out}", "tracker=none",
    ]
    with pytest.raises(ValueError, match="trained with 'orv-official'"):
        Trainer(load_config(TINY_STAGE2_CONFIG, base + ["data.condition_encoding=engine"]), log=lambda m: None).train()
    with pytest.raises(ValueError, match="trained with 'eef-frame'"):
        Trainer(load_config(TINY_STAGE2_CONFIG, base + ["data.clip.action_convention=dataset"]),
                log=lambda m: None).train()
    summary = Trainer(load_config(TINY_STAGE2_CONFIG, base), log=lambda m: None).train()
    assert len(summary["losses"]) == 2 and np.isfinite(summary["losses"]).all() and np.isfinite(summary["val/psnr"])
    stored = json.loads((tmp_path / "lat" / "index.json").read_text())["fingerprint"]
    assert stored["condition_encoding"] == "orv-official" and stored["clip"]["action_convention"] == "eef-frame"
    saved = json.loads((out / "final" / "transformer" / "config.json").read_text())
    assert saved["_class_name"] == "ORVTransformer3DModel" and saved["condition_kinds"] == ["depth", "semantics"]
    pre = saved["preprocessing"]
    assert (pre["action_convention"], pre["condition_encoding"], pre["action_scale"][0]) == ("eef-frame", "orv-official", 20.0)
    assert pre["num_frames"] == 9 and pre["placeholder_frame"] is True  # this run's clips, recorded

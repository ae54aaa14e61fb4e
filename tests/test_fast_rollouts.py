"""Rollout presets, batched rollouts and the projected GPU cost (issue [fast-rollouts]).

The quality test runs the shipped small ORV (variant (c), coarse maps) on a few of its shipped
held-out clips with each preset and checks the preset's documented bound against the 50-step
reference (docs/fast_rollouts.md: measured on 50 held-out clips by benchmarks/rollout_speed.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from diffusers import CogVideoXDPMScheduler

import augment  # noqa: F401  (import order)
from augment import gpu_cost
from augment.config import config_from_dict
from augment.demo import write_demo_models
from augment.rollout import RolloutGenerator
from augment.sources import SourceEpisode
from orv_engine.config_validation import ConfigError
from orv_engine.pipelines import ORVPipeline
from orv_engine.pipelines.presets import PRESETS, RolloutPreset, apply_rollout_preset, cogvideox_betas, make_scheduler
from orv_engine.small import SMALL_ORV_DIR, small_orv_available
from orv_engine.small.evaluate import evaluate_pipeline, load_variant_pipeline
from orv_engine.small.heldout import load_heldout
from orv_engine.testing.tiny_orv import save_tiny_orv_pipeline

HELDOUT = SMALL_ORV_DIR / "heldout" / "clips.npz"
# Bounds of each preset against the 50-step reference on held-out clips (PSNR / SSIM loss against
# ground truth; the targets, which docs/fast_rollouts.md shows met on 50 clips) and its
# least compute ratio (transformer evaluations per rollout).
BOUNDS = {"paper": dict(psnr_loss=0.0, ssim_loss=0.0, compute_ratio=1.0),
          "fast": dict(psnr_loss=0.3, ssim_loss=0.01, compute_ratio=3.0)}
CLIPS = 4

needs_small_orv = pytest.mark.skipif(not small_orv_available() or not HELDOUT.is_file(),
                                     reason="the shipped small ORV is not in this checkout")


@pytest.fixture(scope="module")
def small_pipe():
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    return load_variant_pipeline(SMALL_ORV_DIR, "actions_occupancy", "cpu", torch.float32)


@pytest.fixture(scope="module")
def clips():
    return load_heldout(HELDOUT)[:CLIPS]


@pytest.fixture(scope="module")
def reference(small_pipe, clips):
    apply_rollout_preset(small_pipe, RolloutPreset("reference"))  # the checkpoint's sampler: 50 DPM steps
    return _evaluate(small_pipe, clips)


def _evaluate(pipe, clips):
    calls = []
    handle = pipe.transformer.register_forward_pre_hook(lambda m, a, k: calls.append(k["hidden_states"].shape[0]),
                                                        with_kwargs=True)
    try:
        # evaluate_pipeline takes the checkpoint's steps unless told: give it the preset's
        result = evaluate_pipeline(pipe, clips, condition_source="occupancy", batch_size=CLIPS,
                                   num_inference_steps=getattr(pipe, "_preset_steps", None))
    finally:
        handle.remove()
    return result, sum(calls) / len(clips)


@needs_small_orv
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_stays_within_its_quality_bound(small_pipe, clips, reference, preset):
    (ref, ref_forwards) = reference
    apply_rollout_preset(small_pipe, preset)
    try:
        result, forwards = _evaluate(small_pipe, clips)
    finally:
        apply_rollout_preset(small_pipe, "paper")
    bound = BOUNDS[preset]
    assert ref_forwards / forwards >= bound["compute_ratio"]
    assert ref.psnr - result.psnr <= bound["psnr_loss"] + 1e-6, (preset, ref.psnr, result.psnr)
    assert ref.ssim - result.ssim <= bound["ssim_loss"] + 1e-6, (preset, ref.ssim, result.ssim)
    if preset == "paper":  # the paper's settings are the checkpoint's: the very same rollouts
        assert [c.psnr for c in result.clips] == [c.psnr for c in ref.clips]


def test_presets_switch_and_switch_back(tmp_path):
    pipe = ORVPipeline.from_pretrained(save_tiny_orv_pipeline(tmp_path / "orv"))
    original = type(pipe.scheduler)
    apply_rollout_preset(pipe, RolloutPreset("t", scheduler="unipc", num_inference_steps=3, cache="pab", cache_knob=2))
    assert type(pipe.scheduler).__name__ == "UniPCMultistepScheduler" and pipe._preset_steps == 3
    assert pipe.transformer._cache_config is not None
    apply_rollout_preset(pipe, "paper")
    assert type(pipe.scheduler) is original and pipe._preset_steps is None
    assert pipe.transformer._cache_config is None
    with pytest.raises(KeyError, match="unknown rollout preset"):
        apply_rollout_preset(pipe, "turbo")


def test_multistep_schedulers_get_cogvideox_noise_schedule():
    """UniPC / DPM-Solver++ are given CogVideoX's SNR-shifted, zero-terminal-SNR alphas_cumprod."""
    folder = SMALL_ORV_DIR / "scheduler"
    if not (folder / "scheduler_config.json").is_file():
        pytest.skip("the shipped small ORV is not in this checkout")
    config = CogVideoXDPMScheduler.load_config(folder)
    reference = make_scheduler("cogvideox_ddim", config).alphas_cumprod
    for name in ("unipc", "dpmpp_2m"):
        scheduler = make_scheduler(name, config)
        np.testing.assert_allclose(scheduler.alphas_cumprod[:-1].numpy(), reference[:-1].numpy(), rtol=1e-4)
        assert float(scheduler.alphas_cumprod[-1]) > 0  # clamped: the first sigma stays finite
    assert len(cogvideox_betas(config)) == config["num_train_timesteps"]


# ---------------------------------------------------------------- batching


def _source(key: str, steps: int = 8, size: int = 64, seed: int = 0) -> SourceEpisode:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.5, 2.0, (steps, size, size)).astype(np.float32)
    semantics = rng.integers(0, 4, (steps, size, size)).astype(np.int32)
    return SourceEpisode(key=key, episode_id=key, dataset="test", instruction="put the cube on the towel",
                         camera="main", first_frame=np.zeros((size, size, 3), np.uint8),
                         actions=rng.normal(0, 0.02, (steps, 7)).astype(np.float32),
                         states=rng.normal(0, 0.1, (steps, 7)).astype(np.float32),
                         conditions={"depth": depth, "semantics": semantics})


def test_batched_rollouts_equal_one_by_one(tmp_path):
    models = write_demo_models(tmp_path / "models")
    generator = RolloutGenerator(models / "orv", chunk_frames=4, num_inference_steps=2, preset="fast")
    source = _source("ep0")
    rng = np.random.default_rng(1)
    firsts = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    seeds = [11, 12, 13]
    one_by_one = [generator.generate(source, f, s) for f, s in zip(firsts, seeds)]
    batched = generator.generate_batch([source] * 3, firsts, seeds)
    for single, together in zip(one_by_one, batched):
        assert single.shape == together.shape == (8, 64, 64, 3)
        # the same noise per unit; batched kernels may round differently in the last float bit
        assert np.abs(single.astype(int) - together.astype(int)).max() <= 1
    assert not np.array_equal(batched[0], batched[1])  # the seeds differ
    with pytest.raises(ValueError, match="differ in shape"):
        generator.generate_batch([source, _source("ep1", steps=9)], firsts[:2], seeds[:2])


def test_rollout_config_takes_preset_and_batch_units(tmp_path):
    base = {"rollout": {"model": "x"}, "score": {"checks_only": True}}
    config = config_from_dict(base)
    assert config.rollout.preset == "paper" and config.rollout.batch_units >= 1
    assert config_from_dict({**base, "rollout": {"model": "x", "preset": "fast"}}).rollout.preset == "fast"
    with pytest.raises(ConfigError, match="preset"):
        config_from_dict({**base, "rollout": {"model": "x", "preset": "turbo"}})


# ---------------------------------------------------------------- projected GPU cost


def test_known_counts_match_a_fresh_count():
    """The module's stored count of the 2B step is what FlopCounterMode counts now (meta, seconds)."""
    assert gpu_cost.orv_2b_step_flops.uncached(320, 480, 17) == gpu_cost.KNOWN_COUNTS["orv_2b_step_flops(320, 480, 17)"]


def test_fast_preset_projects_under_ten_h100_seconds_per_rollout():
    paper, fast = gpu_cost.projected_rollout_seconds("paper"), gpu_cost.projected_rollout_seconds("fast")
    assert paper["paper_calibrated_seconds"] == pytest.approx(gpu_cost.PAPER_ROLLOUT_GPU_SECONDS)
    assert fast["seconds"] < paper["seconds"] / 2
    assert fast["paper_calibrated_seconds"] <= 10.0  # the target, even at the paper's efficiency


def test_projected_clip_cost_has_every_stage_and_a_total():
    config = config_from_dict({"rollout": {"model": "x", "preset": "fast"},
                               "score": {"filter": {"model": "qwen"}}})
    cost = gpu_cost.projected_clip_cost(config)
    assert set(cost) >= {"rollout", "painter", "scoring", "total"}
    assert cost["total"] == pytest.approx(cost["rollout"] + cost["painter"] + cost["scoring"], abs=0.01)

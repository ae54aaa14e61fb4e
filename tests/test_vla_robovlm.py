"""RoboVLM on a tiny random Kosmos-2: finetuning on the real Bridge episodes, save/load, errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from vla_fixtures import train_tiny, write_statistics


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bridge_debug):
    from orv_engine.testing.tiny_vla import build_tiny_kosmos2

    tmp = tmp_path_factory.mktemp("robovlm")
    backbone = build_tiny_kosmos2(tmp / "kosmos2")
    statistics = write_statistics(bridge_debug, tmp / "dataset_statistics_openvla.json")
    trainer, summary, before, after = train_tiny("tiny_robovlm", tmp, backbone, bridge_debug, statistics, steps=24,
                                                 options={"history_len": 2})
    return {"tmp": tmp, "backbone": backbone, "statistics": statistics, "trainer": trainer, "summary": summary,
            "before": before, "after": after}


def test_finetuning_lowers_the_loss(trained):
    summary = trained["summary"]
    assert summary["step"] == 24 and all(np.isfinite(summary["losses"]))
    assert trained["after"] < 0.7 * trained["before"], (trained["before"], trained["after"])
    policy = trained["trainer"].unwrapped
    # full finetune: every parameter trains, backbone included
    assert all(p.requires_grad for p in policy.parameters())
    assert policy.config.lstm_hidden_size == 64 and policy.config.history_len == 2


def test_save_load_gives_the_same_actions(trained, tmp_path):
    from vla_finetune.policies.interface import ActionChunkExecutor, TemporalEnsembler, VLAPolicy, load_policy

    final = trained["tmp"] / "run" / "final"
    names = {p.name for p in final.iterdir()}
    assert {"config.json", "model.safetensors", "dataset_statistics.json", "tokenizer.json",
            "processor_config.json"} <= names
    trained_policy = trained["trainer"].unwrapped.eval()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    for execution, wrapper in (("chunk", ActionChunkExecutor), ("ensemble", TemporalEnsembler)):
        loaded = load_policy(final, execution=execution)
        reference = wrapper(trained_policy)
        assert isinstance(loaded, VLAPolicy)
        for policy in (loaded, reference):
            policy.reset("put the spoon in the pot")
        actions = [np.stack([p.act(f) for f in frames]) for p in (loaded, reference)]
        np.testing.assert_allclose(actions[0], actions[1], atol=1e-5)
        assert actions[0].shape == (3, 7) and actions[0].dtype == np.float32
        assert set(np.unique(actions[0][:, 6])) <= {0.0, 1.0}
    # un-normalised: the arm actions are in the data's physical range, not in [-1, 1] units
    stats = json.loads((final / "dataset_statistics.json").read_text())["action"]
    lo, hi = np.asarray(stats["q01"])[:6], np.asarray(stats["q99"])[:6]
    assert np.all(actions[0][:, :6] >= lo - 1e-6) and np.all(actions[0][:, :6] <= hi + 1e-6)


def test_inference_history_matches_training_windows(trained):
    """predict_chunk over the kept history = the training forward on the same window (last step)."""
    policy = trained["trainer"].unwrapped.eval()
    rng = np.random.default_rng(1)
    a, b = (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(2))
    instruction = "put the spoon in the pot"
    policy.reset(instruction)
    policy.observe(a)
    chunk = policy.predict_chunk(b)
    assert chunk.shape == (policy.config.chunk_size, 7) and len(policy._history) == 2
    with torch.no_grad():
        window = policy(images=torch.from_numpy(np.stack([a, b])[None]), instruction=[instruction])["prediction"]
    expected = policy.normalizer.unnormalize(window[0, -1].numpy())
    np.testing.assert_allclose(chunk[:, :6], expected[:, :6], rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(chunk[:, 6], (window[0, -1, :, 6] > 0).float().numpy())
    # a first step pads the history with its own frame, as the training windows do
    policy.reset(instruction)
    first = policy.predict_chunk(b)
    with torch.no_grad():
        padded = policy(images=torch.from_numpy(np.stack([b, b])[None]), instruction=[instruction])["prediction"]
    np.testing.assert_allclose(first[:, :6], policy.normalizer.unnormalize(padded[0, -1].numpy())[:, :6],
                               rtol=1e-4, atol=1e-6)


def test_bad_input_errors(trained, tmp_path):
    from vla_finetune.policies.common import CheckpointError
    from vla_finetune.policies.interface import load_policy
    from vla_finetune.policies.robovlm import RoboVLMPolicy
    from vla_finetune.policy_data import StatisticsError

    with pytest.raises(CheckpointError, match="not found"):
        RoboVLMPolicy.from_backbone(tmp_path / "no_kosmos", trained["statistics"])
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_policy(tmp_path)
    broken = tmp_path / "no_stats"
    shutil.copytree(trained["tmp"] / "run" / "final", broken)
    (broken / "dataset_statistics.json").unlink()
    with pytest.raises(StatisticsError, match="dataset_statistics.json"):
        load_policy(broken)
    policy = trained["trainer"].unwrapped
    images = torch.zeros((1, 2, 64, 64, 3), dtype=torch.uint8)
    with pytest.raises(ValueError, match="7-d"):
        policy(images=images, instruction=["x"], actions=torch.zeros(1, 2, policy.config.chunk_size, 6))
    with pytest.raises(ValueError, match="history_len"):
        policy(images=torch.zeros((1, 3, 64, 64, 3), dtype=torch.uint8), instruction=["x"])
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        load_policy(trained["tmp"] / "run" / "final").act(np.zeros((64, 64), np.uint8))

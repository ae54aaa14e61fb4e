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
    # explicit settings: the folder's own (config execution/execute_steps) are RoboVLMs' chunk, 1 step
    for execution, wrapper, kwargs in (("chunk", ActionChunkExecutor, {"execute_steps": 2}),
                                       ("ensemble", TemporalEnsembler, {"weight_decay": 0.01})):
        loaded = load_policy(final, execution=execution, gripper_open_after=1, **kwargs)
        reference = wrapper(trained_policy, *kwargs.values())
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
    """predict_chunk over the kept history = the training forward on the same frames (last step)."""
    policy = trained["trainer"].unwrapped.eval()
    rng = np.random.default_rng(1)
    a, b, c = (rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3))
    instruction = "put the spoon in the pot"

    def window_chunk(*images):
        with torch.no_grad():
            out = policy(images=torch.from_numpy(np.stack(images)[None]), instruction=[instruction])["prediction"]
        return policy.actions_from_prediction(out[0, -1])

    policy.reset(instruction)
    policy.observe(a)
    chunk = policy.predict_chunk(b)
    assert chunk.shape == (policy.config.chunk_size, 7) and len(policy._history) == 2
    np.testing.assert_allclose(chunk, window_chunk(a, b), rtol=1e-4, atol=1e-6)
    # past history_len (2) the oldest frame drops out: the LSTM restarts on the last 2 (RoboVLMs' LSTMDecoder)
    np.testing.assert_allclose(policy.predict_chunk(c), window_chunk(b, c), rtol=1e-4, atol=1e-6)
    # a first step sees its one frame only, as RoboVLMs' stateful LSTM at an episode's start
    policy.reset(instruction)
    np.testing.assert_allclose(policy.predict_chunk(b), window_chunk(b), rtol=1e-4, atol=1e-6)
    # the head's tanh space maps to the q01/q99-normalised actions through norm_min/norm_max (+-0.65)
    ones = torch.ones(1, 7)
    np.testing.assert_allclose(policy.actions_from_prediction(ones)[0, :6],
                               policy.normalizer.unnormalize(np.full(7, 0.65))[:6], rtol=1e-6)
    assert policy.to_head_space(torch.tensor([0.65, 0.9, -1.0])).tolist() == pytest.approx([1.0, 1.0, -1.0])


def test_config_checks_its_values():
    from vla_finetune.policies.robovlm import RoboVLMConfig

    config = RoboVLMConfig()
    assert (config.history_len, config.chunk_size, config.lstm_hidden_size, config.lstm_num_layers) == (16, 10, 1024, 4)
    assert config.head_hidden_sizes == [1024, 512, 256] and (config.execution, config.execute_steps) == ("chunk", 1)
    assert config.prompt_template == "<grounding>An image of a robot {instruction}"
    for bad, message in [({"execute_steps": 11}, "execute_steps"), ({"arm_loss": "l1"}, "arm_loss"),
                         ({"execution": "open-loop"}, "execution"),
                         ({"history_len": 0}, "history_len"), ({"prompt_template": "go"}, "prompt_template"),
                         ({"action_norm_min": 0.5, "action_norm_max": 0.4}, "action_norm_min"),
                         ({"normalization": "minmax"}, "normalization"), ({"action_dim": 8}, "action_dim")]:
        with pytest.raises(ValueError, match=message):
            RoboVLMConfig(**bad)


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

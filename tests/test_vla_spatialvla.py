"""SpatialVLA on a tiny random PaliGemma: LoRA finetuning on the real Bridge episodes, merge, save/load."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from vla_fixtures import train_tiny, write_statistics


@pytest.fixture(scope="module")
def trained(tmp_path_factory, bridge_debug):
    from orv_engine.testing.tiny_vla import build_tiny_paligemma

    tmp = tmp_path_factory.mktemp("spatialvla")
    backbone = build_tiny_paligemma(tmp / "paligemma")
    statistics = write_statistics(bridge_debug, tmp / "dataset_statistics_openvla.json")
    trainer, summary, before, after = train_tiny("tiny_spatialvla", tmp, backbone, bridge_debug, statistics, steps=16)
    return {"tmp": tmp, "backbone": backbone, "statistics": statistics, "trainer": trainer, "summary": summary,
            "before": before, "after": after}


def test_lora_finetuning_lowers_the_loss(trained):
    assert trained["summary"]["step"] == 16
    # token cross-entropy on 8194 + vocabulary classes starts near ln(V); a nat less = learning
    assert trained["after"] < trained["before"] - 1.0, (trained["before"], trained["after"])


def test_only_adapters_and_action_tokens_train(tmp_path, bridge_debug, trained):
    from vla_finetune.policies.spatialvla import SpatialActionTokenizer, SpatialVLAPolicy

    rng = np.random.default_rng(0)
    grid = SpatialActionTokenizer.fit(np.clip(rng.normal(0, 0.3, (200, 7)), -1, 1))
    policy = SpatialVLAPolicy.from_backbone(trained["backbone"], str(trained["statistics"]), grid, lora_rank=4,
                                            lora_alpha=4)
    vocab = policy.backbone.get_input_embeddings().weight.shape[0]
    assert policy.config.action_token_offset + 8194 == vocab
    # upstream's token names and prompt (the lower-cased instruction), chunk 4, no Ego3D without ZoeDepth
    tokens = policy.processor.tokenizer.convert_ids_to_tokens([policy.config.action_token_offset, vocab - 1])
    assert tokens == ["<ACTION00000>", "<ACTION08193>"]
    assert policy.prompts(["Put the Spoon in the pot. "]) == ["put the spoon in the pot."]
    assert policy.config.chunk_size == 4 and policy.ego3d is None
    policy.apply_lora()
    trainable = [n for n, p in policy.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "trainable_tokens" in n for n in trainable)
    assert any("trainable_tokens" in n for n in trainable)
    with pytest.raises(RuntimeError, match="merge_lora"):
        policy.save_pretrained(tmp_path / "unmerged")


def test_merge_and_save_load_give_the_same_actions(trained):
    from vla_finetune.policies.interface import ActionChunkExecutor, TemporalEnsembler, load_policy

    final = trained["tmp"] / "run" / "final"
    names = {p.name for p in final.iterdir()}
    assert {"config.json", "model.safetensors", "dataset_statistics.json", "action_tokenizer.json",
            "tokenizer.json"} <= names
    assert not any("lora" in k for k in __import__("safetensors.torch").torch.load_file(
        str(final / "model.safetensors")))  # adapters merged into the weights
    merged = trained["trainer"].unwrapped.eval()
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (64, 64, 3), dtype=np.uint8) for _ in range(3)]
    for execution, wrapper in (("chunk", ActionChunkExecutor), ("ensemble", TemporalEnsembler)):
        loaded = load_policy(final, execution=execution)
        reference = wrapper(merged)
        for p in (loaded, reference):
            p.reset("put the spoon in the pot")
        actions = [np.stack([p.act(f) for f in frames]) for p in (loaded, reference)]
        np.testing.assert_allclose(actions[0], actions[1], atol=1e-5)
        assert actions[0].shape == (3, 7)
        assert set(np.unique(actions[0][:, 6])) <= {0.0, 1.0}


def test_decoded_chunk_matches_its_tokens(trained):
    policy = trained["trainer"].unwrapped.eval()
    image = np.full((64, 64, 3), 128, np.uint8)
    tokens = policy.predict_tokens([image], ["put the spoon in the pot"])[0].reshape(4, 3)
    grid = policy.action_tokenizer
    nt, nr = grid.num_translation_tokens, grid.num_rotation_tokens
    assert (tokens[:, 0] < nt).all() and ((tokens[:, 1] >= nt) & (tokens[:, 1] < nt + nr)).all()
    assert (tokens[:, 2] >= nt + nr).all()
    policy.reset("put the spoon in the pot")
    expected = policy.normalizer.unnormalize(grid.decode(tokens))
    np.testing.assert_allclose(policy.predict_chunk(image), expected, atol=1e-6)


def test_bad_input_errors(trained, tmp_path):
    from vla_finetune.policies.common import CheckpointError
    from vla_finetune.policies.interface import load_policy
    from vla_finetune.policies.spatialvla.action_tokenizer import ActionTokenizerError

    with pytest.raises(CheckpointError, match="PaliGemma backbone folder .* not found"):
        from vla_finetune.policies.spatialvla import SpatialVLAPolicy

        SpatialVLAPolicy.from_backbone(tmp_path / "missing", trained["statistics"], None)
    broken = tmp_path / "no_grid"
    shutil.copytree(trained["tmp"] / "run" / "final", broken)
    (broken / "action_tokenizer.json").unlink()
    with pytest.raises(ActionTokenizerError, match="action_tokenizer.json not found"):
        load_policy(broken)
    policy = trained["trainer"].unwrapped
    images = torch.zeros((2, 1, 64, 64, 3), dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"\(B, 1, 4, 7\)"):
        policy(images=images, instruction=["a", "b"], actions=torch.zeros(2, 1, 4, 8))
    with pytest.raises(ValueError, match="one frame per sample"):
        policy(images=torch.zeros((2, 2, 64, 64, 3), dtype=torch.uint8), instruction=["a", "b"],
               actions=torch.zeros(2, 1, 4, 7))

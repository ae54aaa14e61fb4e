"""Self-test of the upstream-ORV twin in tests/upstream_orv.py (independent of the project's package).

The twin's attention / AdaLN / patch-embedding / RoPE code is checked against diffusers' stock
CogVideoXTransformer3DModel on the configurations where upstream reduces to it; the ORV-specific
paths are checked for key sets, shapes, sensitivity and a few exact reductions.
"""

from __future__ import annotations

import json

import pytest
import torch
from diffusers import CogVideoXTransformer3DModel

from upstream_orv import (
    UPSTREAM_TINY_BASE,
    load_upstream_folder,
    reference_forward,
    stock_part,
    upstream_config,
    upstream_inputs,
    upstream_rotary_emb,
    upstream_state_dict,
    write_upstream_folder,
)

DIM = UPSTREAM_TINY_BASE["num_attention_heads"] * UPSTREAM_TINY_BASE["attention_head_dim"]


def _stock_model(config, state):
    model = CogVideoXTransformer3DModel.from_config(stock_part(config)).eval()
    stock_keys = set(model.state_dict())
    model.load_state_dict({k: v for k, v in state.items() if k in stock_keys}, strict=True)
    return model


def _close(a, b, tol=1e-5):
    assert a.shape == b.shape
    err = (a - b).abs().max().item()
    assert err < tol, err


def test_stage1_without_actions_matches_stock_diffusers(tmp_path):
    folder = write_upstream_folder(tmp_path / "stage1", "stage1", seed=3)
    state, config = load_upstream_folder(folder)
    assert config["_class_name"] == "CogVideoXTransformer3DModelTraj"
    inputs = upstream_inputs(config, seed=1)
    model = _stock_model(config, state)
    with torch.no_grad():
        expected = model(
            hidden_states=inputs["hidden_states"], encoder_hidden_states=inputs["encoder_hidden_states"],
            timestep=inputs["timestep"],
        ).sample
    got = reference_forward(state, config, inputs["hidden_states"], inputs["encoder_hidden_states"],
                            inputs["timestep"])
    assert got.shape == (2, 3, 16, 8, 8)
    _close(got, expected)


def test_stock_config_matches_stock_diffusers():
    # a plain CogVideoX config (16 channels, other sizes / scales), no ORV extras at all
    config = dict(UPSTREAM_TINY_BASE, in_channels=16, num_attention_heads=4, sample_height=4,
                  sample_width=6, sample_frames=5, spatial_interpolation_scale=1.0, attention_bias=False)
    state = upstream_state_dict(config, seed=5)
    inputs = upstream_inputs(config, latent_frames=2, seed=2)
    model = _stock_model(config, state)
    with torch.no_grad():
        expected = model(inputs["hidden_states"], inputs["encoder_hidden_states"], inputs["timestep"]).sample
    got = reference_forward(state, config, inputs["hidden_states"], inputs["encoder_hidden_states"],
                            inputs["timestep"])
    _close(got, expected)


@pytest.mark.parametrize("base", ["train", "pipeline"])
def test_rope_with_text_modulation_matches_stock_diffusers(base):
    config = upstream_config("stage1", use_rotary_positional_embeddings=True, attention_head_dim=16,
                             sample_height=6, sample_width=10)
    state = upstream_state_dict(config, seed=7)
    inputs = upstream_inputs(config, seed=4)
    rope = upstream_rotary_emb(config, 6, 10, 3, base=base)
    model = _stock_model(config, state)
    with torch.no_grad():
        expected = model(inputs["hidden_states"], inputs["encoder_hidden_states"], inputs["timestep"],
                         image_rotary_emb=rope).sample
    got = reference_forward(state, config, inputs["hidden_states"], inputs["encoder_hidden_states"],
                            inputs["timestep"], rope_base=base)
    _close(got, expected)
    # the two RoPE conventions really differ for this sample size
    other = upstream_rotary_emb(config, 6, 10, 3, base="pipeline" if base == "train" else "train")
    assert not torch.allclose(rope[0], other[0])


def test_key_sets(tmp_path):
    stage1 = set(upstream_state_dict(upstream_config("stage1")))
    stage2 = upstream_state_dict(upstream_config("stage2"))
    mv = upstream_state_dict(upstream_config("multiview"))
    big = upstream_state_dict(upstream_config("1.4b"))
    recon = set(upstream_state_dict(upstream_config("stage1", recon_action=True)))

    assert {"action_embed.mlp.0.weight", "action_embed.mlp.3.bias", "action_embed.mask_embed.weight"} <= stage1
    assert not any(k.startswith(("initial_combine_linear", "mv_blocks", "action_recon")) for k in stage1)
    assert recon - stage1 == {f"action_recon.mlp.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    assert stage2["initial_combine_linear.weight"].shape == (DIM, 2 * DIM)
    assert set(stage2) - stage1 == {"initial_combine_linear.weight", "initial_combine_linear.bias"}
    for i in range(2):
        assert mv[f"mv_blocks.{i}.proj_out.weight"].shape == (DIM, DIM)
        assert mv[f"mv_blocks.{i}.cam_encoder.weight"].shape == (DIM, 12)
        assert mv[f"mv_blocks.{i}.norm1.linear.weight"].shape == (6 * DIM, 16)
        assert f"mv_blocks.{i}.attn1.norm_k.bias" in mv
    dim_14 = 2 * 16
    assert big["transformer_blocks.0.norm1.linear.weight"].shape == (3 * dim_14, 16)
    assert big["transformer_blocks.1.norm2.linear.bias"].shape == (3 * dim_14,)
    assert big["norm_out.linear.weight"].shape == (2 * dim_14, 16)
    assert mv["action_embed.mlp.0.weight"].shape == (64, 28)
    # every tensor random and non-zero, float32
    for state in (stage2, mv, big):
        for name, t in state.items():
            assert t.dtype == torch.float32 and bool((t != 0).all()), name


def test_config_and_sharded_folder(tmp_path):
    folder = write_upstream_folder(tmp_path / "mv", "multiview", seed=1, sharded=True, recon_action=True)
    config = json.loads((folder / "config.json").read_text())
    assert config["_class_name"] == "CogVideoXTransformer3DModelTraj"
    assert config["_diffusers_version"] == "0.32.1"
    assert set(config) == set(UPSTREAM_TINY_BASE)
    assert config["multiview"] and config["visual_guidance"] and config["recon_action"]
    assert not (folder / "diffusion_pytorch_model.safetensors").exists()
    index = json.loads((folder / "diffusion_pytorch_model.safetensors.index.json").read_text())
    weight_map = index["weight_map"]
    expected = upstream_state_dict(upstream_config("multiview", recon_action=True), seed=1)
    assert sorted(weight_map) == sorted(expected)  # every key exactly once (dict keys are unique)
    files = set(weight_map.values())
    assert len(files) == 3 and all((folder / f).is_file() for f in files)
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in expected.values())
    state, _ = load_upstream_folder(folder)
    assert all(torch.equal(state[k], expected[k]) for k in expected)


def test_kind_configs():
    assert upstream_config("stage1")["loaded_pretrained_model_name_or_path"] == "THUDM/CogVideoX-2b"
    assert upstream_config("stage1")["from_t2v"] is True
    big = upstream_config("1.4b")
    assert big["use_rotary_positional_embeddings"] and not big["modulate_encoder_hidden_states"]
    with pytest.raises(ValueError):
        upstream_config("stage2", num_control_blocks=12)  # upstream refuses too


def test_actions_change_output_and_zero_mlp_reduces_to_temb():
    config = upstream_config("stage1")
    state = upstream_state_dict(config, seed=2)
    inputs = upstream_inputs(config, seed=3)
    base = reference_forward(state, config, inputs["hidden_states"], inputs["encoder_hidden_states"],
                             inputs["timestep"])
    with_actions = reference_forward(state, config, **{k: inputs[k] for k in
                                     ("hidden_states", "encoder_hidden_states", "timestep", "actions")})
    assert (with_actions - base).abs().max() > 1e-3
    # the action split of the 6*dim modulation (image rows only) reduces exactly to temb-only
    zeroed = dict(state, **{"action_embed.mlp.3.weight": torch.zeros_like(state["action_embed.mlp.3.weight"]),
                            "action_embed.mlp.3.bias": torch.zeros_like(state["action_embed.mlp.3.bias"])})
    same = reference_forward(zeroed, config, inputs["hidden_states"], inputs["encoder_hidden_states"],
                             inputs["timestep"], actions=inputs["actions"])
    _close(same, base)
    # upstream's front padding: n = 8..11 actions all give 3 latent frames (zeros padded in front)
    padded = torch.cat([torch.zeros_like(inputs["actions"][:, :3]), inputs["actions"]], dim=1)
    eleven = reference_forward(state, config, inputs["hidden_states"], inputs["encoder_hidden_states"],
                               inputs["timestep"], actions=padded)
    _close(eleven, with_actions)


def test_conditions_change_output():
    config = upstream_config("stage2")
    state = upstream_state_dict(config, seed=4)
    inputs = upstream_inputs(config, seed=5)
    plain = reference_forward(state, config, inputs["hidden_states"], inputs["encoder_hidden_states"],
                              inputs["timestep"], actions=inputs["actions"])
    full = reference_forward(state, config, **inputs)
    assert (full - plain).abs().max() > 1e-3
    other = reference_forward(state, config, **dict(inputs, labels=inputs["labels"] * 2))
    assert (other - full).abs().max() > 1e-3
    with pytest.raises(ValueError):  # upstream asserts num_control_keys conditions
        reference_forward(state, config, **dict(inputs, labels=None))
    zeroed = dict(state, **{k: torch.zeros_like(state[k]) for k in
                            ("initial_combine_linear.weight", "initial_combine_linear.bias")})
    _close(reference_forward(zeroed, config, **inputs), plain)


def test_multiview():
    config = upstream_config("multiview")
    state = upstream_state_dict(config, seed=6)
    inputs = upstream_inputs(config, num_views=2, seed=7)
    out = reference_forward(state, config, **inputs)
    assert out.shape == (2, 6, 16, 8, 8)
    assert torch.isfinite(out).all()
    # views interact: changing view 1 changes view 0
    x = inputs["hidden_states"].clone()
    x[:, 3:] += 1.0
    out2 = reference_forward(state, config, **dict(inputs, hidden_states=x))
    assert (out2[:, :3] - out[:, :3]).abs().max() > 1e-3
    # the MV proj_out matters; cam_encoder is unused by upstream's forward
    for key, matters in (("mv_blocks.0.proj_out.weight", True), ("mv_blocks.0.cam_encoder.weight", False)):
        changed = reference_forward(dict(state, **{key: state[key] * 3}), config, **inputs)
        assert ((changed - out).abs().max() > 1e-4) == matters, key


def test_1p4b_rope_without_text():
    config = upstream_config("1.4b")
    state = upstream_state_dict(config, seed=8)
    inputs = upstream_inputs(config, seed=9)
    out = reference_forward(state, config, inputs["hidden_states"], inputs["encoder_hidden_states"],
                            inputs["timestep"], actions=inputs["actions"])
    assert out.shape == (2, 3, 16, 8, 8)
    # text is never attended to without modulate_encoder_hidden_states, any length works
    other_text = torch.randn(2, 5, 32)
    _close(reference_forward(state, config, inputs["hidden_states"], other_text, inputs["timestep"],
                             actions=inputs["actions"]), out)
    no_actions = reference_forward(state, config, inputs["hidden_states"], inputs["encoder_hidden_states"],
                                   inputs["timestep"])
    assert (no_actions - out).abs().max() > 1e-3

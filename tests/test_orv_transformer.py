"""ORV transformer: equivalence with CogVideoX, gradients, checkpoints, configs, bad inputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file, save_file

sys.path.insert(0, str(Path(__file__).parent))
from tiny_orv import perturb_new_modules, tiny_orv_transformer, tiny_stock_transformer  # noqa: E402

from orv_engine.models import (  # noqa: E402
    CheckpointError,
    ORVTransformer3DModel,
    transformer_config,
)
from orv_engine.models.action_adaln import expert_adaln  # noqa: E402

B, L, H, W = 2, 3, 8, 8  # 3 latent frames = 8 real frames + placeholder


def inputs(channels: int = 32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    cfg = transformer_config("tiny")
    return dict(
        hidden_states=torch.randn(B, L, channels, H, W, generator=g),
        encoder_hidden_states=torch.randn(B, cfg["max_text_seq_length"], cfg["text_embed_dim"], generator=g),
        timestep=torch.tensor([17, 640]),
    )


def actions(seed: int = 1):
    a = torch.randn(B, 4 * L, 7, generator=torch.Generator().manual_seed(seed))
    a[:, :4] = 0  # reference latent frame
    return a


def conditions(seed: int = 2):
    return torch.randn(B, L, 32, H, W, generator=torch.Generator().manual_seed(seed))


def orv_like(stock, **kw):
    cfg = transformer_config("tiny")
    keys = ("action_hidden_dim", "condition_kinds")
    return ORVTransformer3DModel.from_cogvideox(stock, **{k: cfg[k] for k in keys}, **kw).eval()


@torch.no_grad()
def test_null_actions_and_fresh_fusion_equal_stock_cogvideox():
    stock = tiny_stock_transformer(in_channels=32)
    orv = orv_like(stock)
    x = inputs()
    ref = stock(**x).sample
    # null actions (the learned null token, zero at init) and no conditions
    torch.testing.assert_close(orv(**x).sample, ref, rtol=1e-5, atol=1e-6)
    # fresh, zero-initialised action encoder and fusion: actions and conditions change nothing yet
    out = orv(**x, actions=actions(), condition_latents=conditions()).sample
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)
    # once the new modules have weights, actions and conditions do matter
    perturb_new_modules(orv)
    assert not torch.allclose(orv(**x, actions=actions()).sample, ref, atol=1e-3)
    assert not torch.allclose(orv(**x, condition_latents=conditions()).sample, orv(**x).sample, atol=1e-3)


@torch.no_grad()
def test_null_action_mask_selects_null_token_per_sample():
    orv = tiny_orv_transformer()
    perturb_new_modules(orv)
    x = inputs()
    with_actions = orv(**x, actions=actions()).sample
    null = orv(**x).sample
    mixed = orv(**x, actions=actions(), null_action_mask=torch.tensor([True, False])).sample
    torch.testing.assert_close(mixed[0], null[0])
    torch.testing.assert_close(mixed[1], with_actions[1])
    assert not torch.allclose(with_actions[0], null[0], atol=1e-3)


@torch.no_grad()
def test_action_expert_adaln_is_per_frame_and_leaves_text_alone():
    orv = tiny_orv_transformer()
    norm = orv.transformer_blocks[0].norm1
    g = torch.Generator().manual_seed(0)
    d, t = 16, 16
    hidden = torch.randn(1, L * 16, d, generator=g)
    text = torch.randn(1, 8, d, generator=g)
    temb = torch.randn(1, t, generator=g)
    tokens = torch.randn(1, L, t, generator=g)
    moved = tokens.clone()
    moved[:, 1] += 1.0
    a = expert_adaln(norm, hidden, text, torch.nn.functional.silu(temb[:, None] + tokens), torch.nn.functional.silu(temb))
    b = expert_adaln(norm, hidden, text, torch.nn.functional.silu(temb[:, None] + moved), torch.nn.functional.silu(temb))
    torch.testing.assert_close(a[0][:, [0, 2]], b[0][:, [0, 2]])  # other frames untouched
    assert not torch.allclose(a[0][:, 1], b[0][:, 1])  # frame 1 follows its action token
    torch.testing.assert_close(a[1], b[1])  # text tokens keep temb alone
    torch.testing.assert_close(a[3], b[3])
    # no new AdaLN weights: the model has exactly CogVideoX's parameters + action encoder + fusion
    stock = tiny_stock_transformer(in_channels=32)
    extra = {k for k, _ in orv.named_parameters()} - {k for k, _ in stock.named_parameters()}
    assert extra and all(k.startswith(("action_encoder.", "condition_fusion.")) for k in extra)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_gradients_reach_action_encoder_and_fusion(checkpointing):
    orv = tiny_orv_transformer().train()
    if checkpointing:
        orv.enable_gradient_checkpointing()
    # fresh model: the zero-initialised output layers still receive gradients
    loss = orv(**inputs(), actions=actions(), condition_latents=conditions()).sample.square().mean()
    loss.backward()
    for name in ("action_encoder.proj_out.weight", "condition_fusion.proj.weight"):
        grad = dict(orv.named_parameters())[name].grad
        assert grad is not None and grad.abs().sum() > 0, name
    # a model whose new modules have weights: every new parameter gets a gradient
    orv.zero_grad()
    perturb_new_modules(orv)
    mask = torch.tensor([True, False])  # sample 0 uses the null token, so it learns too
    loss = orv(**inputs(), actions=actions(), condition_latents=conditions(), null_action_mask=mask).sample.square().mean()
    loss.backward()
    for name, p in orv.named_parameters():
        if name.startswith(("action_encoder.", "condition_fusion.")):
            assert p.grad is not None and p.grad.abs().sum() > 0, name


@torch.no_grad()
def test_from_pretrained_converts_stock_text_to_video_folder(tmp_path):
    stock = tiny_stock_transformer(in_channels=16)
    stock.save_pretrained(tmp_path / "transformer")
    cfg = transformer_config("tiny")
    orv = ORVTransformer3DModel.from_pretrained(
        tmp_path, subfolder="transformer", condition_kinds=cfg["condition_kinds"],
        action_hidden_dim=cfg["action_hidden_dim"],
    )
    assert orv.config.in_channels == 32 and orv.config.out_channels == 16
    w = orv.patch_embed.proj.weight
    assert w.shape[1] == 32
    torch.testing.assert_close(w[:, :16], stock.patch_embed.proj.weight, rtol=0, atol=0)
    assert torch.count_nonzero(w[:, 16:]) == 0
    x = inputs(channels=16)
    ref = stock(**x).sample
    x32 = dict(x, hidden_states=torch.cat([x["hidden_states"], torch.zeros_like(x["hidden_states"])], dim=2))
    torch.testing.assert_close(orv(**x32).sample, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(orv(**x32, actions=actions(), condition_latents=conditions()).sample, ref,
                               rtol=1e-5, atol=1e-6)


@torch.no_grad()
def test_orv_save_load_round_trip_is_exact(tmp_path):
    orv = tiny_orv_transformer()
    perturb_new_modules(orv)
    orv.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["_class_name"] == "ORVTransformer3DModel" and saved["condition_kinds"] == ["depth", "semantics"]
    loaded = ORVTransformer3DModel.from_pretrained(tmp_path)
    ref_state, new_state = orv.state_dict(), loaded.state_dict()
    assert ref_state.keys() == new_state.keys()
    for k in ref_state:
        assert torch.equal(ref_state[k], new_state[k]), k
    x = dict(inputs(), actions=actions(), condition_latents=conditions())
    assert torch.equal(orv(**x).sample, loaded(**x).sample)


def test_an_ema_folder_loads_without_carrying_the_ema_state_into_the_config(tmp_path):
    """Stage 2 starts from a stage-1 checkpoint's ``transformer_ema/`` (diffusers' EMAModel folder,
    whose config also holds decay, optimization_step, ...): none of that may reach the model's config."""
    orv = tiny_orv_transformer()
    perturb_new_modules(orv)
    ema = EMAModel(list(orv.parameters()), decay=0.999, use_ema_warmup=True, model_cls=type(orv), model_config=orv.config)
    ema.save_pretrained(str(tmp_path / "transformer_ema"))
    assert json.loads((tmp_path / "transformer_ema" / "config.json").read_text())["decay"] == 0.999
    loaded = ORVTransformer3DModel.from_pretrained(tmp_path / "transformer_ema")
    loaded.save_pretrained(tmp_path / "again")
    saved = json.loads((tmp_path / "again" / "config.json").read_text())
    assert not {"decay", "optimization_step", "power", "inv_gamma"} & set(saved)
    for key, value in orv.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key


@torch.no_grad()
def test_bf16_forward_runs_and_tracks_fp32():
    orv = tiny_orv_transformer()
    perturb_new_modules(orv, scale=0.1)
    x = dict(inputs(), actions=actions(), condition_latents=conditions())
    ref = orv(**x).sample
    orv_bf16 = tiny_orv_transformer()
    perturb_new_modules(orv_bf16, scale=0.1)
    orv_bf16 = orv_bf16.to(torch.bfloat16)
    xb = {k: (v.to(torch.bfloat16) if torch.is_floating_point(v) else v) for k, v in x.items()}
    out = orv_bf16(**xb).sample
    assert out.dtype == torch.bfloat16
    assert (out.float() - ref).abs().mean() < 0.05 * ref.abs().mean() + 1e-3


def test_configs_2b_is_table_8_and_tiny_is_small():
    cfg = transformer_config("2b")
    assert (cfg["num_layers"], cfg["num_attention_heads"], cfg["attention_head_dim"]) == (30, 30, 64)
    assert (cfg["patch_size"], cfg["time_embed_dim"], cfg["action_embed_dim"], cfg["text_embed_dim"]) == (2, 512, 512, 4096)
    assert (cfg["in_channels"], cfg["out_channels"]) == (32, 16)
    with torch.device("meta"):
        model = ORVTransformer3DModel.from_config(cfg)
    assert model.patch_embed.proj.weight.shape == (1920, 32, 2, 2)
    assert model.patch_embed.text_proj.weight.shape == (1920, 4096)
    # the official action MLP (28 -> 4*512 -> 512) and token-space fusion (2*1920 -> 1920)
    assert model.action_encoder.proj_out.weight.shape == (512, 2048)
    assert model.action_encoder.proj_in.weight.shape == (2048, 4 * 7)
    assert model.condition_fusion.proj.weight.shape == (1920, 2 * 1920)
    assert model.proj_out.weight.shape == (2 * 2 * 16, 1920)
    n = sum(p.numel() for p in model.parameters())
    assert 1.6e9 < n < 1.8e9, n  # CogVideoX-2B's ~1.69B + small ORV modules
    tiny = sum(p.numel() for p in tiny_orv_transformer().parameters())
    assert tiny < 100_000
    with pytest.raises(KeyError, match="unknown transformer config"):
        transformer_config("5b")


@torch.no_grad()
def test_bad_inputs_raise_clear_errors():
    orv = tiny_orv_transformer()
    x = inputs()
    with pytest.raises(ValueError, match="action dim"):
        orv(**x, actions=torch.zeros(B, 4 * L, 6))
    with pytest.raises(ValueError, match="chunk_align_actions"):
        orv(**x, actions=torch.zeros(B, 4 * L - 1, 7))
    with pytest.raises(ValueError, match="condition_latents"):
        orv(**x, condition_latents=torch.zeros(B, L, 32, H // 2, W // 2))
    with pytest.raises(ValueError, match="in_channels=32"):
        orv(**inputs(channels=16))
    with pytest.raises(ValueError, match="null_action_mask"):
        orv(**x, actions=actions(), null_action_mask=torch.tensor([True]))
    with pytest.raises(ValueError, match="action_chunk"):
        ORVTransformer3DModel.from_config(transformer_config("tiny", action_chunk=2))
    with pytest.raises(ValueError, match="action_embed_dim"):
        ORVTransformer3DModel.from_config(transformer_config("tiny", action_embed_dim=32))


def test_bad_checkpoint_folders_raise_clear_errors(tmp_path):
    orv = tiny_orv_transformer()
    orv.save_pretrained(tmp_path / "orv")
    weights = tmp_path / "orv" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))

    # a missing tensor
    broken = dict(state)
    broken.pop("transformer_blocks.1.norm2.linear.weight")
    save_file(broken, str(weights))
    with pytest.raises(CheckpointError, match=r"missing weights: transformer_blocks\.1\.norm2\.linear\.weight"):
        ORVTransformer3DModel.from_pretrained(tmp_path / "orv")

    # a mismatched tensor (config says 64 hidden units, weights have 32)
    broken = dict(state)
    broken["action_encoder.proj_in.weight"] = torch.zeros(32, 28)
    save_file(broken, str(weights))
    with pytest.raises(CheckpointError, match=r"mismatched shapes: action_encoder\.proj_in\.weight"):
        ORVTransformer3DModel.from_pretrained(tmp_path / "orv")

    # a stock folder with a missing tensor
    stock = tiny_stock_transformer(in_channels=16)
    stock.save_pretrained(tmp_path / "stock")
    sw = tmp_path / "stock" / "diffusion_pytorch_model.safetensors"
    sstate = load_file(str(sw))
    sstate.pop("proj_out.weight")
    save_file(sstate, str(sw))
    with pytest.raises(CheckpointError, match=r"proj_out\.weight"):
        ORVTransformer3DModel.from_pretrained(tmp_path / "stock")

    # no weights file, no folder
    sw.unlink()
    with pytest.raises(CheckpointError, match="no diffusion_pytorch_model.safetensors"):
        ORVTransformer3DModel.from_pretrained(tmp_path / "stock")
    with pytest.raises(CheckpointError, match="not a local folder"):
        ORVTransformer3DModel.from_pretrained(tmp_path / "nowhere")

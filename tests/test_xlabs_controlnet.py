"""XLabs' single-file FLUX ControlNets: conversion, direct loading, config checks, mixed sets.

The converted model is checked against a reference forward written here from the raw
tensors of the format twin (pure torch, following x-flux's ``ControlNetFlux.forward``:
``img_in`` + packed ``input_hint_block`` through ``pos_embed_input``, FLUX's embedders,
double-stream blocks with rotary attention, one ``controlnet_blocks`` linear per block),
not against this project's code.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from diffusers import FluxControlNetModel
from safetensors.torch import load_file, save_file

import augment  # noqa: F401  (import order)
from augment.config import ControlNetConfig, check_inputs, config_from_dict
from augment.first_frames import FirstFramePainter
from orv_engine.config_validation import ConfigError
from orv_engine.models.convert import main as convert_main
from orv_engine.models.xlabs_controlnet import convert_xlabs_controlnet, load_xlabs_controlnet
from orv_engine.testing.tiny_flux import build_tiny_flux, build_tiny_xlabs_controlnet
from orv_engine.testing.tiny_xlabs import TINY_XLABS, build_tiny_xlabs_file, xlabs_controlnet_tensors

AXES = [4, 6, 6]  # the tiny FLUX's rotary axes (head size 16)
AXES_ARGS = ["--axes-dims-rope", *map(str, AXES)]


@pytest.fixture(scope="module")
def xlabs_file(tmp_path_factory):
    return build_tiny_xlabs_file(tmp_path_factory.mktemp("xlabs") / "flux-controlnet-depth-v3.safetensors")


@pytest.fixture(scope="module")
def flux(tmp_path_factory):
    return build_tiny_flux(tmp_path_factory.mktemp("flux") / "flux")


# ---- the reference: x-flux's ControlNetFlux forward, from the raw tensors ------------------


def _linear(x, w, name):
    return F.linear(x, w[f"{name}.weight"], w.get(f"{name}.bias"))


def _mlp_embedder(x, w, name):
    return _linear(F.silu(_linear(x, w, f"{name}.in_layer")), w, f"{name}.out_layer")


def _timestep_embedding(t, dim=256, max_period=10000.0):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    angles = (1000.0 * t)[:, None].float() * freqs[None]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def _rms_norm(x, scale):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * scale


def _rope_angles(ids, axes, theta=10000.0):
    """(L, head/2) angles: per position axis, frequencies theta^(-2j/d) of its own width."""
    parts = []
    for i, dim in enumerate(axes):
        omega = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim)
        parts.append(ids[:, i, None].double() * omega[None])
    return torch.cat(parts, dim=-1).float()


def _rotate(x, angles):
    """Rotate consecutive pairs (x0, x1) of the head dimension by the angles."""
    pairs = x.reshape(*x.shape[:-1], -1, 2)
    cos, sin = angles.cos(), angles.sin()
    x0, x1 = pairs[..., 0], pairs[..., 1]
    return torch.stack([cos * x0 - sin * x1, sin * x0 + cos * x1], dim=-1).reshape(x.shape)


def _heads(x, num_heads):
    b, n, _ = x.shape
    q, k, v = x.reshape(b, n, 3, num_heads, -1).permute(2, 0, 3, 1, 4)
    return q, k, v  # (B, heads, N, D)


def _double_block(img, txt, vec, angles, w, prefix, num_heads):
    streams = {}
    for name, x in (("img", img), ("txt", txt)):
        mod = _linear(F.silu(vec), w, f"{prefix}.{name}_mod.lin")[:, None].chunk(6, dim=-1)
        normed = F.layer_norm(x, x.shape[-1:], eps=1e-6)
        q, k, v = _heads(_linear((1 + mod[1]) * normed + mod[0], w, f"{prefix}.{name}_attn.qkv"), num_heads)
        q = _rms_norm(q, w[f"{prefix}.{name}_attn.norm.query_norm.scale"])
        k = _rms_norm(k, w[f"{prefix}.{name}_attn.norm.key_norm.scale"])
        streams[name] = (mod, q, k, v)
    # one attention over [text tokens, image tokens]
    q, k, v = (torch.cat([streams["txt"][i], streams["img"][i]], dim=2) for i in (1, 2, 3))
    q, k = _rotate(q, angles), _rotate(k, angles)
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    out = (weights @ v).permute(0, 2, 1, 3).flatten(2)
    attended = {"txt": out[:, : txt.shape[1]], "img": out[:, txt.shape[1]:]}
    result = {}
    for name, x in (("img", img), ("txt", txt)):
        mod = streams[name][0]
        x = x + mod[2] * _linear(attended[name], w, f"{prefix}.{name}_attn.proj")
        h = (1 + mod[4]) * F.layer_norm(x, x.shape[-1:], eps=1e-6) + mod[3]
        h = _linear(F.gelu(_linear(h, w, f"{prefix}.{name}_mlp.0"), approximate="tanh"), w, f"{prefix}.{name}_mlp.2")
        result[name] = x + mod[5] * h
    return result["img"], result["txt"]


def xflux_reference(w, img, img_ids, cond, txt, txt_ids, t, y, guidance, num_heads, axes):
    """x-flux's ``ControlNetFlux.forward`` -> the ``controlnet_blocks`` outputs."""
    hint = cond
    for index in range(0, 15, 2):
        hint = F.conv2d(hint, w[f"input_hint_block.{index}.weight"], w[f"input_hint_block.{index}.bias"],
                        stride=2 if index in (4, 8, 12) else 1, padding=1)
        if index != 14:
            hint = F.silu(hint)
    # b c (h 2) (w 2) -> b (h w) (c 2 2)
    hint = F.pixel_unshuffle(hint, 2).flatten(2).transpose(1, 2)
    x = _linear(img, w, "img_in") + _linear(hint, w, "pos_embed_input")
    vec = _mlp_embedder(_timestep_embedding(t), w, "time_in")
    vec = vec + _mlp_embedder(_timestep_embedding(guidance), w, "guidance_in") + _mlp_embedder(y, w, "vector_in")
    context = _linear(txt, w, "txt_in")
    angles = _rope_angles(torch.cat([txt_ids, img_ids]), axes)
    outputs = []
    for i in range(len([k for k in w if k.startswith("controlnet_blocks.") and k.endswith(".weight")])):
        x, context = _double_block(x, context, vec, angles, w, f"double_blocks.{i}", num_heads)
        outputs.append(_linear(x, w, f"controlnet_blocks.{i}"))
    return outputs


def _inputs(seed=0, size=64, text_tokens=5):
    g = torch.Generator().manual_seed(seed)
    side = size // 16  # /8 VAE, 2x2 packing
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    img_ids = torch.stack([torch.zeros_like(rows), rows, cols], dim=-1).reshape(-1, 3).float()
    return {
        "img": torch.randn(1, side * side, 64, generator=g),
        "img_ids": img_ids,
        "cond": torch.rand(1, 3, size, size, generator=g) * 2 - 1,
        "txt": torch.randn(1, text_tokens, TINY_XLABS["context_in_dim"], generator=g),
        "txt_ids": torch.zeros(text_tokens, 3),
        "t": torch.tensor([0.7]),
        "y": torch.randn(1, TINY_XLABS["vec_in_dim"], generator=g),
        "guidance": torch.tensor([3.5]),
    }


def _diffusers_forward(model, x):
    with torch.no_grad():
        blocks, single = model(hidden_states=x["img"], controlnet_cond=x["cond"], encoder_hidden_states=x["txt"],
                               pooled_projections=x["y"], timestep=x["t"], img_ids=x["img_ids"],
                               txt_ids=x["txt_ids"], guidance=x["guidance"], return_dict=False)
    return blocks, single


# ---- conversion -------------------------------------------------------------------------


def test_converted_model_matches_the_xflux_reference_forward(xlabs_file, tmp_path):
    folder = convert_xlabs_controlnet(xlabs_file, tmp_path / "xlabs-depth", axes_dims_rope=AXES)
    model = FluxControlNetModel.from_pretrained(folder).eval()
    assert model.input_hint_block is not None and model.config.num_single_layers == 0
    assert model.config.num_layers == TINY_XLABS["depth"] and model.config.guidance_embeds
    x = _inputs()
    blocks, single = _diffusers_forward(model, x)
    reference = xflux_reference(load_file(str(xlabs_file)), x["img"], x["img_ids"], x["cond"], x["txt"],
                                x["txt_ids"], x["t"], x["y"], x["guidance"], TINY_XLABS["num_heads"], AXES)
    assert single is None and len(blocks) == len(reference) == TINY_XLABS["depth"]
    for ours, theirs in zip(blocks, reference):
        assert theirs.abs().mean() > 1e-2  # the check is not vacuous
        torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-5)
    # the control image matters, through the pixel-space hint block
    changed = _diffusers_forward(model, {**x, "cond": -x["cond"]})[0]
    assert (changed[0] - blocks[0]).abs().mean() > 1e-3


def test_other_sizes_convert_from_their_shapes(tmp_path):
    path = build_tiny_xlabs_file(tmp_path / "x.safetensors", seed=3, hidden_size=48, num_heads=3, depth=3,
                                 vec_in_dim=24, context_in_dim=40, guidance_embed=False)
    model = load_xlabs_controlnet(path, axes_dims_rope=[4, 6, 6])
    c = model.config
    assert (c.num_attention_heads, c.attention_head_dim, c.num_layers) == (3, 16, 3)
    assert (c.pooled_projection_dim, c.joint_attention_dim, c.guidance_embeds) == (24, 40, False)
    # without an input_hint_block: latent-space control, one token per packed latent
    plain = load_xlabs_controlnet(build_tiny_xlabs_file(tmp_path / "p.safetensors", input_hint_block=False),
                                  axes_dims_rope=AXES)
    assert plain.input_hint_block is None and plain.config.patch_size == 1


def test_cli_round_trip_keeps_the_stored_precision(tmp_path, capsys):
    src = build_tiny_xlabs_file(tmp_path / "bf16.safetensors", dtype=torch.bfloat16)
    assert convert_main(["xlabs-controlnet", str(src), str(tmp_path / "out"), *AXES_ARGS]) == 0
    assert str(tmp_path / "out") in capsys.readouterr().out
    written = load_file(str(tmp_path / "out" / "diffusion_pytorch_model.safetensors"))
    assert {t.dtype for t in written.values()} == {torch.bfloat16}
    model = FluxControlNetModel.from_pretrained(tmp_path / "out", dtype=torch.bfloat16)
    assert model.config.axes_dims_rope == AXES
    in_memory = load_xlabs_controlnet(src, axes_dims_rope=AXES)
    assert in_memory.dtype == torch.bfloat16
    for key, tensor in in_memory.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], tensor, rtol=0, atol=0)
    assert convert_main(["xlabs-controlnet", str(src), str(tmp_path / "f16"), "--dtype", "float16",
                         *AXES_ARGS]) == 0
    written = load_file(str(tmp_path / "f16" / "diffusion_pytorch_model.safetensors"))
    assert {t.dtype for t in written.values()} == {torch.float16}


def _damaged(tmp_path, name, edit):
    tensors = xlabs_controlnet_tensors()
    edit(tensors)
    path = tmp_path / name
    save_file(tensors, str(path))
    return path


def _cli_error(capsys, src, dst, *extra):
    code = convert_main(["xlabs-controlnet", str(src), str(dst), *AXES_ARGS, *extra])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and err.startswith("orv-convert: ")
    return err


def test_cli_errors_name_the_file_and_the_key(xlabs_file, tmp_path, capsys):
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(xlabs_file.read_bytes()[:-1000])
    err = _cli_error(capsys, truncated, tmp_path / "a")
    assert str(truncated) in err and "truncated" in err

    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    assert str(garbage) in _cli_error(capsys, garbage, tmp_path / "b")

    missing = _damaged(tmp_path, "missing.safetensors", lambda t: t.pop("double_blocks.1.txt_attn.proj.bias"))
    err = _cli_error(capsys, missing, tmp_path / "c")
    assert str(missing) in err and "double_blocks.1.txt_attn.proj.bias" in err and "missing" in err

    unknown = _damaged(tmp_path, "unknown.safetensors", lambda t: t.update({"single_blocks.0.linear1.weight":
                                                                             torch.zeros(4, 4)}))
    err = _cli_error(capsys, unknown, tmp_path / "d")
    assert str(unknown) in err and "single_blocks.0.linear1.weight" in err and "unknown" in err

    reshaped = _damaged(tmp_path, "shape.safetensors", lambda t: t.update({"controlnet_blocks.0.weight":
                                                                            torch.zeros(32, 16)}))
    assert "controlnet_blocks.0.weight" in _cli_error(capsys, reshaped, tmp_path / "e")

    assert "no such file" in _cli_error(capsys, tmp_path / "absent.safetensors", tmp_path / "f")
    err = _cli_error(capsys, xlabs_file, tmp_path / "g", "--axes-dims-rope", "16", "56", "56")
    assert "axes" in err and "16" in err  # FLUX.1's axes do not fit a head size of 16

    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    assert "not an empty folder" in _cli_error(capsys, xlabs_file, tmp_path / "full")
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()  # nothing half-written


# ---- the first-frame stage: config check and direct loading --------------------------------


def _config(flux, *paths):
    return config_from_dict({
        "device": "cpu",
        "first_frames": {"flux": str(flux), "controlnets": [{"path": str(p), "condition": "depth"} for p in paths]},
        "score": {"enabled": False},
    })


def _instantx_folder(folder):
    """A tiny InstantX-style (latent-space) FluxControlNetModel folder."""
    torch.manual_seed(0)
    FluxControlNetModel(patch_size=1, in_channels=64, num_layers=2, num_single_layers=1, attention_head_dim=16,
                        num_attention_heads=2, joint_attention_dim=32, pooled_projection_dim=32,
                        guidance_embeds=True, axes_dims_rope=AXES).save_pretrained(folder)
    return folder


def test_config_check_takes_an_xlabs_file_and_names_the_field_otherwise(xlabs_file, flux, tmp_path):
    check_inputs(_config(flux, xlabs_file), ["first_frames"])
    folder = build_tiny_xlabs_controlnet(tmp_path / "diffusers-xlabs")
    check_inputs(_config(flux, xlabs_file, folder), ["first_frames"])  # one family, same depth: fine

    not_safetensors = tmp_path / "controlnet.bin"
    not_safetensors.write_bytes(b"\0" * 16)
    with pytest.raises(ConfigError, match=r"first_frames\.controlnets\[0\]\.path: .*controlnet\.bin is a single "
                                          r"file but not \.safetensors"):
        check_inputs(_config(flux, not_safetensors), ["first_frames"])

    diffusers_file = folder / "diffusion_pytorch_model.safetensors"
    with pytest.raises(ConfigError, match=r"controlnets\[1\]\.path: .*diffusers-format weights.*give the diffusers "
                                          r"folder"):
        check_inputs(_config(flux, xlabs_file, diffusers_file), ["first_frames"])

    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(xlabs_file.read_bytes()[:-1000])
    with pytest.raises(ConfigError, match=r"controlnets\[0\]\.path: .*truncated"):
        check_inputs(_config(flux, truncated), ["first_frames"])

    with pytest.raises(ConfigError, match=r"controlnets\[0\]\.path: .*does not exist"):
        check_inputs(_config(flux, tmp_path / "absent.safetensors"), ["first_frames"])


def test_mixed_families_and_depths_are_refused_naming_the_combination(xlabs_file, flux, tmp_path):
    instantx = _instantx_folder(tmp_path / "instantx")
    with pytest.raises(ConfigError, match=r"controlnets\[1\].*InstantX-style.*controlnets\[0\].*XLabs-style.*"
                                          r"mixing XLabs-style and InstantX-style ControlNets is unsupported"):
        check_inputs(_config(flux, xlabs_file, instantx), ["first_frames"])
    deeper = build_tiny_xlabs_file(tmp_path / "deeper.safetensors", depth=3)
    with pytest.raises(ConfigError, match="3 double-block outputs but .* has 2"):
        check_inputs(_config(flux, xlabs_file, deeper), ["first_frames"])
    # the painter refuses the same set before loading any weight
    with pytest.raises(ConfigError, match="mixing XLabs-style and InstantX-style"):
        FirstFramePainter(flux, [ControlNetConfig(str(instantx), "depth"), ControlNetConfig(str(xlabs_file),
                                                                                            "semantics")])


def _maps(corner):
    depth = np.full((64, 64), 0.8, np.float32)
    depth[corner:corner + 24, corner:corner + 24] = 0.4  # the geometry moves (depth images are normalised)
    return {"depth": depth, "semantics": np.zeros((64, 64), np.int32)}


def test_painter_loads_an_xlabs_file_as_its_converted_folder(xlabs_file, flux, tmp_path):
    folder = convert_xlabs_controlnet(xlabs_file, tmp_path / "converted", axes_dims_rope=AXES)
    direct = FirstFramePainter(flux, [ControlNetConfig(str(xlabs_file), "depth", 0.8)], num_inference_steps=2,
                               max_sequence_length=32)
    assert direct.pipe.controlnet.input_hint_block is not None
    frame = direct.paint(_maps(8), "a wooden table", seed=0, height=64, width=64)
    assert frame.shape == (64, 64, 3)
    assert np.abs(frame.astype(int) - direct.paint(_maps(32), "a wooden table", seed=0, height=64,
                                                   width=64)).mean() > 0
    converted = FirstFramePainter(flux, [ControlNetConfig(str(folder), "depth", 0.8)], num_inference_steps=2,
                                  max_sequence_length=32)
    same = converted.paint(_maps(8), "a wooden table", seed=0, height=64, width=64)
    assert np.abs(frame.astype(int) - same).max() <= 1  # equal weights; float rounding may move a level

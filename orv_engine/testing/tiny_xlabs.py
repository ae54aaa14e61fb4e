"""Write a tiny XLabs ControlNet file: a format twin of XLabs-AI's released ``.safetensors``.

Why: XLabs' ControlNets (``flux-controlnet-depth-v3`` and its siblings, 1.5 GB) cannot be
downloaded here, yet ``orv-convert xlabs-controlnet`` and the first-frame stage's direct
loading must be tested on exactly their on-disk format. The file written here holds the
state dict of x-flux's ``ControlNetFlux`` (``src/flux/controlnet.py``) under its own key
names, with the shape relationships of the real module (hidden size = heads x head size,
MLP 4x, fused qkv with bias, QK-norm scales of the head size, a 16-channel
``input_hint_block`` of 8 convs in an ``nn.Sequential`` with SiLUs at the odd indices), at
a few kilobytes. Weights are random and non-zero (the released files' zero-initialised
``controlnet_blocks`` and last hint conv are trained away), so a forward pass tests every
tensor's placement.

The key list is written here from the module tree, on purpose apart from the converter's
own (:mod:`orv_engine.models.xlabs_controlnet`), so that a naming slip in one is caught by
the other.

    python -m orv_engine.testing.tiny_xlabs outputs/tiny-xlabs-depth.safetensors
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file

# Sizes that fit the tiny FLUX of tiny_flux.py (hidden 32 = 2 heads x 16, text widths 32,
# rotary axes (4, 6, 6)); FLUX.1-dev's are hidden 3072 = 24 x 128, vec 768, context 4096.
TINY_XLABS = {"hidden_size": 32, "num_heads": 2, "depth": 2, "in_channels": 64, "vec_in_dim": 32,
              "context_in_dim": 32, "guidance_embed": True}


def _linear(prefix: str, in_dim: int, out_dim: int, bias: bool = True) -> dict[str, tuple[int, ...]]:
    shapes = {f"{prefix}.weight": (out_dim, in_dim)}
    if bias:
        shapes[f"{prefix}.bias"] = (out_dim,)
    return shapes


def _mlp_embedder(prefix: str, in_dim: int, hidden: int) -> dict[str, tuple[int, ...]]:
    # x-flux's MLPEmbedder: in_layer -> SiLU -> out_layer
    return {**_linear(f"{prefix}.in_layer", in_dim, hidden), **_linear(f"{prefix}.out_layer", hidden, hidden)}


def _double_stream_block(prefix: str, hidden: int, num_heads: int, mlp_ratio: float = 4.0) -> dict:
    # x-flux's DoubleStreamBlock: per stream a Modulation(double), a SelfAttention (qkv, QKNorm
    # of RMSNorms with a "scale", proj) and an MLP Sequential(Linear, GELU, Linear); the
    # LayerNorms have no affine parameters.
    head_dim = hidden // num_heads
    mlp_hidden = int(hidden * mlp_ratio)
    shapes = {}
    for stream in ("img", "txt"):
        shapes |= _linear(f"{prefix}.{stream}_mod.lin", hidden, 6 * hidden)
        shapes |= _linear(f"{prefix}.{stream}_attn.qkv", hidden, 3 * hidden)
        shapes[f"{prefix}.{stream}_attn.norm.query_norm.scale"] = (head_dim,)
        shapes[f"{prefix}.{stream}_attn.norm.key_norm.scale"] = (head_dim,)
        shapes |= _linear(f"{prefix}.{stream}_attn.proj", hidden, hidden)
        shapes |= _linear(f"{prefix}.{stream}_mlp.0", hidden, mlp_hidden)
        shapes |= _linear(f"{prefix}.{stream}_mlp.2", mlp_hidden, hidden)
    return shapes


def _input_hint_block(prefix: str = "input_hint_block") -> dict:
    # nn.Sequential(Conv(3->16), SiLU, Conv, SiLU, Conv/2, SiLU, Conv, SiLU, Conv/2, SiLU, Conv,
    # SiLU, Conv/2, SiLU, Conv(16->16)): parameters at the even indices 0..14
    shapes = {}
    for index in range(0, 15, 2):
        in_ch = 3 if index == 0 else 16
        shapes[f"{prefix}.{index}.weight"] = (16, in_ch, 3, 3)
        shapes[f"{prefix}.{index}.bias"] = (16,)
    return shapes


def xlabs_controlnet_shapes(hidden_size: int, num_heads: int, depth: int, in_channels: int, vec_in_dim: int,
                            context_in_dim: int, guidance_embed: bool, input_hint_block: bool = True) -> dict:
    """``{key: shape}`` of ``ControlNetFlux(FluxParams(...), controlnet_depth=depth).state_dict()``."""
    shapes = {**_linear("img_in", in_channels, hidden_size),
              **_mlp_embedder("time_in", 256, hidden_size),
              **_mlp_embedder("vector_in", vec_in_dim, hidden_size)}
    if guidance_embed:  # else nn.Identity: no keys
        shapes |= _mlp_embedder("guidance_in", 256, hidden_size)
    shapes |= _linear("txt_in", context_in_dim, hidden_size)
    for i in range(depth):
        shapes |= _double_stream_block(f"double_blocks.{i}", hidden_size, num_heads)
    for i in range(depth):
        shapes |= _linear(f"controlnet_blocks.{i}", hidden_size, hidden_size)
    shapes |= _linear("pos_embed_input", in_channels, hidden_size)
    if input_hint_block:
        shapes |= _input_hint_block()
    return shapes


def xlabs_controlnet_tensors(seed: int = 0, dtype: torch.dtype = torch.float32, **sizes) -> dict[str, torch.Tensor]:
    """Random tensors for every key (``sizes`` override :data:`TINY_XLABS`)."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for key, shape in xlabs_controlnet_shapes(**{**TINY_XLABS, **sizes}).items():
        if key.endswith(".scale"):  # RMSNorm scales start at one; keep them near it
            value = 1 + 0.1 * torch.randn(shape, generator=generator)
        else:
            fan_in = max(1, torch.Size(shape[1:]).numel())
            value = torch.randn(shape, generator=generator) / fan_in ** 0.5
        tensors[key] = value.to(dtype)
    return tensors


def build_tiny_xlabs_file(path, seed: int = 0, dtype: torch.dtype = torch.float32, **sizes) -> Path:
    """Write the twin file at ``path`` (a ``.safetensors`` file, no config); returns it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(xlabs_controlnet_tensors(seed, dtype, **sizes), str(path))
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="the .safetensors file to write")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(build_tiny_xlabs_file(args.out, args.seed))


if __name__ == "__main__":
    main()

"""XLabs' released single-file FLUX ControlNets -> diffusers' ``FluxControlNetModel``.

Why hand-written: XLabs-AI publishes its ControlNets (``flux-controlnet-depth-v3``,
``flux-controlnet-canny-v3``, ...) as one ``.safetensors`` file holding the state dict of
its own ``ControlNetFlux`` module (x-flux, ``src/flux/controlnet.py``), with no config;
diffusers loads only its folder layout (config.json + weights) and ships no converter for
these files, so ``FluxControlNetModel.from_pretrained`` fails on them with "not a valid JSON
file". This module reads the file's header, infers the config from the tensor shapes,
checks every key and shape against what that config implies (so a truncated, foreign or
partial file fails naming the file and the key, before any weight is read), and maps the
names onto diffusers' modules.

What the mapping relies on (diffusers 0.42):

- ``ControlNetFlux`` is FLUX's embedders + ``controlnet_depth`` double-stream blocks + one
  zero-initialised linear per block, plus a pixel-space ``input_hint_block`` (8 convs, /8)
  whose 16 channels are packed 2x2 into the 64 of a latent token and projected by
  ``pos_embed_input``. diffusers' ``FluxControlNetModel`` with ``patch_size=2``,
  ``conditioning_embedding_channels=16``, ``num_single_layers=0`` has the same modules
  (``input_hint_block`` -> ``ControlNetConditioningEmbedding``, ``pos_embed_input`` ->
  ``controlnet_x_embedder``).
- ``FluxControlNetPipeline`` treats a net with an ``input_hint_block`` as XLabs-style: the
  control image goes in as pixels and the block outputs are repeated over FLUX's 19 double
  blocks (``samples[i % n]``), as XLabs' own FLUX model adds them (``samples[i % 2]``: the
  same for the released depth-2 nets).
- FLUX's modulation chunks (shift, scale, gate) in diffusers' ``AdaLayerNormZero`` order, so
  ``*_mod.lin`` maps unchanged; fused ``qkv`` is split into ``to_q/k/v``.

The config does not record the rotary axes (x-flux takes them from FLUX.1's params):
FLUX.1's ``(16, 56, 56)`` unless the caller passes the base model's ``axes_dims_rope``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from diffusers import FluxControlNetModel
from safetensors import SafetensorError, safe_open

from orv_engine.models.checkpoint_files import CheckpointError, read_header

logger = logging.getLogger(__name__)

FLUX1_AXES_DIMS_ROPE = (16, 56, 56)
HINT_CHANNELS = 16  # XLabs' input_hint_block convs (diffusers' block_out_channels=(16, 16, 16, 16))
HINT_PATCH = 2  # the hint's /8 map is packed 2x2 into latent tokens
MLP_RATIO = 4  # diffusers' FluxTransformerBlock has no other
TIME_EMBED_DIM = 256  # x-flux's timestep_embedding(t, 256), diffusers' Timesteps(256)

# input_hint_block: nn.Sequential index (convs at even indices, SiLU between) -> diffusers' name
HINT_LAYERS = {0: "conv_in", 2: "blocks.0", 4: "blocks.1", 6: "blocks.2", 8: "blocks.3", 10: "blocks.4",
               12: "blocks.5", 14: "conv_out"}
EMBEDDERS = {
    "img_in": "x_embedder",
    "pos_embed_input": "controlnet_x_embedder",
    "txt_in": "context_embedder",
    "time_in.in_layer": "time_text_embed.timestep_embedder.linear_1",
    "time_in.out_layer": "time_text_embed.timestep_embedder.linear_2",
    "vector_in.in_layer": "time_text_embed.text_embedder.linear_1",
    "vector_in.out_layer": "time_text_embed.text_embedder.linear_2",
    "guidance_in.in_layer": "time_text_embed.guidance_embedder.linear_1",
    "guidance_in.out_layer": "time_text_embed.guidance_embedder.linear_2",
}
# per double block, one stream each: x-flux name -> diffusers name ("qkv" is split apart)
STREAMS = {
    "img": {"mod.lin": "norm1.linear", "attn.norm.query_norm.scale": "attn.norm_q.weight",
            "attn.norm.key_norm.scale": "attn.norm_k.weight", "attn.proj": "attn.to_out.0",
            "mlp.0": "ff.net.0.proj", "mlp.2": "ff.net.2", "attn.qkv": ("attn.to_q", "attn.to_k", "attn.to_v")},
    "txt": {"mod.lin": "norm1_context.linear", "attn.norm.query_norm.scale": "attn.norm_added_q.weight",
            "attn.norm.key_norm.scale": "attn.norm_added_k.weight", "attn.proj": "attn.to_add_out",
            "mlp.0": "ff_context.net.0.proj", "mlp.2": "ff_context.net.2",
            "attn.qkv": ("attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj")},
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
SAFETENSORS_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def read_xlabs_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """``{key: shape}`` of a single-file checkpoint, from its header (a truncated file fails here)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    header = read_header(path)
    return {key: tuple(entry["shape"]) for key, entry in header.items() if key != "__metadata__"}


def _shape(shapes: dict, key: str, path: Path, dim: int) -> int:
    if key not in shapes:
        raise CheckpointError(f"{path}: key {key!r} is missing; is this an XLabs ControlNetFlux checkpoint?")
    return shapes[key][dim]


def _linear(name: str, out_dim: int, in_dim: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (out_dim, in_dim), f"{name}.bias": (out_dim,)}


def expected_xlabs_shapes(hidden: int, head_dim: int, depth: int, in_channels: int, vec_in_dim: int,
                          context_in_dim: int, guidance_embed: bool, hint_channels: int | None) -> dict:
    """Every key of a ``ControlNetFlux`` state dict with these sizes, and its shape."""
    shapes = {**_linear("img_in", hidden, in_channels), **_linear("pos_embed_input", hidden, in_channels),
              **_linear("txt_in", hidden, context_in_dim),
              **_linear("time_in.in_layer", hidden, TIME_EMBED_DIM), **_linear("time_in.out_layer", hidden, hidden),
              **_linear("vector_in.in_layer", hidden, vec_in_dim), **_linear("vector_in.out_layer", hidden, hidden)}
    if guidance_embed:
        shapes |= _linear("guidance_in.in_layer", hidden, TIME_EMBED_DIM)
        shapes |= _linear("guidance_in.out_layer", hidden, hidden)
    for i in range(depth):
        for stream in STREAMS:
            p = f"double_blocks.{i}.{stream}"
            shapes |= _linear(f"{p}_mod.lin", 6 * hidden, hidden)
            shapes |= _linear(f"{p}_attn.qkv", 3 * hidden, hidden)
            shapes |= {f"{p}_attn.norm.query_norm.scale": (head_dim,), f"{p}_attn.norm.key_norm.scale": (head_dim,)}
            shapes |= _linear(f"{p}_attn.proj", hidden, hidden)
            shapes |= _linear(f"{p}_mlp.0", MLP_RATIO * hidden, hidden)
            shapes |= _linear(f"{p}_mlp.2", hidden, MLP_RATIO * hidden)
        shapes |= _linear(f"controlnet_blocks.{i}", hidden, hidden)
    if hint_channels is not None:
        for index in HINT_LAYERS:
            out_ch = hint_channels if index == 14 else HINT_CHANNELS
            in_ch = 3 if index == 0 else HINT_CHANNELS
            shapes |= {f"input_hint_block.{index}.weight": (out_ch, in_ch, 3, 3),
                       f"input_hint_block.{index}.bias": (out_ch,)}
    return shapes


def _listing(keys, limit: int = 6) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:limit]) + (f" and {len(keys) - limit} more" if len(keys) > limit else "")


def xlabs_controlnet_config(shapes: dict[str, tuple[int, ...]], path: str | Path,
                            axes_dims_rope=None) -> dict:
    """The ``FluxControlNetModel`` config of an XLabs checkpoint, inferred from its shapes.

    Every key and shape is checked against what the inferred config implies; anything else
    is a :class:`CheckpointError` naming ``path`` and the key. ``axes_dims_rope`` (the base
    model's rotary axes) is checked against the head size when given; None: FLUX.1's, checked
    at load.
    """
    path = Path(path)
    if "x_embedder.weight" in shapes or any(key.startswith("transformer_blocks.") for key in shapes):
        raise CheckpointError(f"{path} holds diffusers-format weights (x_embedder.*, transformer_blocks.*), not XLabs' "
                              "ControlNetFlux; give the diffusers folder that holds it (with its config.json)")
    hidden = _shape(shapes, "img_in.weight", path, 0)
    in_channels = _shape(shapes, "img_in.weight", path, 1)
    head_dim = _shape(shapes, "double_blocks.0.img_attn.norm.query_norm.scale", path, 0)
    vec_in_dim = _shape(shapes, "vector_in.in_layer.weight", path, 1)
    context_in_dim = _shape(shapes, "txt_in.weight", path, 1)
    depth = len({int(m.group(1)) for key in shapes if (m := re.match(r"double_blocks\.(\d+)\.", key))})
    guidance_embed = any(key.startswith("guidance_in.") for key in shapes)
    has_hint = any(key.startswith("input_hint_block.") for key in shapes)
    hint_channels = _shape(shapes, "input_hint_block.14.weight", path, 0) if has_hint else None
    if hidden % head_dim:
        raise CheckpointError(f"{path}: hidden size {hidden} (img_in.weight) is not a multiple of the head size "
                              f"{head_dim} (double_blocks.0.img_attn.norm.query_norm.scale)")
    if hint_channels is not None and hint_channels * HINT_PATCH ** 2 != in_channels:
        raise CheckpointError(f"{path}: input_hint_block.14.weight has {hint_channels} output channels; packed "
                              f"{HINT_PATCH}x{HINT_PATCH} they must give img_in's {in_channels} input channels")
    expected = expected_xlabs_shapes(hidden, head_dim, depth, in_channels, vec_in_dim, context_in_dim,
                                     guidance_embed, hint_channels)
    missing = expected.keys() - shapes.keys()
    if missing:
        raise CheckpointError(f"{path}: keys of XLabs' ControlNetFlux are missing: {_listing(missing)}")
    unknown = shapes.keys() - expected.keys()
    if unknown:
        raise CheckpointError(f"{path}: unknown keys (not in XLabs' ControlNetFlux): {_listing(unknown)}")
    for key, shape in expected.items():
        if shapes[key] != shape:
            raise CheckpointError(f"{path}: {key} has shape {list(shapes[key])}, expected {list(shape)} "
                                  f"(hidden size {hidden}, head size {head_dim})")
    if not has_hint:
        logger.warning("%s has no input_hint_block: diffusers' pipeline feeds it VAE latents and spreads its %d "
                       "block outputs over FLUX's blocks instead of repeating them", path, depth)
    if axes_dims_rope is not None and sum(axes_dims_rope) != head_dim:
        raise CheckpointError(f"{path}: the rotary axes {list(axes_dims_rope)} do not add up to its head size "
                              f"{head_dim}; give the base FLUX model's axes_dims_rope")
    axes = list(FLUX1_AXES_DIMS_ROPE if axes_dims_rope is None else axes_dims_rope)
    return {
        "patch_size": HINT_PATCH if has_hint else 1,
        "in_channels": in_channels,
        "num_layers": depth,
        "num_single_layers": 0,
        "attention_head_dim": head_dim,
        "num_attention_heads": hidden // head_dim,
        "joint_attention_dim": context_in_dim,
        "pooled_projection_dim": vec_in_dim,
        "guidance_embeds": guidance_embed,
        "axes_dims_rope": axes,
        "conditioning_embedding_channels": hint_channels,
    }


def read_xlabs_config(path: str | Path, axes_dims_rope=None) -> dict:
    """The diffusers config of an XLabs ``.safetensors`` file, read from its header only."""
    return xlabs_controlnet_config(read_xlabs_shapes(path), path, axes_dims_rope)


def convert_xlabs_state_dict(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """x-flux ``ControlNetFlux`` names -> ``FluxControlNetModel`` names (keys already checked)."""
    out = {}
    for key, tensor in tensors.items():
        stem, _, leaf = key.rpartition(".")
        if stem in EMBEDDERS:
            out[f"{EMBEDDERS[stem]}.{leaf}"] = tensor
        elif re.fullmatch(r"controlnet_blocks\.\d+", stem):
            out[key] = tensor
        elif m := re.fullmatch(r"input_hint_block\.(\d+)", stem):
            out[f"input_hint_block.{HINT_LAYERS[int(m.group(1))]}.{leaf}"] = tensor
        elif m := re.fullmatch(r"double_blocks\.(\d+)\.(img|txt)_(.+)", key):
            block, stream, rest = m.groups()
            prefix = f"transformer_blocks.{block}"
            for name, target in STREAMS[stream].items():
                if rest == name or rest.startswith(name + "."):
                    suffix = rest[len(name):]
                    if isinstance(target, tuple):  # fused q, k, v (in that order along the output dim)
                        for part, chunk in zip(target, tensor.chunk(3, dim=0)):
                            out[f"{prefix}.{part}{suffix}"] = chunk.clone()
                    else:
                        out[f"{prefix}.{target}{suffix}"] = tensor
                    break
            else:
                raise KeyError(key)  # unreachable after xlabs_controlnet_config's check
        else:
            raise KeyError(key)
    return out


def read_xlabs_tensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of the file; safetensors' own errors become a CheckpointError naming it."""
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            return {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, RuntimeError) as error:
        raise CheckpointError(f"{path} could not be read as safetensors ({error}); is it truncated or corrupt?") \
            from error


def load_xlabs_controlnet(path: str | Path, dtype: torch.dtype | None = None,
                          axes_dims_rope=None) -> FluxControlNetModel:
    """An XLabs ``.safetensors`` ControlNet as a ``FluxControlNetModel``, converted in memory.

    ``dtype`` None keeps the stored precision; ``axes_dims_rope``: the base FLUX model's
    (default FLUX.1's), which must add up to the head size.
    """
    path = Path(path)
    config = read_xlabs_config(path, axes_dims_rope)
    if sum(config["axes_dims_rope"]) != config["attention_head_dim"]:
        raise CheckpointError(
            f"{path}: rotary axes {config['axes_dims_rope']} do not add up to the head size "
            f"{config['attention_head_dim']}; give the base FLUX model's axes_dims_rope (--axes-dims-rope)")
    state = convert_xlabs_state_dict(read_xlabs_tensors(path))
    if dtype is not None:
        state = {key: tensor.to(dtype) for key, tensor in state.items()}
    with torch.device("meta"):  # no random init of ~1B parameters that are overwritten at once
        model = FluxControlNetModel(**config)
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()


def stored_dtype(path: Path) -> torch.dtype:
    """The precision of the file's first tensor (XLabs saves one precision)."""
    for entry in read_header(path).values():
        if isinstance(entry, dict) and "dtype" in entry:
            return SAFETENSORS_DTYPES.get(entry["dtype"], torch.float32)
    return torch.float32


def convert_xlabs_controlnet(src: str | Path, dst: str | Path, dtype: str = "keep", axes_dims_rope=None) -> Path:
    """Write the XLabs file ``src`` as a diffusers ``FluxControlNetModel`` folder ``dst``."""
    src, dst = Path(src), Path(dst)
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise CheckpointError(f"{dst} exists and is not an empty folder; choose a new folder")
    read_xlabs_config(src, axes_dims_rope)  # checks the file before its precision is read
    target = stored_dtype(src) if dtype == "keep" else DTYPES[dtype]
    model = load_xlabs_controlnet(src, target, axes_dims_rope)
    model.save_pretrained(dst)
    return dst

"""The small painter's modules: diffusers' and transformers' own FLUX classes at tiny sizes.

Every part is the class FLUX.1-dev / XLabs' ControlNets load as (``AutoencoderKL`` with FLUX's
16 latent channels and 8x downsampling, ``FluxTransformer2DModel``, a CLIP text model for the
pooled vector and a T5 encoder for the token sequence, ``FluxControlNetModel`` with XLabs'
structure: two double blocks, the pixel-space ``input_hint_block``, no single blocks), so the
saved folders load through ``FluxControlNetPipeline.from_pretrained`` exactly as the real ones.

Why ``guidance_embeds=False``: FLUX.1-dev's guidance embedding is the product of guidance
distillation from a teacher, which does not exist here; the small FLUX is trained with the
plain flow-matching objective (like FLUX.1-schnell's and SD3's base), and diffusers' pipeline
then passes no guidance. Its ControlNets match (the pipeline passes guidance to both or none).

Tokenizers are written here from the prompt vocabulary of :meth:`Appearance.prompt` (every
word a T5 token; CLIP reads characters), as :mod:`orv_engine.testing.tiny_flux` does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxControlNetModel, FluxTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel, T5Tokenizer

from orv_engine.models.xlabs_controlnet import EMBEDDERS, HINT_LAYERS, STREAMS
from orv_engine.sim.appearance import CUBE_COLORS, SURFACE_COLORS, TOWEL_COLORS

# Sizes (see docs/small_painter.md for why): 64x64 frames -> 8x8x16 latents -> 4x4 = 16 tokens.
VAE_CHANNELS = (16, 32, 64, 64)
LATENT_CHANNELS = 16
HEADS, HEAD_DIM = 4, 32  # hidden 128
AXES_DIMS_ROPE = (8, 12, 12)  # sum = HEAD_DIM, FLUX.1's proportions (16, 56, 56) / 4 roughly
DOUBLE_LAYERS, SINGLE_LAYERS = 2, 4
CONTROLNET_LAYERS = 2  # XLabs' released ControlNets: controlnet_depth=2
TEXT_WIDTH = 64  # T5 d_model = CLIP hidden = the transformer's joint/pooled widths
CLIP_MAX_LENGTH = 192  # characters: the longest prompt is ~170
MAX_SEQUENCE_LENGTH = 64  # T5 tokens the painter is trained (and must be run) with
TEMPLATE_WORDS = ("a robot arm above table floor cube and towel on the light from soft bright dim front back left "
                  "right wooden plain three cubes").split()


def prompt_words() -> list[str]:
    words = list(TEMPLATE_WORDS)
    for palette in (CUBE_COLORS, TOWEL_COLORS, SURFACE_COLORS):
        for name in palette:
            words += name.split()
    return sorted(set(words))


def t5_tokenizer() -> T5Tokenizer:
    """Whole prompt words (``▁red``) and single characters for anything else."""
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -3.0) for w in prompt_words()]
    vocab += [(ch, -6.0) for ch in "abcdefghijklmnopqrstuvwxyz0123456789;,.'-"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def clip_tokenizer(folder: Path) -> CLIPTokenizer:
    """A character-level CLIP BPE tokenizer (vocab.json + merges.txt written into ``folder``)."""
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:'-()!?")
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=CLIP_MAX_LENGTH)


def build_vae() -> AutoencoderKL:
    return AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=LATENT_CHANNELS, block_out_channels=VAE_CHANNELS,
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=8, use_quant_conv=False, use_post_quant_conv=False,
        sample_size=64, shift_factor=0.0, scaling_factor=1.0,  # set from the trained latents
    )


def build_text_encoders(folder: Path):
    """(CLIP tokenizer, CLIP text model, T5 tokenizer, T5 encoder); ``folder`` keeps the CLIP vocab."""
    tokenizer = clip_tokenizer(folder)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=CLIP_MAX_LENGTH, projection_dim=TEXT_WIDTH,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    ))
    tokenizer_2 = t5_tokenizer()
    text_encoder_2 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_2), d_model=TEXT_WIDTH, d_ff=4 * TEXT_WIDTH, d_kv=16, num_layers=2, num_heads=4,
        relative_attention_num_buckets=16, relative_attention_max_distance=64, dropout_rate=0.0,
    ))
    return tokenizer, text_encoder, tokenizer_2, text_encoder_2


def build_transformer() -> FluxTransformer2DModel:
    return FluxTransformer2DModel(
        patch_size=1, in_channels=4 * LATENT_CHANNELS, num_layers=DOUBLE_LAYERS, num_single_layers=SINGLE_LAYERS,
        attention_head_dim=HEAD_DIM, num_attention_heads=HEADS, joint_attention_dim=TEXT_WIDTH,
        pooled_projection_dim=TEXT_WIDTH, guidance_embeds=False, axes_dims_rope=AXES_DIMS_ROPE,
    )


def build_scheduler() -> FlowMatchEulerDiscreteScheduler:
    """FLUX.1-dev's scheduler config (resolution-dependent shift)."""
    return FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    )


def build_controlnet(base: FluxTransformer2DModel) -> FluxControlNetModel:
    """An XLabs-style ControlNet initialised from the base as x-flux does (its embedders and its
    first double blocks copied; ``controlnet_blocks`` and the hint's last conv start at zero)."""
    c = base.config
    net = FluxControlNetModel(
        patch_size=2, in_channels=c.in_channels, num_layers=CONTROLNET_LAYERS, num_single_layers=0,
        attention_head_dim=c.attention_head_dim, num_attention_heads=c.num_attention_heads,
        joint_attention_dim=c.joint_attention_dim, pooled_projection_dim=c.pooled_projection_dim,
        guidance_embeds=c.guidance_embeds, axes_dims_rope=list(c.axes_dims_rope), conditioning_embedding_channels=16,
    )
    own = net.state_dict()
    copied = {k: v for k, v in base.state_dict().items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(copied, strict=False)
    return net


def to_xlabs_state_dict(net: FluxControlNetModel) -> dict[str, torch.Tensor]:
    """diffusers' ``FluxControlNetModel`` names -> x-flux ``ControlNetFlux`` names (the inverse of
    :func:`orv_engine.models.xlabs_controlnet.convert_xlabs_state_dict`; q, k, v fused into qkv)."""
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    for xlabs, diffusers in EMBEDDERS.items():
        for leaf in ("weight", "bias"):
            if f"{diffusers}.{leaf}" in state:
                out[f"{xlabs}.{leaf}"] = state.pop(f"{diffusers}.{leaf}")
    for index, name in HINT_LAYERS.items():
        for leaf in ("weight", "bias"):
            out[f"input_hint_block.{index}.{leaf}"] = state.pop(f"input_hint_block.{name}.{leaf}")
    for key in [k for k in state if re.fullmatch(r"controlnet_blocks\.\d+\.(weight|bias)", k)]:
        out[key] = state.pop(key)
    for block in range(net.config.num_layers):
        prefix = f"transformer_blocks.{block}"
        for stream, names in STREAMS.items():
            for xlabs, target in names.items():
                key = f"double_blocks.{block}.{stream}_{xlabs}"
                if isinstance(target, tuple):
                    for leaf in ("weight", "bias"):
                        out[f"{key}.{leaf}"] = torch.cat([state.pop(f"{prefix}.{t}.{leaf}") for t in target], 0)
                elif xlabs.endswith(".scale"):
                    out[key] = state.pop(f"{prefix}.{target}")
                else:
                    for leaf in ("weight", "bias"):
                        out[f"{key}.{leaf}"] = state.pop(f"{prefix}.{target}.{leaf}")
    if state:  # a module of the diffusers model with no place in XLabs' format
        raise KeyError(f"no XLabs name for: {', '.join(sorted(state)[:6])}")
    return out


def parameter_count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

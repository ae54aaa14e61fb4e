"""Named transformer configs: the paper's 2B model (Table 8), the small one trained here, a tiny one for tests.

Why here: a user who wants "the ORV-2B architecture" or "something that runs in a test"
should find it by name instead of copying 25 keyword arguments. Values not listed in
Table 8 keep CogVideoX-2B's own config (the paper: "others keep the same as CogVideoX-2B").

    from orv_engine.models import ORVTransformer3DModel, transformer_config
    model = ORVTransformer3DModel.from_config(transformer_config("tiny"))
"""

from __future__ import annotations

import copy

# zai-org/CogVideoX-2b transformer/config.json (text-to-video, 16 input channels).
COGVIDEOX_2B: dict = {
    "activation_fn": "gelu-approximate",
    "attention_bias": True,
    "attention_head_dim": 64,
    "dropout": 0.0,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "in_channels": 16,
    "max_text_seq_length": 226,
    "norm_elementwise_affine": True,
    "norm_eps": 1e-05,
    "num_attention_heads": 30,
    "num_layers": 30,
    "out_channels": 16,
    "patch_size": 2,
    "sample_frames": 49,
    "sample_height": 60,
    "sample_width": 90,
    "spatial_interpolation_scale": 1.875,
    "temporal_compression_ratio": 4,
    "temporal_interpolation_scale": 1.0,
    "text_embed_dim": 4096,
    "time_embed_dim": 512,
    "timestep_activation_fn": "silu",
    "use_rotary_positional_embeddings": False,
}

# Table 8 and the official code (OrangeSodahub/ORV): the action MLP is 28 -> 4*512 -> 512,
# the conditions are fused in token space at the transformer width (1920, Table 8's
# "conditioning dimension"). Bridge's training size: 17 frames of 320x480 (40x60 latents).
ORV_2B: dict = {
    **COGVIDEOX_2B,
    "in_channels": 32,  # noisy latents (16) + first-frame latents (16)
    "sample_height": 40,
    "sample_width": 60,
    "sample_frames": 17,
    "action_dim": 7,
    "action_chunk": 4,  # r = the VAE's temporal compression
    "action_embed_dim": 512,  # added to the 512-d time embedding
    "action_hidden_dim": 2048,
    "condition_kinds": ["depth", "semantics"],
}

# Stage 1 of the paper's two-stage SFT: actions only, no visual conditions.
ORV_2B_ACTION: dict = {**ORV_2B, "condition_kinds": []}

# Upstream's 1.4B model trained from scratch (config/transformer/base_1.4b_480_320_rope.json,
# traj_image_1.4b_scratch.yaml): 28 layers of 28 heads, rotary positions, vision-only AdaLN.
ORV_1_4B: dict = {
    **ORV_2B_ACTION,
    "num_attention_heads": 28,
    "num_layers": 28,
    "use_rotary_positional_embeddings": True,
    "modulate_text_tokens": False,
}

# Small enough for a CPU test: 2 blocks, width 16, sample 64x64 pixels / 9 frames.
ORV_TINY: dict = {
    **COGVIDEOX_2B,
    "attention_head_dim": 8,
    "num_attention_heads": 2,
    "num_layers": 2,
    "in_channels": 32,
    "out_channels": 16,
    "text_embed_dim": 32,
    "time_embed_dim": 16,
    "max_text_seq_length": 8,
    "sample_height": 8,
    "sample_width": 8,
    "sample_frames": 9,
    "action_dim": 7,
    "action_chunk": 4,
    "action_embed_dim": 16,
    "action_hidden_dim": 64,
    "condition_kinds": ["depth", "semantics"],
}

# The small ORV trained on a CPU here (issue [small-orv]): 64x64 frames through a small
# CogVideoX VAE with 4x spatial compression (16x16x16 latents; see configs/small/vae.yaml for
# why not 8x), patch size 2 (64 tokens per latent frame, 320 vision tokens for 17 frames: v4;
# v1-v3 used patch 4, 16 tokens per latent frame, and could not reproduce the given first
# frame: frame 0 at 20.7 dB vs 23.6 dB for a patch-2 pilot at a sixth of the steps,
# docs/small_orv.md), 4 blocks of 4 heads x 64, a 96-d time embedding; the paper's action MLP
# shape (28 -> 4*E -> E). Why 4 heads (256 wide) and not 3: the 3-head patch-4 model could not
# even reproduce the static background (v1). Two variants + the VAE fit the 30 MB shipping
# budget in float16.
ORV_SMALL: dict = {
    **COGVIDEOX_2B,
    "attention_head_dim": 64,
    "num_attention_heads": 4,
    "num_layers": 4,
    "in_channels": 32,
    "out_channels": 16,
    "text_embed_dim": 32,
    "time_embed_dim": 96,
    "max_text_seq_length": 8,
    "patch_size": 2,
    "sample_height": 16,
    "sample_width": 16,
    "sample_frames": 17,
    "action_dim": 7,
    "action_chunk": 4,
    "action_embed_dim": 96,
    "action_hidden_dim": 384,
    "condition_kinds": [],
}

CONFIGS: dict[str, dict] = {
    "2b": ORV_2B,
    "2b-action": ORV_2B_ACTION,
    "1.4b": ORV_1_4B,
    "tiny": ORV_TINY,
    "small": ORV_SMALL,
    "cogvideox-2b": COGVIDEOX_2B,
}


def transformer_config(name: str, **overrides) -> dict:
    """A fresh copy of a named config, with keyword overrides (unknown keys are rejected)."""
    if name not in CONFIGS:
        raise KeyError(f"unknown transformer config {name!r}; known: {', '.join(CONFIGS)}")
    config = copy.deepcopy(CONFIGS[name])
    unknown = set(overrides) - set(ORV_TINY) - set(COGVIDEOX_2B) - {
        "ofs_embed_dim", "patch_size_t", "use_learned_positional_embeddings", "patch_bias",
        "modulate_text_tokens", "num_views", "preprocessing",
    }
    if unknown:
        raise KeyError(f"unknown transformer config keys: {sorted(unknown)}")
    config.update(overrides)
    return config


def stock_config(config: dict) -> dict:
    """The CogVideoX part of an ORV config (for building the stock model next to ORV)."""
    orv_keys = {"action_dim", "action_chunk", "action_embed_dim", "action_hidden_dim",
                "condition_kinds", "modulate_text_tokens", "num_views", "preprocessing"}
    return {k: v for k, v in config.items() if k not in orv_keys}

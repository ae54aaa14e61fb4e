"""Tiny random-weight ORV components for CPU tests (no hub, real diffusers/transformers classes).

Everything is built from configs, so tests can save it in the real on-disk formats and
load it back through the same code a user runs on CogVideoX-2B folders.
"""

from __future__ import annotations

import numpy as np
import torch
from diffusers import (
    AutoencoderKLCogVideoX,
    CogVideoXDDIMScheduler,
    CogVideoXDPMScheduler,
    CogVideoXTransformer3DModel,
)
from transformers import T5Config, T5EncoderModel, T5Tokenizer

from orv_engine.models import ORVTransformer3DModel, stock_config, transformer_config
from orv_engine.pipelines import ORVPipeline

HEIGHT = WIDTH = 64  # pixels -> 8x8 latents
NUM_FRAMES = 8  # real frames -> 9 with the placeholder -> 3 latent frames
WORDS = ["put", "the", "spoon", "on", "towel", "carrot", "plate", "pick", "up", "robot"]


def tiny_tokenizer() -> T5Tokenizer:
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -3.0) for w in WORDS]
    vocab += [(ch, -6.0) for ch in "abcdefghijklmnopqrstuvwxyz"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def tiny_text_encoder(vocab_size: int, d_model: int = 32, seed: int = 0) -> T5EncoderModel:
    torch.manual_seed(seed)
    config = T5Config(
        vocab_size=vocab_size, d_model=d_model, d_ff=37, d_kv=8, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=16,
    )
    return T5EncoderModel(config).eval()


def tiny_vae(seed: int = 0) -> AutoencoderKLCogVideoX:
    torch.manual_seed(seed)
    return AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8, 8), latent_channels=16, layers_per_block=1, norm_num_groups=2,
        temporal_compression_ratio=4, sample_height=HEIGHT, sample_width=WIDTH,
    ).eval()


def tiny_stock_transformer(in_channels: int = 16, seed: int = 0) -> CogVideoXTransformer3DModel:
    torch.manual_seed(seed)
    return CogVideoXTransformer3DModel.from_config(
        stock_config(transformer_config("tiny", in_channels=in_channels))
    ).eval()


def tiny_orv_transformer(seed: int = 0, **overrides) -> ORVTransformer3DModel:
    torch.manual_seed(seed)
    return ORVTransformer3DModel.from_config(transformer_config("tiny", **overrides)).eval()


def perturb_new_modules(model: ORVTransformer3DModel, scale: float = 0.5, seed: int = 1) -> None:
    """Give the zero-initialised ORV modules random values (a 'trained' model)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith(("action_encoder.", "condition_fusion.", "view_attention_blocks.")) and (
                    not name.startswith("view_attention_blocks.") or ".proj_out." in name):
                p.add_(torch.randn(p.shape, generator=g) * scale)


def tiny_pipeline(scheduler: str = "dpm", seed: int = 0, trained: bool = True) -> ORVPipeline:
    tokenizer = tiny_tokenizer()
    transformer = tiny_orv_transformer(seed=seed)
    if trained:
        perturb_new_modules(transformer)
    kwargs = dict(timestep_spacing="trailing", snr_shift_scale=1.0, rescale_betas_zero_snr=True,
                  prediction_type="v_prediction", clip_sample=False)
    sched = CogVideoXDPMScheduler(**kwargs) if scheduler == "dpm" else CogVideoXDDIMScheduler(**kwargs)
    return ORVPipeline(
        tokenizer=tokenizer,
        text_encoder=tiny_text_encoder(len(tokenizer), d_model=transformer.config.text_embed_dim, seed=seed),
        vae=tiny_vae(seed),
        transformer=transformer,
        scheduler=sched,
    )


def first_frame(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def frame_actions(num_frames: int = NUM_FRAMES, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0, 1, (num_frames, 7)).astype(np.float32)


def condition_maps(num_frames: int = NUM_FRAMES, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "depth": rng.random((num_frames, HEIGHT, WIDTH), dtype=np.float32),
        "semantics": rng.integers(0, 256, (num_frames, HEIGHT, WIDTH, 3), dtype=np.uint8),
    }

"""Write a tiny random-weight ORV pipeline folder (real diffusers/transformers formats).

Why: this machine and CI reach no model hub, yet the tiny training config should run
through exactly the loading code a GPU user runs on CogVideoX-2B. This writes a folder of
the same layout (tokenizer/, text_encoder/, vae/, scheduler/, transformer/) with models a
few kilobytes big:

    python -m orv_engine.testing.tiny_orv outputs/tiny-orv-random
    orv-train configs/tiny.yaml

The transformer is stock CogVideoX (16 input channels, text-to-video), as CogVideoX-2B is,
so the run converts it to ORV on load like a real stage-1 run does.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler, CogVideoXTransformer3DModel
from transformers import T5Config, T5EncoderModel, T5Tokenizer

from orv_engine.models import ORVTransformer3DModel, stock_config, transformer_config
from orv_engine.pipelines import ORVPipeline

WORDS = ["put", "the", "spoon", "on", "towel", "carrot", "plate", "pick", "up", "robot", "move", "open"]


def tiny_tokenizer():
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("\u2581", -2.0)]
    vocab += [("\u2581" + w, -3.0) for w in WORDS]
    vocab += [(ch, -6.0) for ch in "abcdefghijklmnopqrstuvwxyz"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_tiny_components(seed: int = 0, sample_size: int = 64):
    """(tokenizer, text_encoder, vae, scheduler, stock CogVideoX transformer), all tiny."""
    torch.manual_seed(seed)
    tokenizer = tiny_tokenizer()
    text_encoder = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer), d_model=32, d_ff=37, d_kv=8, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=16,
    )).eval()
    vae = AutoencoderKLCogVideoX(
        block_out_channels=(8, 8, 8, 8), latent_channels=16, layers_per_block=1, norm_num_groups=2,
        temporal_compression_ratio=4, sample_height=sample_size, sample_width=sample_size,
    ).eval()
    # A trained VAE's posterior is narrow; a random one's is as wide as its mean, which
    # would bury the clips in sampling noise. Narrow it (std ~ 0.01).
    with torch.no_grad():
        out = vae.encoder.conv_out.conv
        out.weight[vae.config.latent_channels :] *= 0.1
        out.bias[vae.config.latent_channels :] = -9.0
    # CogVideoX-2B's scheduler config (v-prediction, zero terminal SNR, trailing spacing).
    scheduler = CogVideoXDPMScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
        num_train_timesteps=1000, prediction_type="v_prediction", rescale_betas_zero_snr=True,
        set_alpha_to_one=True, snr_shift_scale=3.0, steps_offset=0, timestep_spacing="trailing",
    )
    transformer = CogVideoXTransformer3DModel.from_config(
        stock_config(transformer_config("tiny", in_channels=16, sample_height=sample_size // 8,
                                        sample_width=sample_size // 8))
    ).eval()
    return tokenizer, text_encoder, vae, scheduler, transformer


def save_tiny_pipeline(path: str | Path, seed: int = 0, sample_size: int = 64) -> Path:
    path = Path(path)
    tokenizer, text_encoder, vae, scheduler, transformer = build_tiny_components(seed, sample_size)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(path / "tokenizer")
    text_encoder.save_pretrained(path / "text_encoder")
    vae.save_pretrained(path / "vae")
    scheduler.save_pretrained(path / "scheduler")
    transformer.save_pretrained(path / "transformer")
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="folder to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sample-size", type=int, default=64, help="pixels (square)")
    args = parser.parse_args(argv)
    print(save_tiny_pipeline(args.out, args.seed, args.sample_size))


if __name__ == "__main__":
    main()


def save_tiny_orv_pipeline(path: str | Path, seed: int = 0, sample_size: int = 64,
                           condition_kinds=("depth", "semantics"), perturb: float = 0.5) -> Path:
    """A tiny ORV *inference* folder (``ORVPipeline.save_pretrained`` layout, DPM scheduler).

    The stock transformer is converted as a stage-1 run does; the zero-initialised ORV modules
    (action encoder, condition fusion) get small random values (``perturb``) so that the
    generated video depends on actions and conditions the way a trained model's does. For
    the demo and tests of the augmentation loop; it draws noise-like videos.
    """

    tokenizer, text_encoder, vae, scheduler, stock = build_tiny_components(seed, sample_size)
    transformer = ORVTransformer3DModel.from_cogvideox(stock, condition_kinds=list(condition_kinds))
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if name.startswith(("action_encoder.", "condition_fusion.")):
                p.add_(torch.randn(p.shape, generator=g) * perturb)
    pipe = ORVPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer.eval(),
                       scheduler=scheduler)
    path = Path(path)
    pipe.save_pretrained(path)
    return path

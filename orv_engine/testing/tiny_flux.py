"""Write tiny random-weight FLUX + ControlNet folders (the real diffusers/transformers formats).

Why: this machine and CI reach no model hub, yet ``orv-augment`` must load first-frame
models through exactly the code a GPU user runs on FLUX.1-dev and XLabs' ControlNets. The
folders written here have FLUX.1-dev's layout (scheduler/, text_encoder/ (CLIP),
text_encoder_2/ (T5), tokenizer/, tokenizer_2/, transformer/, vae/) and a ControlNet with
XLabs' structure (two double blocks, ``input_hint_block``), each a few hundred kilobytes.

    python -m orv_engine.testing.tiny_flux outputs/tiny-flux
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxControlNetModel, FluxPipeline, FluxTransformer2DModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel

from orv_engine.testing.tiny_orv import tiny_tokenizer

HIDDEN = 32  # text widths (CLIP hidden, T5 d_model) = the transformer's pooled/joint widths


def _clip_tokenizer(folder: Path):
    """A character-level CLIP BPE tokenizer (vocab.json + merges.txt written here)."""
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,;:'-()!?")
    tokens = ["<|startoftext|>", "<|endoftext|>"] + chars + [c + "</w>" for c in chars]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=128)


def build_tiny_flux(folder, seed: int = 0):
    """Write a tiny FLUX pipeline folder; returns its path."""
    folder = Path(folder)
    torch.manual_seed(seed)
    tokenizer = _clip_tokenizer(folder / ".clip_vocab")
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=HIDDEN, intermediate_size=37, num_hidden_layers=1,
        num_attention_heads=2, max_position_embeddings=128, projection_dim=HIDDEN,
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )).eval()
    tokenizer_2 = tiny_tokenizer()
    text_encoder_2 = T5EncoderModel(T5Config(
        vocab_size=len(tokenizer_2), d_model=HIDDEN, d_ff=37, d_kv=8, num_layers=1, num_heads=2,
        relative_attention_num_buckets=8, relative_attention_max_distance=16,
    )).eval()
    # FLUX's VAE: 16 latent channels, 8x downsampling (4 blocks), shift/scale factors as FLUX.1
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=16, block_out_channels=(8, 8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=1, norm_num_groups=4, use_quant_conv=False, use_post_quant_conv=False,
        shift_factor=0.1159, scaling_factor=0.3611,
    ).eval()
    transformer = FluxTransformer2DModel(
        patch_size=1, in_channels=64, num_layers=1, num_single_layers=1, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=HIDDEN, pooled_projection_dim=HIDDEN,
        guidance_embeds=True, axes_dims_rope=(4, 6, 6),
    ).eval()
    # FLUX.1-dev's scheduler config (resolution-dependent shift)
    scheduler = FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
        base_image_seq_len=256, max_image_seq_len=4096,
    )
    pipe = FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                        text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer)
    pipe.save_pretrained(folder)
    return folder


def build_tiny_xlabs_controlnet(folder, seed: int = 1, scale: float = 1.0):
    """Write a tiny XLabs-style ``FluxControlNetModel`` folder (random, non-zero outputs)."""
    torch.manual_seed(seed)
    net = FluxControlNetModel(
        # XLabs' layout: patch_size 2 packs the hint block's 16 channels into 64 per token
        patch_size=2, in_channels=64, num_layers=2, num_single_layers=0, attention_head_dim=16,
        num_attention_heads=2, joint_attention_dim=HIDDEN, pooled_projection_dim=HIDDEN,
        guidance_embeds=True, axes_dims_rope=[4, 6, 6], conditioning_embedding_channels=16,
    ).eval()
    # A trained ControlNet's output blocks are not zero; give them small random weights so
    # the control image actually changes the painted frame.
    with torch.no_grad():
        for block in net.controlnet_blocks:
            block.weight.normal_(0, scale)
        net.input_hint_block.conv_out.weight.normal_(0, scale)
    net.save_pretrained(Path(folder))
    return Path(folder)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out", help="folder to write: OUT/flux and OUT/controlnet-depth, OUT/controlnet-semantics")
    args = parser.parse_args(argv)
    out = Path(args.out)
    print(build_tiny_flux(out / "flux"))
    print(build_tiny_xlabs_controlnet(out / "controlnet-depth", seed=1))
    print(build_tiny_xlabs_controlnet(out / "controlnet-semantics", seed=2))


if __name__ == "__main__":
    main()

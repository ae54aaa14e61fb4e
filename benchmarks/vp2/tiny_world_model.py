"""A tiny random-weight action-only ORV pipeline for the VP² CI run (real on-disk format).

Why not ``orv_engine.testing.tiny_orv`` alone: that writes a *stock* CogVideoX
transformer (converted to ORV by training) with a 7-d action width. VP² needs an ORV
transformer straight away, action-only (``condition_kinds = []``, as ORV's stage 1 and
``transformer_config("2b-action")``), with any action width. The other components
(tokenizer, T5, VAE, scheduler) are the tiny helper's. The zero-initialised action modules
get random values so that actions change the predicted frames (as a trained model's do).

    python -m benchmarks.vp2.tiny_world_model outputs/vp2-tiny-orv --action-dim 7
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from orv_engine.models import ORVTransformer3DModel, transformer_config
from orv_engine.pipelines import ORVPipeline
from orv_engine.testing.tiny_orv import build_tiny_components


def save_tiny_world_model(path: str | Path, action_dim: int = 7, sample_size: int = 64, seed: int = 0,
                          action_scale: float = 0.5) -> Path:
    tokenizer, text_encoder, vae, scheduler, _ = build_tiny_components(seed, sample_size)
    torch.manual_seed(seed)
    transformer = ORVTransformer3DModel.from_config(transformer_config(
        "tiny", condition_kinds=[], action_dim=action_dim,
        sample_height=sample_size // 8, sample_width=sample_size // 8,
    )).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, p in transformer.named_parameters():
            if name.startswith("action_encoder."):
                p.add_(torch.randn(p.shape, generator=generator) * action_scale)
    pipe = ORVPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                       scheduler=scheduler)
    path = Path(path)
    pipe.save_pretrained(path)
    return path


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("out")
    parser.add_argument("--action-dim", type=int, default=7)
    parser.add_argument("--sample-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    print(save_tiny_world_model(args.out, args.action_dim, args.sample_size, args.seed))


if __name__ == "__main__":
    main()

"""Assemble the small ORV's starting pipeline folder and the shipped folder from trained parts.

``write_init_pipeline``: the trained small VAE + a tiny T5 (the small ORV is prompted with one
fixed empty prompt, as the paper's ORV, so its text encoder only has to be deterministic) +
CogVideoX-2B's DPM scheduler config + a fresh ``ORVTransformer3DModel`` of the ``small``
config -> an ``ORVPipeline`` folder that ``orv-train`` starts from (``model.pretrained_path``).

``assemble_shipped``: that folder's parts + the four variants' final transformers -> the
layout :mod:`orv_engine.small` describes, weights stored as float16 safetensors (the 30 MB
budget; they load as float32 through the same ``from_pretrained`` code).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX

from orv_engine.models import ORVTransformer3DModel, transformer_config
from orv_engine.pipelines import ORVPipeline
from orv_engine.small import VARIANTS
from orv_engine.testing.tiny_orv import build_tiny_components


def write_init_pipeline(vae_path: str | Path, out: str | Path, seed: int = 0, **transformer_overrides) -> Path:
    out = Path(out)
    vae = AutoencoderKLCogVideoX.from_pretrained(vae_path)
    size = vae.config.sample_height
    tokenizer, text_encoder, _, scheduler, _ = build_tiny_components(seed, size)
    torch.manual_seed(seed)
    compression = 2 ** (len(vae.config.block_out_channels) - 1)
    config = transformer_config("small", sample_height=size // compression, sample_width=size // compression,
                                text_embed_dim=text_encoder.config.d_model, **transformer_overrides)
    transformer = ORVTransformer3DModel.from_config(config)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ORVPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                scheduler=scheduler).save_pretrained(tmp)
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def assemble_shipped(init_pipeline: str | Path, vae_path: str | Path, transformers: dict[str, str | Path],
                     out: str | Path) -> Path:
    """``transformers``: variant name -> its trained transformer folder (all four)."""
    missing = sorted(set(VARIANTS) - set(transformers))
    if missing:
        raise ValueError(f"assemble_shipped: no transformer for variant(s) {', '.join(missing)}")
    out = Path(out)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    init = Path(init_pipeline)
    tmp.mkdir(parents=True)
    for part in ("tokenizer", "text_encoder", "scheduler"):
        shutil.copytree(init / part, tmp / part)
    shutil.copy(init / "model_index.json", tmp / "model_index.json")
    AutoencoderKLCogVideoX.from_pretrained(vae_path, torch_dtype=torch.float16).save_pretrained(tmp / "vae")
    for name, path in transformers.items():
        model = ORVTransformer3DModel.from_pretrained(path, torch_dtype=torch.float16)
        model.save_pretrained(VARIANTS[name].transformer_path(tmp))
    heldout = out / "heldout"
    if heldout.is_dir():  # keep the shipped held-out clips when reassembling
        shutil.copytree(heldout, tmp / "heldout")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out

"""Load what training needs from local folders: VAE, T5, tokenizer, scheduler, transformer.

Stage 1 starts from a CogVideoX-2B folder (the transformer is converted to ORV on load: 32
input channels, zero-initialised action encoder). Stage 2 starts from a stage-1 transformer
and adds the condition fusion: the stage-1 weights load as they are, the fusion module is
new and starts at zero, so the first stage-2 step computes what stage 1 ended with. Both
go through ORV's one loader (:meth:`ORVTransformer3DModel.from_pretrained`), which also
takes the official ORV checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler
from transformers import T5EncoderModel, T5Tokenizer

from orv_engine.models import ORVTransformer3DModel
from orv_engine.weight_files import check_weight_files


@dataclass
class Components:
    tokenizer: object
    text_encoder: torch.nn.Module
    vae: torch.nn.Module
    scheduler: object  # CogVideoXDPMScheduler (training noise + validation sampling)
    transformer: ORVTransformer3DModel


def load_transformer(path: str | Path, condition_kinds: list[str]) -> ORVTransformer3DModel:
    """An ORV transformer with exactly ``condition_kinds`` from any folder the ORV loader
    knows (CogVideoX, stage 1 -> stage 2, ORV, official ORV)."""
    return ORVTransformer3DModel.from_pretrained(Path(path).expanduser(), condition_kinds=list(condition_kinds))


def load_components(pretrained_path: str | Path, transformer_path: str | Path | None,
                    condition_kinds: list[str], transformer_loader=load_transformer) -> Components:
    """The pipeline parts under ``pretrained_path``; the transformer from ``transformer_path`` (default:
    its ``transformer/``) through ``transformer_loader(path, condition_kinds)``."""
    root = Path(pretrained_path).expanduser()
    check_weight_files(root)  # a damaged file named before diffusers/transformers meet it
    if transformer_path:
        check_weight_files(transformer_path)
    transformer = transformer_loader(transformer_path or root / "transformer", condition_kinds)
    return Components(
        tokenizer=T5Tokenizer.from_pretrained(root / "tokenizer"),
        text_encoder=T5EncoderModel.from_pretrained(root / "text_encoder").eval(),
        vae=AutoencoderKLCogVideoX.from_pretrained(root / "vae").eval(),
        scheduler=CogVideoXDPMScheduler.from_pretrained(root / "scheduler"),
        transformer=transformer,
    )

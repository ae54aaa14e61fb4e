"""Load what training needs from local folders: VAE, T5, tokenizer, scheduler, transformer.

Stage 1 starts from a CogVideoX-2B folder (the transformer is converted to ORV on load: 32
input channels, zero-initialised action encoder). Stage 2 starts from a stage-1 transformer
and adds the condition fusion: the stage-1 weights load as they are, the fusion module is
new and starts at zero, so the first stage-2 step computes what stage 1 ended with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from orv_engine.models import ORVTransformer3DModel
from orv_engine.models.checkpoint_files import CheckpointError, check_shapes, load_checkpoint
from orv_engine.models.transformer_orv import ORV_CONFIG_KEYS


@dataclass
class Components:
    tokenizer: object
    text_encoder: torch.nn.Module
    vae: torch.nn.Module
    scheduler: object  # CogVideoXDPMScheduler (training noise + validation sampling)
    transformer: ORVTransformer3DModel


def load_transformer(path: str | Path, condition_kinds: list[str]) -> ORVTransformer3DModel:
    """An ORV transformer with exactly ``condition_kinds`` from an ORV or CogVideoX folder."""
    path = Path(path).expanduser()
    saved = json.loads((path / "config.json").read_text())
    is_orv = saved.get("_class_name") == ORVTransformer3DModel.__name__ or any(k in saved for k in ORV_CONFIG_KEYS)
    if not is_orv:  # stock CogVideoX: convert (new channels and modules at zero)
        return ORVTransformer3DModel.from_pretrained(path, condition_kinds=list(condition_kinds))
    if list(saved.get("condition_kinds") or []) == list(condition_kinds):
        return ORVTransformer3DModel.from_pretrained(path)
    # An ORV checkpoint with other kinds (stage 1 -> stage 2): keep every shared weight,
    # build the fusion fresh (zero output layer).
    if saved.get("condition_kinds"):
        raise CheckpointError(
            f"{path} was trained with conditions {saved['condition_kinds']}; the config asks for "
            f"{list(condition_kinds)}. Changing the kinds of a conditioned model is not supported"
        )
    config = {k: v for k, v in saved.items() if not k.startswith("_")}
    config["condition_kinds"] = list(condition_kinds)
    model = ORVTransformer3DModel.from_config(config)
    state = load_checkpoint(path)
    expected = {k: v for k, v in model.state_dict().items() if not k.startswith("condition_fusion.")}
    check_shapes(expected, {k: v.shape for k, v in state.items()}, path)
    model.load_state_dict(state, strict=False)
    return model


def load_components(pretrained_path: str | Path, transformer_path: str | Path | None,
                    condition_kinds: list[str], transformer_loader=load_transformer) -> Components:
    """The pipeline parts under ``pretrained_path``; the transformer from ``transformer_path`` (default:
    its ``transformer/``) through ``transformer_loader(path, condition_kinds)``."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDPMScheduler
    from transformers import T5EncoderModel, T5Tokenizer

    root = Path(pretrained_path).expanduser()
    transformer = transformer_loader(transformer_path or root / "transformer", condition_kinds)
    return Components(
        tokenizer=T5Tokenizer.from_pretrained(root / "tokenizer"),
        text_encoder=T5EncoderModel.from_pretrained(root / "text_encoder").eval(),
        vae=AutoencoderKLCogVideoX.from_pretrained(root / "vae").eval(),
        scheduler=CogVideoXDPMScheduler.from_pretrained(root / "scheduler"),
        transformer=transformer,
    )

"""The first-frame stage's ControlNets: what a path may be, and which sets can run together.

A ControlNet path is a diffusers ``FluxControlNetModel`` folder or one of XLabs' released
single-file ControlNets (``flux-controlnet-depth-v3.safetensors``), converted in memory by
:mod:`orv_engine.models.xlabs_controlnet`, the code ``orv-convert xlabs-controlnet`` writes
folders with.

Why the set check: diffusers' ``FluxControlNetPipeline`` decides from the *first* net alone
whether every control image enters as pixels (XLabs-style, ``input_hint_block``) or as VAE
latents (InstantX-style), whether the block outputs repeat over FLUX's blocks (XLabs) or are
spread over them (InstantX), and whether guidance is passed; ``FluxMultiControlNetModel``
sums the nets' outputs block by block, cut to the shorter list. A set that differs in any of
these runs without an error and paints with wrong control, so it is refused before loading.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import FluxControlNetModel

from orv_engine.weight_files import CheckpointError, check_weight_files
from orv_engine.models.xlabs_controlnet import load_xlabs_controlnet, read_xlabs_config

SINGLE_FILE_SUFFIX = ".safetensors"
# FluxControlNetModel's defaults, for a config.json that leaves a key out
CONFIG_DEFAULTS = {"num_layers": 19, "num_single_layers": 38, "guidance_embeds": False,
                   "conditioning_embedding_channels": None}


def flux_axes_dims_rope(flux_path) -> list[int] | None:
    """The rotary axes of a FLUX pipeline folder's transformer (an XLabs file does not record
    its own: x-flux builds the ControlNet with the base model's); None when unreadable."""
    if not flux_path:
        return None
    try:
        config = json.loads((Path(flux_path).expanduser() / "transformer" / "config.json").read_text())
        return [int(a) for a in config["axes_dims_rope"]]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def controlnet_config(path, axes_dims_rope=None) -> dict:
    """The diffusers config of a ControlNet path, read without loading weights.

    A folder: its config.json; a ``.safetensors`` file: inferred from the XLabs header (every
    key and shape checked). Anything else is a :class:`CheckpointError` naming the path.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        file = path / "config.json"
        if not file.is_file():
            raise CheckpointError(f"{path} has no config.json; is it a FluxControlNetModel folder?")
        try:
            return {**CONFIG_DEFAULTS, **json.loads(file.read_text())}
        except ValueError as error:
            raise CheckpointError(f"{file} is not valid JSON ({error})") from error
    if path.suffix != SINGLE_FILE_SUFFIX:
        raise CheckpointError(f"{path} is a single file but not {SINGLE_FILE_SUFFIX}: give a diffusers "
                              f"FluxControlNetModel folder or one of XLabs' {SINGLE_FILE_SUFFIX} ControlNets")
    return read_xlabs_config(path, axes_dims_rope)


def load_controlnet(path, dtype: torch.dtype, axes_dims_rope=None) -> FluxControlNetModel:
    """A folder through diffusers, an XLabs ``.safetensors`` file converted in memory."""
    path = Path(path).expanduser()
    check_weight_files(path)
    if path.is_dir():
        return FluxControlNetModel.from_pretrained(path, dtype=dtype)
    controlnet_config(path, axes_dims_rope)  # the same refusal of a foreign single file
    return load_xlabs_controlnet(path, dtype, axes_dims_rope)


def is_pixel_space(config: dict) -> bool:
    """XLabs-style: an ``input_hint_block`` takes the control image as pixels."""
    return config.get("conditioning_embedding_channels") is not None


def _family(config: dict) -> str:
    if is_pixel_space(config):
        return "XLabs-style (pixel-space control image through input_hint_block, block outputs repeated)"
    return "InstantX-style (control image through the VAE, block outputs spread)"


def controlnet_set_problem(configs: list[dict], names: list[str]) -> str | None:
    """Why these ControlNets cannot run together in one ``FluxControlNetPipeline``, or None."""
    first, first_name = configs[0], names[0]
    for config, name in zip(configs[1:], names[1:]):
        if is_pixel_space(config) != is_pixel_space(first):
            return (f"{name} is {_family(config)} but {first_name} is {_family(first)}: diffusers' "
                    "FluxControlNetPipeline prepares every control image and places every block output the way "
                    "the first ControlNet needs, so mixing XLabs-style and InstantX-style ControlNets is "
                    "unsupported; use ControlNets of one family")
        for key, what in (("num_layers", "double-block outputs"), ("num_single_layers", "single-block outputs")):
            if config[key] != first[key]:
                return (f"{name} has {config[key]} {what} but {first_name} has {first[key]}: "
                        "FluxMultiControlNetModel sums them block by block, cut to the shorter, so ControlNets of "
                        "different depths are unsupported together")
        if bool(config["guidance_embeds"]) != bool(first["guidance_embeds"]):
            return (f"{name} {'has' if config['guidance_embeds'] else 'has no'} guidance embedding but {first_name} "
                    f"{'has' if first['guidance_embeds'] else 'has none'}: the pipeline passes guidance to every "
                    "ControlNet as the first needs, so mixing them is unsupported")
    return None

"""Loading transformer folders of every kind into ORV's classes: one loader for every path.

Why a module of its own: the loading rules (what a folder holds, which modules a conversion
creates, checking every key and shape from the safetensors headers before any weight is
read) are one idea, used by :class:`~orv_engine.models.transformer_orv.ORVTransformer3DModel`,
its multi-view subclass and ``orv-convert``; the model file keeps the architecture.

Folder kinds: this project's ORV / ORV-MV folders (load as saved), stock CogVideoX (16 -> 32
input channels, zero-initialised ORV modules), official ORV ``CogVideoXTransformer3DModelTraj``
folders (:mod:`.upstream_orv`), stage 1 -> stage 2 (a fresh zero fusion), single -> multi-view
(view modules copied from their blocks).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from orv_engine.models import upstream_orv
from orv_engine.models.checkpoint_files import CheckpointError, check_shapes, checkpoint_shapes, load_checkpoint

logger = logging.getLogger(__name__)

ORV_CONFIG_KEYS = (
    "action_dim",
    "action_chunk",
    "action_embed_dim",
    "action_hidden_dim",
    "condition_kinds",
    "modulate_text_tokens",
    "num_views",
    "preprocessing",
)
# What diffusers' EMAModel.save_pretrained writes into a model's config besides the model's keys.
EMA_STATE_KEYS = ("decay", "min_decay", "optimization_step", "update_after_step", "use_ema_warmup", "inv_gamma",
                  "power")
NEW_MODULE_PREFIXES = ("action_encoder.", "condition_fusion.", "view_attention_blocks.")
VIEW_MODULE_PREFIX = "view_attention_blocks."
# Hub/offloading options of diffusers' loaders; local safetensors folders need none of them.
DIFFUSERS_LOADER_KWARGS = (
    "cache_dir", "device_map", "disable_mmap", "force_download", "local_files_only", "low_cpu_mem_usage",
    "max_memory", "offload_folder", "offload_state_dict", "output_loading_info", "proxies", "revision",
    "token", "use_flashpack", "use_safetensors", "quantization_config",
)


def load_pretrained(cls, pretrained_model_name_or_path, kwargs: dict):
    """``cls.from_pretrained``: read and check the folder, build ``cls``, load (see the module doc)."""
    folder = Path(pretrained_model_name_or_path)
    if kwargs.get("subfolder"):
        folder = folder / kwargs.pop("subfolder")
    kwargs.pop("subfolder", None)
    variant = kwargs.pop("variant", None)
    torch_dtype = kwargs.pop("torch_dtype", kwargs.pop("dtype", None))  # diffusers 0.42 renamed it
    for name in DIFFUSERS_LOADER_KWARGS:  # what DiffusionPipeline.from_pretrained passes to every model
        kwargs.pop(name, None)
    config, source_kind, creatable = read_transformer_config(folder, cls, kwargs)
    unknown = sorted(set(kwargs) - set(ORV_CONFIG_KEYS) - set(config))
    if unknown:
        raise TypeError(f"{cls.__name__}.from_pretrained: unknown keyword arguments {unknown}")
    config.update(kwargs)

    # 1. Check names and shapes from the file headers, before any weight is read.
    found = checkpoint_shapes(folder, variant)
    if source_kind == "upstream":
        found = upstream_orv.convert_shapes(found)
    with torch.device("meta"):
        expected = cls.from_config(config).state_dict()
    if source_kind == "cogvideox":
        found = _grown_patch_embedding(found, expected)
    check_shapes(_required(expected, found, creatable), found, folder)

    # 2. Build, read, convert names, load (strict up to the modules a conversion creates).
    model = cls.from_config(config)
    state = load_checkpoint(folder, variant)
    if source_kind == "upstream":
        state, used, dropped = upstream_orv.convert_state_dict(state)
        logger.warning(upstream_orv.summary(folder, used, dropped))  # seen by default: weights were dropped
    load_into(model, state, source=str(folder), creatable=creatable)
    model.eval()
    if torch_dtype is not None:
        model = torch.nn.Module.to(model, dtype=torch_dtype)
    return model



def read_transformer_config(folder: Path, cls, overrides: dict) -> tuple[dict, str, tuple[str, ...]]:
    """The ORV config for ``folder``, what the folder holds ("orv", "upstream" or "cogvideox")
    and the module prefixes the load creates because the folder lacks them.

    ``overrides`` (popped here): ``condition_kinds`` (a stage-1 model gains a fresh fusion for
    them; a conditioned model must keep its kinds) and ``num_views`` (a single-view model
    gains view modules in the multi-view class; a multi-view model must keep its number).
    """
    if not folder.is_dir():
        raise CheckpointError(
            f"{folder} is not a local folder. ORV loads local checkpoints only: download the model "
            "first (e.g. `huggingface-cli download zai-org/CogVideoX-2b --local-dir CogVideoX-2b`) and "
            "pass the folder (with subfolder='transformer' for a whole pipeline folder)"
        )
    config_file = folder / "config.json"
    if not config_file.is_file():
        hint = " (pass subfolder='transformer' for a pipeline folder)" if (folder / "transformer").is_dir() else ""
        raise CheckpointError(f"{folder} has no config.json; is it a diffusers transformer folder?{hint}")
    try:
        saved = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{config_file} is not valid JSON ({error})") from error
    kinds = overrides.pop("condition_kinds", None)
    kinds = None if kinds is None else list(kinds)
    num_views = overrides.pop("num_views", None)
    creatable: tuple[str, ...] = ()
    if upstream_orv.is_upstream_config(saved):
        stage1 = not saved.get("visual_guidance")
        config, kind = upstream_orv.convert_config(saved, folder, None if stage1 else kinds), "upstream"
        if stage1 and kinds:  # upstream's own stage 1 -> stage 2: a fresh, zero-started fusion
            config["condition_kinds"] = kinds
            creatable += ("condition_fusion.",)
    elif saved.get("_class_name") in ("ORVTransformer3DModel", "ORVMultiViewTransformer3DModel") or any(
        k in saved for k in ORV_CONFIG_KEYS
    ):
        # an EMA folder (diffusers' EMAModel.save_pretrained) adds the EMA's state to the config
        config = {k: v for k, v in saved.items() if not k.startswith("_") and k not in EMA_STATE_KEYS}
        kind = "orv"
        saved_kinds = list(config.get("condition_kinds") or [])
        if kinds is not None and kinds != saved_kinds:
            if saved_kinds:
                raise CheckpointError(
                    f"{folder} was trained with conditions {saved_kinds}; {kinds} were asked for. Changing the "
                    "kinds of a conditioned model is not supported"
                )
            config["condition_kinds"] = kinds  # stage 1 -> stage 2: a fresh, zero-started fusion
            creatable += ("condition_fusion.",)
    else:
        config, kind = orv_config_from_stock(saved, {} if kinds is None else {"condition_kinds": kinds}), "cogvideox"
        creatable += NEW_MODULE_PREFIXES
    multi_view = cls.__name__ == "ORVMultiViewTransformer3DModel"
    has_views = config.get("num_views") is not None
    if has_views and not multi_view:
        raise CheckpointError(
            f"{folder} holds a multi-view ORV model (ORV-MV); load it with "
            "orv_engine.models.transformer_orv_mv.ORVMultiViewTransformer3DModel.from_pretrained")
    if has_views and num_views is not None and num_views != config["num_views"]:
        raise CheckpointError(f"{folder} is an ORV-MV model with num_views={config['num_views']}; {num_views} asked for")
    if multi_view and not has_views:
        config["num_views"] = 3 if num_views is None else num_views
        creatable += (VIEW_MODULE_PREFIX,)
    return config, kind, creatable


def _grown_patch_embedding(found: dict, expected: dict) -> dict:
    """A text-to-video checkpoint's patch embedding is grown to the first-frame channels on load."""
    found, key = dict(found), "patch_embed.proj.weight"
    if key in found and key in expected and found[key][1] * 2 == tuple(expected[key].shape)[1]:
        found[key] = tuple(expected[key].shape)
    return found


def _required(expected: dict, found: dict, creatable: tuple[str, ...]) -> dict:
    """``expected`` less the modules a conversion creates when the checkpoint lacks them."""
    return {k: v for k, v in expected.items() if k in found or not k.startswith(creatable)} if creatable else expected


def orv_config_from_stock(stock: dict, overrides: dict) -> dict:
    config = {k: v for k, v in stock.items() if not k.startswith("_")}
    out_channels = config.get("out_channels") or config.get("in_channels", 16)
    if config.get("in_channels", 16) == out_channels:  # text-to-video: add the first-frame channels
        config["in_channels"] = 2 * out_channels
    config.update(overrides)
    return config


def load_into(model, state: dict[str, torch.Tensor], source: str,
               creatable: tuple[str, ...] = ()) -> None:
    """Copy ``state`` into an ORV ``model``: grow a text-to-video patch embedding, check every key;
    modules the checkpoint lacks (only under ``creatable`` prefixes) keep their zero-start
    init, view modules are copied from their blocks."""
    key = "patch_embed.proj.weight"
    expected = model.state_dict()
    if key in state and key in expected:
        old, new_shape = state[key], expected[key].shape
        if old.ndim == 4 and old.shape[1] < new_shape[1] and old.shape[0] == new_shape[0]:
            grown = torch.zeros(new_shape, dtype=old.dtype)
            grown[:, : old.shape[1]] = old
            state[key] = grown
    found = {k: tuple(v.shape) for k, v in state.items()}
    check_shapes(_required(expected, found, creatable), found, source)
    result = model.load_state_dict(state, strict=False)
    if result.unexpected_keys:  # check_shapes has reported these already; never load silently
        raise CheckpointError(f"{source}: unexpected weights {result.unexpected_keys}")
    if model.view_attention_blocks is not None and not any(k.startswith(VIEW_MODULE_PREFIX) for k in state):
        for view_block, block in zip(model.view_attention_blocks, model.transformer_blocks):
            view_block.copy_from_block(block)

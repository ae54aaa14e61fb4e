"""The official ORV checkpoints (OrangeSodahub/ORV ``CogVideoXTransformer3DModelTraj``) in
this project's layout: config keys and weight names, converted in memory.

Why a converter and not upstream's class: upstream's model differs only in names (its
forward is the same function as :class:`ORVTransformer3DModel`, checked in the tests
against a reference computed from the raw upstream weights), and its class cannot be
used as is (inference drops the actions of ~10% of samples at random). Folders written by
upstream's ``save_pretrained`` are recognised by ``_class_name`` and load through every
path (``from_pretrained`` of the single- and multi-view classes, the pipeline,
``orv-augment``, ``orv-eval``); ``orv-convert orv-official SRC DST`` writes the converted
folder once.

Weights (upstream -> here):
    action_embed.mlp.0.*           -> action_encoder.proj_in.*
    action_embed.mlp.3.*           -> action_encoder.proj_out.*
    action_embed.mask_embed.weight -> action_encoder.null_token (1, T) -> (T,)
    initial_combine_linear.*       -> condition_fusion.proj.*
    mv_blocks.{i}.*                -> view_attention_blocks.{i}.*
    action_recon.*, mv_blocks.{i}.cam_encoder.*   dropped (training-only / never used)
Config: ``modulate_encoder_hidden_states`` -> ``modulate_text_tokens``; ``visual_guidance``
and ``num_control_keys`` -> ``condition_kinds`` (upstream fuses depth, then labels);
``multiview`` / ``max_n_view`` -> ``num_views``; the preprocessing upstream trained with
-> ``preprocessing`` (:func:`.preprocessing.upstream_preprocessing`).
"""

from __future__ import annotations

import fnmatch

import torch

from orv_engine.models.checkpoint_files import CheckpointError
from orv_engine.preprocessing import upstream_preprocessing

UPSTREAM_CLASS_NAME = "CogVideoXTransformer3DModelTraj"
# Upstream's own __init__ arguments (everything else in its config is CogVideoX's).
UPSTREAM_ONLY_KEYS = (
    "loaded_pretrained_model_name_or_path", "modulate_encoder_hidden_states", "num_control_blocks",
    "recon_action", "visual_guidance", "num_control_keys", "multiview", "max_n_view", "from_t2v",
)
# Upstream's condition order (``controls_or_guidances``: depths, then labels), in our names.
UPSTREAM_CONDITION_ORDER = ("depth", "semantics")
RENAMES = (
    ("action_embed.mlp.0.", "action_encoder.proj_in."),
    ("action_embed.mlp.3.", "action_encoder.proj_out."),
    ("initial_combine_linear.", "condition_fusion.proj."),
    ("mv_blocks.", "view_attention_blocks."),
)
DROPPED = ("action_recon.", "mv_blocks.*.cam_encoder.*")


def is_upstream_config(config: dict) -> bool:
    return config.get("_class_name") == UPSTREAM_CLASS_NAME


def convert_config(saved: dict, source, condition_kinds=None) -> dict:
    """An upstream config.json -> ORV config (keys of :class:`ORVTransformer3DModel`)."""
    base = str(saved.get("loaded_pretrained_model_name_or_path") or "")
    if fnmatch.fnmatch(base, "*CogVideoX*-5b*"):
        raise CheckpointError(
            f"{source}: an upstream ORV model fine-tuned from {base}; only CogVideoX-2B-style models "
            "(2B fine-tunes and upstream's 1B/1.4B configs) are supported"
        )
    if saved.get("patch_size_t") is not None:
        raise CheckpointError(f"{source}: patch_size_t={saved['patch_size_t']} (CogVideoX 1.5 layout) is not supported")
    config = {k: v for k, v in saved.items() if not k.startswith("_") and k not in UPSTREAM_ONLY_KEYS}
    num_kinds = int(saved.get("num_control_keys", 2)) if saved.get("visual_guidance") else 0
    if condition_kinds is None:
        if num_kinds == 1:
            raise CheckpointError(
                f"{source}: an upstream model with one visual condition; its config does not say which: pass "
                "condition_kinds=['depth'] or condition_kinds=['semantics']"
            )
        condition_kinds = list(UPSTREAM_CONDITION_ORDER[:num_kinds])
    elif len(condition_kinds) != num_kinds:
        raise CheckpointError(
            f"{source}: condition_kinds={list(condition_kinds)} but the upstream model fuses {num_kinds} conditions"
        )
    config.update(
        action_dim=7,
        action_chunk=4,  # upstream's ActionEmbed compress_ratio
        action_embed_dim=saved.get("time_embed_dim", 512),
        action_hidden_dim=4 * saved.get("time_embed_dim", 512),
        condition_kinds=list(condition_kinds),
        modulate_text_tokens=bool(saved.get("modulate_encoder_hidden_states", False)),
        num_views=int(saved.get("max_n_view", 3)) if saved.get("multiview") else None,
        preprocessing=upstream_preprocessing(
            saved.get("sample_height", 60), saved.get("sample_width", 90), saved.get("sample_frames", 49)
        ).to_dict(),
    )
    return config


def _dropped(key: str) -> bool:
    return key.startswith("action_recon.") or fnmatch.fnmatch(key, "mv_blocks.*.cam_encoder.*")


NULL_TOKEN_KEY = "action_embed.mask_embed.weight"  # (1, T) upstream, (T,) here


def renamed(key: str) -> tuple[str, str | None]:
    """An upstream key's name here and the upstream module it came from (None: kept as is)."""
    if key == NULL_TOKEN_KEY:
        return "action_encoder.null_token", "action_embed.mask_embed"
    for old_prefix, new_prefix in RENAMES:
        if key.startswith(old_prefix):
            return new_prefix + key[len(old_prefix):], old_prefix.rstrip(".")
    return key, None


def convert_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], list[str]]:
    """Upstream weights -> ORV names. Returns (state, renamed upstream modules, dropped keys)."""
    out, used = {}, set()
    dropped = sorted(k for k in state if _dropped(k))
    for key, value in state.items():
        if _dropped(key):
            continue
        new, module = renamed(key)
        if module is not None:
            used.add(module)
        out[new] = value.reshape(-1) if key == NULL_TOKEN_KEY else value
    return out, sorted(used), dropped


def convert_shapes(shapes: dict[str, tuple]) -> dict[str, tuple]:
    """The same renaming on a {key: shape} map (checks before any weight is read)."""
    return {renamed(k)[0]: (int(torch.Size(v).numel()),) if k == NULL_TOKEN_KEY else tuple(v)
            for k, v in shapes.items() if not _dropped(k)}


def summary(source, used: list[str], dropped: list[str]) -> str:
    """The one line the loader logs."""
    kinds = sorted({k.split(".")[0] if not k.startswith("mv_blocks.") else "mv_blocks.*.cam_encoder" for k in dropped})
    return (
        f"converted upstream ORV checkpoint {source}: mapped {', '.join(used) or 'nothing'} to this project's names; "
        f"dropped {len(dropped)} tensors ({', '.join(kinds) or 'none'})"
    )

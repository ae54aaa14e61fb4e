"""Convert RoboVLMs' released Kosmos checkpoint into a RoboVLM policy folder.

    convert_robovlms(Path("checkpoints/kosmos_ph_oxe-pretrain.pt"), Path("policies/robovlms-oxe"),
                     statistics=Path("configs/data/oxe_dataset_stats/dataset_statistics_bridge.json"),
                     backbone=Path(".vlms/kosmos-2-patch14-224"))

What was learned from upstream (Robot-VLAs/RoboVLMs, robovlms/RoboVLMs on the Hub):

- ``robovlms/train/base_trainer.py`` (``from_checkpoint``) and ``eval/calvin/model_wrapper.py``
  (``init_config``): a checkpoint is a ``torch.save`` dict holding ``state_dict`` or
  ``model_state_dict``; keys may start with ``module.`` (DeepSpeed/DDP) and are the
  Lightning module's, ``model.`` + the ``BaseRoboVLM`` attribute: ``backbone.*`` (a
  ``Kosmos2ForConditionalGeneration``), ``action_token`` (D,), ``act_head.rnn.*``
  (``nn.LSTM``), ``act_head.actions.mlp.{0,2,4,6}`` (arm, tanh) and
  ``act_head.gripper.mlp.{0,2,4,6}`` (gripper logits). Our
  :class:`~vla_finetune.policies.robovlm.RoboVLMPolicy` uses the same module names, so the
  conversion drops the prefixes and checks every key and shape.
- The release's config JSON (``configs/kosmos_ph_oxe-pretrain.json``, same keys as
  ``configs/oxe_training/*kosmos*.json`` on GitHub) gives ``window_size`` (history),
  ``fwd_pred_next_n`` (chunk), ``act_head`` (``LSTMDecoder``, ``hidden_size``, history type
  "post", continuous actions) and ``norm_action``/``norm_min``/``norm_max`` (arm scaling
  after the q01/q99 bounds). The LSTM depth and the MLP widths are read from the tensors.
- ``eval/simpler/model_wrapper.py``: the Bridge actions are un-normalised with the q01/q99
  of ``configs/data/oxe_dataset_stats/dataset_statistics_bridge.json`` (the ``bridge_orig``
  key); that file becomes the folder's ``dataset_statistics.json``. The wrapper predicts
  every step and executes the first action of each chunk: ``execute_steps = 1``.
- The checkpoint holds weights only; the Kosmos-2 config, tokenizer and image processor
  come from a Kosmos-2 folder (``microsoft/kosmos-2-patch14-224``, what the release's
  config calls ``.vlms/kosmos-2-patch14-224``).

Why hand-written: upstream loads its checkpoints into its own Lightning model with
``strict=False``, which hides missing or misshapen tensors; a conversion must fail on them,
naming the file and the key, and write a folder that :func:`load_policy` opens alone.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from transformers import Kosmos2Config

from orv_engine.models.checkpoint_files import CheckpointError
from vla_finetune.policies.common import load_processor
from vla_finetune.policies.robovlm.configuration_robovlm import RoboVLMConfig
from vla_finetune.policies.robovlm.modeling_robovlm import RoboVLMPolicy
from vla_finetune.policy_data.normalization import ACTION_DIM, StatisticsError, read_statistics

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
CONTAINERS = ("state_dict", "model_state_dict")
# what a checkpoint without a config is assumed to be: every released Kosmos config has these
DEFAULT_WINDOW, DEFAULT_NORM = 16, (-0.65, 0.65)
PROVENANCE_FILE = "robovlms_conversion.json"


def convert_robovlms(ckpt: Path, dst: Path, *, statistics: Path | None = None, config: Path | None = None,
                     backbone: Path | None = None, dtype: str = "keep", allow_pickle: bool = False) -> Path:
    """Write a RoboVLM policy folder at ``dst`` from a RoboVLMs ``.pt``/``.ckpt``.

    ``statistics``: RoboVLMs' action statistics (``dataset_statistics_bridge.json`` for
    Bridge/SimplerEnv; required, the checkpoint holds none). ``config``: the release's config
    JSON (default: ``<ckpt dir>/../configs/<ckpt stem>.json`` or ``<ckpt stem>.json`` beside
    it; without one, the head is read from the tensors and window 16, norm +-0.65 assumed).
    ``backbone``: a Kosmos-2 folder for the config and processor files (default: the
    config's ``vlm.pretrained_model_name_or_path`` if that folder exists). ``dtype``: "keep"
    (the checkpoint's) or float32/bfloat16/float16. ``allow_pickle``: unpickle a checkpoint
    holding Python objects besides tensors (only for a trusted file).
    """
    ckpt, dst = Path(ckpt).expanduser(), Path(dst).expanduser()
    if not ckpt.is_file():
        raise CheckpointError(f"RoboVLMs checkpoint {ckpt} not found")
    if dst.exists() and (not dst.is_dir() or any(dst.iterdir())):
        raise CheckpointError(f"{dst} exists and is not an empty folder; choose a new folder")
    if dtype != "keep" and dtype not in DTYPES:
        raise ValueError(f"dtype must be 'keep' or one of {sorted(DTYPES)}, not {dtype!r}")
    config_path = Path(config).expanduser() if config is not None else _default_config(ckpt)
    upstream = _read_config(config_path) if config_path is not None else None
    stats = _read_statistics(statistics)
    backbone_dir = _backbone_folder(backbone, upstream, config_path)
    backbone_config = _kosmos_config(backbone_dir)
    processor = load_processor(backbone_dir)  # before the weights: a broken folder fails fast
    state = _read_state_dict(ckpt, allow_pickle)
    head = _head_shapes(state, ckpt)
    options = _policy_options(head, upstream, config_path, ckpt)

    width = backbone_config.text_config.embed_dim
    if head["width"] != width:
        raise CheckpointError(f"{ckpt}: model.action_token has {head['width']} values, but the Kosmos-2 config "
                              f"{backbone_dir / 'config.json'} has text_config.embed_dim {width}")
    policy = RoboVLMPolicy(RoboVLMConfig(backbone_config=backbone_config.to_dict(), **options))
    _check_keys(policy, state, ckpt, backbone_dir)
    policy.load_state_dict(state, strict=True)
    target = _stored_dtype(state) if dtype == "keep" else DTYPES[dtype]
    policy.to(target)
    policy.attach(processor, stats, policy.config.normalization)
    # written beside dst and renamed: an interrupted conversion leaves no folder that looks complete
    partial = dst.with_name(dst.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    policy.save_pretrained(partial)
    (partial / PROVENANCE_FILE).write_text(json.dumps({
        "checkpoint": str(ckpt), "config": None if config_path is None else str(config_path),
        "statistics": str(statistics), "backbone": str(backbone_dir), "dtype": str(target).removeprefix("torch."),
    }, indent=1))
    if dst.is_dir():
        dst.rmdir()  # empty, checked above
    partial.rename(dst)
    return dst


# ------------------------------------------------------------ inputs


def _default_config(ckpt: Path) -> Path | None:
    """The release keeps ``checkpoints/<name>.pt`` next to ``configs/<name>.json``."""
    for candidate in (ckpt.parent.parent / "configs" / f"{ckpt.stem}.json", ckpt.with_suffix(".json")):
        if candidate.is_file():
            return candidate
    log.warning("%s: no RoboVLMs config found beside it; reading the head from the tensors and assuming "
                "window_size %d, norm_min/norm_max %s (the released Kosmos configs)", ckpt, DEFAULT_WINDOW,
                DEFAULT_NORM)
    return None


def _read_config(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"RoboVLMs config {path} not found")
    try:
        values = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not a JSON config: {err}") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: not a RoboVLMs config (a JSON object expected)")
    if values.get("parent"):
        raise CheckpointError(f"{path}: field 'parent' is {values['parent']!r}; pass the resolved config "
                              "(the released configs have no parent)")
    if values.get("model") != "kosmos":
        raise CheckpointError(f"{path}: field 'model' is {values.get('model')!r}; only RoboVLMs' Kosmos "
                              "checkpoints (RoboKosMos, model 'kosmos') convert to a RoboVLM policy")
    head = values.get("act_head")
    if not isinstance(head, dict):
        raise CheckpointError(f"{path}: no 'act_head' object; not a RoboVLMs policy-head config")
    expected = {"type": "LSTMDecoder", "action_space": "continuous", "history_type": "post",
                "down_sample": "none", "latent": 1, "action_dim": ACTION_DIM}
    upstream_defaults = {"action_space": "continuous", "history_type": "post", "latent": 1}  # base_backbone.py
    for key, want in expected.items():
        got = head.get(key, upstream_defaults.get(key))
        if got != want:
            raise CheckpointError(f"{path}: field act_head.{key} is {got!r}; only {want!r} converts "
                                  "(RoboVLMs' Kosmos + LSTM policy head)")
    for key in ("use_mu_law", "regular_action", "use_vision_resampler", "use_state"):
        if values.get(key):
            raise CheckpointError(f"{path}: field {key} is true; not supported by the RoboVLM policy")
    for key in ("window_size", "fwd_pred_next_n"):
        if not isinstance(values.get(key), int) or values[key] < 1:
            raise CheckpointError(f"{path}: field {key} must be a positive integer, got {values.get(key)!r}")
    return values


def _read_statistics(path: Path | None) -> dict:
    if path is None:
        raise StatisticsError("a RoboVLMs checkpoint holds no action statistics: pass statistics= the file its "
                              "actions were normalised with (RoboVLMs' configs/data/oxe_dataset_stats/"
                              "dataset_statistics_bridge.json for Bridge)")
    path = Path(path).expanduser()
    stats = read_statistics(path)  # names the file when missing, not JSON or without 'action'
    action = stats["action"]
    for key in ("q01", "q99"):
        values = action.get(key)
        if values is None:
            raise StatisticsError(f"{path}: action.{key} missing (RoboVLMs un-normalises with the q01/q99 bounds)")
        if not isinstance(values, list) or len(values) != ACTION_DIM or not np.all(np.isfinite(values)):
            raise StatisticsError(f"{path}: action.{key} must be {ACTION_DIM} finite numbers, got {values!r}")
    if np.any(np.asarray(action["q99"][:6]) <= np.asarray(action["q01"][:6])):
        raise StatisticsError(f"{path}: action.q99 must exceed action.q01 in the 6 arm dimensions")
    return stats


def _backbone_folder(backbone: Path | None, upstream: dict | None, config_path: Path | None) -> Path:
    if backbone is None:
        named = [(upstream or {}).get("vlm", {}).get("pretrained_model_name_or_path"),
                 (upstream or {}).get("model_path")]
        roots = [Path.cwd()] + ([config_path.parent, config_path.parent.parent] if config_path else [])
        for name in filter(None, named):
            for root in roots:
                if (root / name / "config.json").is_file():
                    return root / name
        raise CheckpointError("the RoboVLMs checkpoint holds weights only: pass backbone= a Kosmos-2 folder "
                              "(microsoft/kosmos-2-patch14-224: config.json + tokenizer and image processor "
                              "files)" + (f"; the config's {named[0]!r} was not found" if named[0] else ""))
    backbone = Path(backbone).expanduser()
    if not (backbone / "config.json").is_file():
        raise CheckpointError(f"Kosmos-2 folder {backbone} has no config.json (expected microsoft/"
                              "kosmos-2-patch14-224's files)")
    return backbone


def _kosmos_config(folder: Path) -> Kosmos2Config:
    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    if model_type != "kosmos-2":
        raise CheckpointError(f"{folder / 'config.json'}: model_type {model_type!r}, expected 'kosmos-2'")
    return Kosmos2Config.from_pretrained(str(folder))


def _read_state_dict(ckpt: Path, allow_pickle: bool) -> dict[str, torch.Tensor]:
    try:
        payload = torch.load(ckpt, map_location="cpu", weights_only=not allow_pickle)
    except pickle.UnpicklingError as err:
        raise CheckpointError(f"{ckpt}: holds Python objects besides tensors ({str(err).splitlines()[0]}); "
                              "convert with allow_pickle=True (--allow-pickle) only if you trust the file") from None
    except Exception as err:  # a safetensors file, a truncated download, anything torch cannot read
        raise CheckpointError(f"{ckpt}: not a torch checkpoint: {err}") from None
    if not isinstance(payload, dict) or not any(k in payload for k in CONTAINERS):
        keys = ", ".join(map(str, list(payload)[:8])) if isinstance(payload, dict) else type(payload).__name__
        raise CheckpointError(f"{ckpt}: no 'state_dict' or 'model_state_dict' (found: {keys}); not a RoboVLMs "
                              "checkpoint")
    raw = payload["state_dict"] if "state_dict" in payload else payload["model_state_dict"]
    state = {}
    for key, value in raw.items():
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{ckpt}: state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        name = key.removeprefix("module.").removeprefix("model.")  # RoboVLMs' convert_old_state_dict
        state[name] = value
    return state


def _head_shapes(state: dict, ckpt: Path) -> dict:
    """The LSTM head's sizes, read from its tensors."""
    for key in ("action_token", "act_head.rnn.weight_ih_l0", "act_head.actions.mlp.0.weight",
                "act_head.gripper.mlp.0.weight"):
        if key not in state:
            heads = sorted({k.split(".")[1] for k in state if k.startswith("act_head.")}) or ["none"]
            raise CheckpointError(f"{ckpt}: no model.{key}; not a RoboVLMs Kosmos checkpoint with a continuous "
                                  f"LSTM policy head (act_head parts found: {', '.join(heads)})")
    token = state["action_token"]
    if token.dim() != 1:
        raise CheckpointError(f"{ckpt}: model.action_token has shape {tuple(token.shape)}, expected (D,)")
    layers = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(r"act_head\.rnn\.weight_ih_l(\d+)", k)))
    hidden = state["act_head.rnn.weight_hh_l0"].shape[1] if "act_head.rnn.weight_hh_l0" in state else None
    if hidden is None or layers != list(range(len(layers))):
        raise CheckpointError(f"{ckpt}: model.act_head.rnn.* is not a complete nn.LSTM (layers {layers})")

    def mlp(name: str) -> list[tuple[int, int]]:
        idx = sorted(int(m.group(1)) for k in state if (m := re.fullmatch(rf"act_head\.{name}\.mlp\.(\d+)\.weight", k)))
        return [tuple(state[f"act_head.{name}.mlp.{i}.weight"].shape) for i in idx]

    arm, gripper = mlp("actions"), mlp("gripper")
    sizes = [out for out, _ in arm[:-1]]
    chunk, remainder = divmod(arm[-1][0], ACTION_DIM - 1)
    if remainder or chunk < 1:
        raise CheckpointError(f"{ckpt}: model.act_head.actions.mlp's last layer has {arm[-1][0]} outputs, "
                              f"not a multiple of {ACTION_DIM - 1} (arm values per action)")
    if [out for out, _ in gripper[:-1]] != sizes or gripper[-1][0] != chunk:
        raise CheckpointError(f"{ckpt}: model.act_head.gripper.mlp shapes {gripper} do not match the arm MLP "
                              f"{arm} (same widths, {chunk} outputs expected)")
    return {"width": token.shape[0], "hidden": hidden, "layers": len(layers), "sizes": sizes, "chunk": chunk,
            "last_arm": f"act_head.actions.mlp.{len(arm) * 2 - 2}.weight"}


def _policy_options(head: dict, upstream: dict | None, config_path: Path | None, ckpt: Path) -> dict:
    options = dict(chunk_size=head["chunk"], lstm_hidden_size=head["hidden"], lstm_num_layers=head["layers"],
                   head_hidden_sizes=head["sizes"], arm_loss="huber", execute_steps=1,
                   history_len=DEFAULT_WINDOW, action_norm_min=DEFAULT_NORM[0], action_norm_max=DEFAULT_NORM[1])
    if upstream is None:
        return options
    if upstream["fwd_pred_next_n"] != head["chunk"]:
        raise CheckpointError(f"{config_path}: fwd_pred_next_n is {upstream['fwd_pred_next_n']}, but {ckpt} "
                              f"model.{head['last_arm']} predicts chunks of {head['chunk']}")
    hidden = upstream["act_head"].get("hidden_size", head["hidden"])
    if hidden != head["hidden"]:
        raise CheckpointError(f"{config_path}: act_head.hidden_size is {hidden}, but {ckpt} "
                              f"model.act_head.rnn.weight_hh_l0 has hidden size {head['hidden']}")
    norm = (upstream.get("norm_min", -1.0), upstream.get("norm_max", 1.0)) if upstream.get("norm_action") \
        else (-1.0, 1.0)
    options.update(history_len=upstream["window_size"], action_norm_min=float(norm[0]),
                   action_norm_max=float(norm[1]),
                   gripper_loss_weight=float(upstream.get("arm_gripper_loss_ratio", 0.01)),
                   lstm_dropout=float(upstream["act_head"].get("policy_rnn_dropout_p", 0.0)))
    return options


LM_HEAD, EMBED_TOKENS = "backbone.text_model.lm_head.weight", "backbone.text_model.model.embed_tokens.weight"


def _check_keys(policy: RoboVLMPolicy, state: dict, ckpt: Path, backbone_dir: Path) -> None:
    """Every tensor of the policy present with its shape, nothing left over (``state`` is completed in place)."""
    expected = policy.state_dict()
    # tolerated differences of how a state dict was saved: buffers that older transformers
    # versions kept persistent, and the LM head left out because it is tied to the embeddings
    buffers = {name for name, _ in policy.named_buffers()}
    for key in [k for k in state if k in buffers and k not in expected]:
        log.info("%s: ignoring model.%s (a buffer the model computes itself)", ckpt, key)
        del state[key]
    tied = policy.backbone.text_model.lm_head.weight is policy.backbone.text_model.model.embed_tokens.weight
    if LM_HEAD not in state and EMBED_TOKENS in state and tied:
        state[LM_HEAD] = state[EMBED_TOKENS]
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = [f"missing {len(missing)} tensors (" + ", ".join(f"model.{k}" for k in missing[:5]) + ")"] \
            if missing else []
        parts += [f"{len(unexpected)} unexpected (" + ", ".join(f"model.{k}" for k in unexpected[:5]) + ")"] \
            if unexpected else []
        raise CheckpointError(f"{ckpt}: {'; '.join(parts)} against the RoboVLM policy on the Kosmos-2 config "
                              f"{backbone_dir / 'config.json'}")
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            where = f"the Kosmos-2 config {backbone_dir / 'config.json'}" if key.startswith("backbone.") \
                else "the policy head read from the checkpoint"
            raise CheckpointError(f"{ckpt}: model.{key} has shape {tuple(state[key].shape)}, {where} expects "
                                  f"{tuple(tensor.shape)}")


def _stored_dtype(state: dict) -> torch.dtype:
    return next((v.dtype for v in state.values() if v.is_floating_point()), torch.float32)

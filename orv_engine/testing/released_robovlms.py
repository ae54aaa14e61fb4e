"""A tiny format twin of RoboVLMs' released Kosmos checkpoint (``robovlms/RoboVLMs``).

Why: the real ``checkpoints/kosmos_ph_oxe-pretrain.pt`` (about 7 GB) and the Kosmos-2
backbone cannot be downloaded here. The twin has the release's layout with tiny sizes, so
the converter and its tests read exactly what they would read from the real files:

- ``checkpoints/kosmos_ph_oxe-pretrain.pt``: ``torch.save`` of ``{"state_dict": ...}``
  (or ``model_state_dict``, both read by RoboVLMs' ``BaseTrainer.from_checkpoint``) whose
  keys are the Lightning module's: ``model.backbone.<Kosmos2ForConditionalGeneration
  key>``, ``model.action_token`` (D,), ``model.act_head.rnn.{weight,bias}_{ih,hh}_l<k>``
  (``LSTMDecoder.rnn``, an ``nn.LSTM(D, hidden, num_layers=4)``),
  ``model.act_head.actions.mlp.{0,2,4,6}.{weight,bias}`` (``MLPTanhHead``:
  hidden -> 1024 -> 512 -> 256 -> 6K, hard-coded widths upstream) and
  ``model.act_head.gripper.mlp.{0,2,4,6}.*`` (``MLPSigmoidHead``: ... -> K). The backbone
  weights differ from the Kosmos-2 folder's (the release finetuned the whole VLM).
- ``configs/kosmos_ph_oxe-pretrain.json``: the config keys of RoboVLMs' Kosmos configs
  (``configs/oxe_training/finetune_kosmos_cont-lstm-post_..._oxe_pretrain.json``):
  ``window_size``, ``fwd_pred_next_n``, ``act_head`` {type LSTMDecoder, hidden_size, ...},
  ``norm_action``/``norm_min``/``norm_max``, ``vlm``/``tokenizer`` paths.
- ``configs/data/oxe_dataset_stats/dataset_statistics_bridge.json``: RoboVLMs' statistics
  format (``{"action": {mean, std, max, min, q01, q99}, "proprio": ..., "num_transitions",
  "num_trajectories"}``; no ``mask``, so the Simpler wrapper un-normalises all 7 dims).
- ``.vlms/kosmos-2-patch14-224``: the Kosmos-2 folder the configs point at (here a tiny
  random one from :func:`orv_engine.testing.tiny_vla.build_tiny_kosmos2`).

Module key names and widths come from ``robovlms/model/policy_head/base_policy.py`` and
``robovlms/model/backbone/base_backbone.py``; the tensors are made with plain torch
modules, independent of this project's RoboVLM code.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import Kosmos2Config, Kosmos2ForConditionalGeneration

from orv_engine.testing.tiny_vla import build_tiny_kosmos2

NAME = "kosmos_ph_oxe-pretrain"
HEAD_WIDTHS = (1024, 512, 256)  # MLPTanhHead / MLPSigmoidHead, hard-coded upstream
# the words of RoboVLMs' Kosmos prompt, so the tiny tokenizer has pieces for them
PROMPT_CORPUS = ("An image of a robot", "an image of a robot put the spoon in the pot")


def _mlp(in_features: int, out_features: int, tanh: bool) -> nn.Sequential:
    layers, width = [], in_features
    for size in HEAD_WIDTHS:
        layers += [nn.Linear(width, size), nn.ReLU()]
        width = size
    layers.append(nn.Linear(width, out_features))
    if tanh:
        layers.append(nn.Tanh())
    return nn.Sequential(*layers)


def released_config(window_size: int, fwd_pred_next_n: int, hidden_size: int, image_size: int) -> dict:
    """A RoboVLMs Kosmos "policy head" config (the release's keys, tiny values)."""
    vlms = ".vlms/kosmos-2-patch14-224"
    return {
        "robovlm_name": "RoboKosMos", "parent": None, "task_name": "oxe_pretrain", "model": "kosmos",
        "model_url": "https://huggingface.co/microsoft/kosmos-2-patch14-224", "seq_len": 1,
        "image_size": image_size, "image_mean": [0.48145466, 0.4578275, 0.40821073],
        "image_std": [0.26862954, 0.26130258, 0.27577711], "window_size": window_size,
        "fwd_pred_next_n": fwd_pred_next_n, "arm_gripper_loss_ratio": 0.01, "cap_loss_ratio": 0.05,
        "fwd_loss_ratio": 0, "seed": 123, "batch_size": 4, "optimizer": "adam", "learning_rate": 2e-5,
        "weight_decay": 0, "use_hand_rgb": True, "use_vision_resampler": False, "model_load_path": None,
        "model_load_source": "torch", "model_path": vlms, "model_config": f"{vlms}/config.json",
        "train_setup": {"precision": "bf16", "predict_action": True, "predict_forward": False,
                        "predict_caption": False, "train_vision": True, "freeze_backbone": False,
                        "lora_enable": False, "train_text_embedding": True},
        "act_encoder": None,
        "act_head": {"type": "LSTMDecoder", "hidden_size": hidden_size, "action_dim": 7, "down_sample": "none",
                     "latent": 1, "fwd_pred_next_n": 1, "window_size": 1, "action_space": "continuous",
                     "with_history": True, "history_type": "post"},
        "fwd_head": None,
        "tokenizer": {"type": "AutoProcessor", "pretrained_model_name_or_path": vlms, "tokenizer_type": "kosmos",
                      "max_text_len": 256, "additional_special_tokens": None},
        "vlm": {"type": "AutoModelForVision2Seq", "name": "kosmos", "pretrained_model_name_or_path": vlms},
        "train_dataset": {"type": "OpenVLADataset", "data_mix": "oxe_magic_soup", "window_sample": "sliding"},
        "norm_action": True, "norm_min": -0.65, "norm_max": 0.65,
    }


def released_statistics(seed: int = 0) -> dict:
    """Bridge-like statistics in RoboVLMs' ``dataset_statistics_bridge.json`` format."""
    rng = np.random.default_rng(seed)
    spread = np.array([0.03, 0.04, 0.03, 0.08, 0.09, 0.2])
    q01 = -spread * rng.uniform(0.8, 1.2, 6)
    q99 = spread * rng.uniform(0.8, 1.2, 6)
    action = {"mean": list((q01 + q99) / 2) + [0.58], "std": list(spread / 3) + [0.5],
              "max": list(q99 * 10) + [1.0], "min": list(q01 * 10) + [0.0],
              "q01": list(q01) + [0.0], "q99": list(q99) + [1.0]}
    zeros = [0.0] * 7
    return {"action": {k: [float(x) for x in v] for k, v in action.items()},
            "proprio": {k: zeros for k in ("mean", "std", "max", "min", "q01", "q99")},
            "num_transitions": 2135463, "num_trajectories": 60064}


def released_state_dict(backbone_config: Kosmos2Config, *, fwd_pred_next_n: int, hidden_size: int,
                        num_layers: int = 4, seed: int = 1) -> dict[str, torch.Tensor]:
    """The Lightning module's ``state_dict``: ``model.backbone.*``, ``model.act_head.*``, ``model.action_token``."""
    torch.manual_seed(seed)
    backbone = Kosmos2ForConditionalGeneration(backbone_config)  # "finetuned": not the folder's weights
    width = backbone_config.text_config.embed_dim
    rnn = nn.LSTM(width, hidden_size, num_layers=num_layers, batch_first=True)
    actions = _mlp(hidden_size, fwd_pred_next_n * 6, tanh=True)
    gripper = _mlp(hidden_size, fwd_pred_next_n, tanh=False)
    state = {f"model.backbone.{k}": v for k, v in backbone.state_dict().items()}
    state["model.action_token"] = torch.randn(width) * 0.5
    state.update({f"model.act_head.rnn.{k}": v for k, v in rnn.state_dict().items()})
    state.update({f"model.act_head.actions.mlp.{k}": v for k, v in actions.state_dict().items()})
    state.update({f"model.act_head.gripper.mlp.{k}": v for k, v in gripper.state_dict().items()})
    return {k: v.detach().clone() for k, v in state.items()}


def write_released_robovlms(out_dir: str | Path, *, window_size: int = 3, fwd_pred_next_n: int = 2,
                            hidden_size: int = 16, num_layers: int = 4, image_size: int = 32,
                            container: str = "state_dict", module_prefix: bool = False,
                            dtype: torch.dtype = torch.float32, seed: int = 1) -> dict[str, Path]:
    """Write the twin under ``out_dir``; returns the paths (``checkpoint``, ``config``, ``statistics``, ``backbone``).

    ``container``: "state_dict" (a Lightning ``.ckpt`` / RoboVLMs ``.pt``) or
    "model_state_dict"; ``module_prefix`` adds DeepSpeed/DDP's ``module.`` before ``model.``.
    """
    out = Path(out_dir)
    backbone = build_tiny_kosmos2(out / ".vlms" / "kosmos-2-patch14-224", image_size=image_size,
                                  corpus=PROMPT_CORPUS)
    state = released_state_dict(Kosmos2Config.from_pretrained(backbone), fwd_pred_next_n=fwd_pred_next_n,
                                hidden_size=hidden_size, num_layers=num_layers, seed=seed)
    prefix = "module." if module_prefix else ""
    state = {prefix + k: v.to(dtype) for k, v in state.items()}
    payload = {container: state}
    if container == "state_dict":  # what Lightning writes next to the weights
        payload.update({"epoch": 0, "global_step": 50000, "pytorch-lightning_version": "2.2.5"})
    checkpoint = out / "checkpoints" / f"{NAME}.pt"
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, checkpoint)
    statistics = out / "configs" / "data" / "oxe_dataset_stats" / "dataset_statistics_bridge.json"
    statistics.parent.mkdir(parents=True, exist_ok=True)  # also makes configs/
    config = out / "configs" / f"{NAME}.json"
    config.write_text(json.dumps(released_config(window_size, fwd_pred_next_n, hidden_size, image_size), indent=4))
    statistics.write_text(json.dumps(released_statistics(), indent=4))
    return {"checkpoint": checkpoint, "config": config, "statistics": statistics, "backbone": backbone}

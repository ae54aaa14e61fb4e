"""A tiny format twin of the released SpatialVLA checkpoint (``IPEC-COMMUNITY/spatialvla-4b-224-pt``).

Why: the real 4B folder cannot be downloaded here, and its ``config.json`` points to remote
code (``auto_map``) we never run. Tests need a folder laid out exactly like it, with tiny
sizes, to exercise :func:`vla_finetune.policies.spatialvla.convert_spatialvla.convert_spatialvla`.

The layout, learned from the released files and upstream GitHub SpatialVLA/SpatialVLA
(``model/configuration_spatialvla.py``, ``model/modeling_spatialvla.py``,
``model/processing_spatialvla.py``, ``model/action_tokenizer.py``):

- ``config.json``: ``model_type "spatialvla"``, ``auto_map`` to the remote classes,
  ``action_token_begin_idx`` (the id of ``<ACTION00000>``, right after ``<image>``),
  ``spatial_token_num`` 8194, ``use_spatial_token``, ``use_vision_zoe``,
  ``ego3d_patch_reso`` 2, ``n_freqs`` 8, ``image_token_index``, ``projection_dim``,
  ``_vocab_size`` and nested ``text_config`` (Gemma2, ``tie_word_embeddings`` false),
  ``vision_config`` (SigLIP) and ``vision_zoe_config`` (ZoeDepth on BEiT);
- sharded safetensors (``model-0000k-of-0000n.safetensors`` + index) with the keys
  ``vision_tower.vision_model.*``, ``multi_modal_projector.linear.*``,
  ``language_model.model.*``, ``language_model.lm_head.weight``, ``vision_zoe_model.*``,
  ``position_embedding_3d.position_embedding_head.{0,1,3}.*`` and
  ``spatial_embed_tokens.weight`` (8194 x text hidden). Sub-model keys are written in
  transformers' original (4.x) names, as the release (transformers 4.47) has them;
- ``processor_config.json``: ``statistics`` per dataset (``action.q01/q99/mask`` ...),
  ``bin_policy`` (edges per axis), ``action_config.num_bins``, ``intrinsic_config`` per
  dataset (3x3 ``intrinsic`` at ``width`` x ``height``), ``action_chunk_size`` 4;
- ``preprocessor_config.json`` (SigLIP, ``do_normalize`` false: upstream normalises in the
  model) and the Gemma tokenizer files with ``<image>``, the PaliGemma location /
  segmentation tokens and ``<ACTION00000>`` ... ``<ACTION08193>``.

Weights are random (seeded). The tokenizer is the tiny Gemma-style one of
:mod:`orv_engine.testing.tiny_vla`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from statistics import NormalDist
from typing import Iterable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from transformers import (Gemma2Config, Gemma2ForCausalLM, PaliGemmaProcessor, SiglipImageProcessor,
                          SiglipVisionConfig, SiglipVisionModel, ZoeDepthConfig, ZoeDepthForDepthEstimation)

from orv_engine.testing.tiny_vla import tiny_gemma_tokenizer

ACTION_TOKEN = "<ACTION{:05d}>"  # upstream's names
NUM_BINS = {"translation": {"theta_bins": 16, "phi_bins": 32, "r_bins": 8},
            "rotation": {"roll_bins": 16, "pitch_bins": 16, "yaw_bins": 16}, "gripper": 2, "total": 8194}
RANGES = {"theta_bins": (0.0, np.pi), "phi_bins": (-np.pi, np.pi), "r_bins": (0.0, np.sqrt(3.0)),
          "roll_bins": (-1.0, 1.0), "pitch_bins": (-1.0, 1.0), "yaw_bins": (-1.0, 1.0)}
# (mu, sigma) per axis, of the order of upstream's scripts/gs_bridge.json
GAUSSIANS = {"theta_bins": (2.18, 0.78), "phi_bins": (0.14, 1.79), "r_bins": (0.55, 0.30),
             "roll_bins": (-0.01, 0.31), "pitch_bins": (0.02, 0.30), "yaw_bins": (0.0, 0.33)}
# the Bridge camera of the release's intrinsic_config (640 x 480)
BRIDGE_INTRINSIC = [[623.588, 0, 319.501], [0, 623.588, 239.545], [0, 0, 1]]
BRIDGE = "bridge_orig/1.0.0"
FRACTAL = "fractal20220817_data/0.1.0"


def gaussian_bin_policy() -> dict:
    """Edges at equal-probability quantiles of each axis's normal (upstream ``get_bin_policy``)."""
    policy = {"translation": {}, "rotation": {}}
    for group in ("translation", "rotation"):
        for key, n in NUM_BINS[group].items():
            (lo, hi), normal = RANGES[key], NormalDist(*GAUSSIANS[key])
            levels = np.linspace(normal.cdf(lo), normal.cdf(hi), n + 1)
            edges = [normal.inv_cdf(float(np.clip(p, 1e-12, 1 - 1e-12))) for p in levels]
            policy[group][key] = np.clip(edges, lo, hi).tolist()
    return policy


def _action_statistics(q01, q99) -> dict:
    q01, q99 = np.asarray(q01, float), np.asarray(q99, float)
    return {"action": {"mean": ((q01 + q99) / 2).tolist(), "std": ((q99 - q01) / 4).tolist(),
                       "max": (q99 * 2).tolist(), "min": (q01 * 2).tolist(), "q01": q01.tolist(),
                       "q99": q99.tolist(), "mask": [True] * 6 + [False]},
            "proprio": {k: [0.0] * 7 for k in ("mean", "std", "max", "min", "q01", "q99")},
            "num_transitions": 1000, "num_trajectories": 10}


def _original_names(model, tmp: Path) -> dict[str, torch.Tensor]:
    """The model's tensors under transformers' original checkpoint names (what ``save_pretrained`` writes)."""
    model.save_pretrained(tmp)
    tensors = {}
    for f in sorted(tmp.glob("*.safetensors")):
        tensors.update(load_file(str(f)))
    return tensors


def tiny_zoe_config() -> ZoeDepthConfig:
    backbone = dict(model_type="beit", hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                    intermediate_size=64, image_size=384, patch_size=16, out_indices=[1, 2, 3, 4],
                    use_relative_position_bias=True, reshape_hidden_states=False, drop_path_rate=0.1)
    return ZoeDepthConfig(backbone_config=backbone, backbone_hidden_size=32, neck_hidden_sizes=[8, 16, 32, 32],
                          fusion_hidden_size=16, bottleneck_features=16, bin_embedding_dim=16,
                          num_attractors=[4, 4, 2, 1], num_relative_features=8, patch_transformer_hidden_size=16,
                          patch_transformer_intermediate_size=32, patch_transformer_num_attention_heads=2,
                          bin_configurations=[{"n_bins": 8, "min_depth": 0.001, "max_depth": 10.0, "name": "nyu"}])


def build_released_spatialvla(out_dir: str | Path, *, image_size: int = 32, patch_size: int = 8, seed: int = 0,
                              corpus: Iterable[str] | None = None, use_vision_zoe: bool = True,
                              shards: int = 2) -> Path:
    """Write a tiny random SpatialVLA folder in the released layout; returns ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    hidden, vision_hidden, reso, n_freqs = 32, 32, 2, 8
    num_patches = (image_size // patch_size) ** 2

    # ---- tokenizer: Gemma + <image> + location/segmentation tokens (PaliGemmaProcessor adds them) + actions
    image_processor = SiglipImageProcessor(size={"height": image_size, "width": image_size},
                                           image_seq_length=num_patches, do_normalize=False)
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tiny_gemma_tokenizer(corpus))
    tok = processor.tokenizer
    image_token_id = processor.image_token_id
    tok.add_tokens([ACTION_TOKEN.format(i) for i in range(NUM_BINS["total"])], special_tokens=True)
    begin = tok.convert_tokens_to_ids(ACTION_TOKEN.format(0))
    vocab = len(tok)
    assert begin + NUM_BINS["total"] == vocab, "the action tokens must be the last ids"
    tok.save_pretrained(out_dir)
    image_processor.save_pretrained(out_dir)
    _edit_json(out_dir / "tokenizer_config.json", add_bos_token=False, add_eos_token=False,
               processor_class="SpatialVLAProcessor")
    _edit_json(out_dir / "preprocessor_config.json", processor_class="SpatialVLAProcessor", do_normalize=False)

    # ---- sub-models, random, under their original checkpoint names
    text_config = Gemma2Config(hidden_size=hidden, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                               num_key_value_heads=1, head_dim=16, query_pre_attn_scalar=16, vocab_size=vocab,
                               max_position_embeddings=512, tie_word_embeddings=False, pad_token_id=0,
                               bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    vision_config = SiglipVisionConfig(hidden_size=vision_hidden, intermediate_size=64, num_hidden_layers=2,
                                       num_attention_heads=2, image_size=image_size, patch_size=patch_size,
                                       vision_use_head=False)
    zoe_config = tiny_zoe_config()
    tensors: dict[str, torch.Tensor] = {}
    with tempfile.TemporaryDirectory() as tmp:
        lm = Gemma2ForCausalLM(text_config)
        with torch.no_grad():  # larger than the 0.02 init so greedy decoding is not a near-tie
            lm.lm_head.weight.normal_(0.0, 1.0)
        tensors.update({f"language_model.{k}": v for k, v in _original_names(lm, Path(tmp) / "lm").items()})
        # transformers 4.x's SiglipVisionModel nests everything under vision_model
        tensors.update({f"vision_tower.{k if k.startswith('vision_model.') else 'vision_model.' + k}": v
                        for k, v in _original_names(SiglipVisionModel(vision_config), Path(tmp) / "vision").items()})
        if use_vision_zoe:
            zoe = ZoeDepthForDepthEstimation(zoe_config)
            with torch.no_grad():  # the random init predicts a constant depth; perturb it so depth varies
                for p in zoe.parameters():
                    p.add_(torch.randn_like(p) * 0.05)
            tensors.update({f"vision_zoe_model.{k}": v for k, v in _original_names(zoe, Path(tmp) / "zoe").items()})
    tensors["multi_modal_projector.linear.weight"] = torch.randn(hidden, vision_hidden) * 0.2
    tensors["multi_modal_projector.linear.bias"] = torch.randn(hidden) * 0.1
    if use_vision_zoe:
        in_features = 3 * reso ** 2 * (2 * n_freqs + 1)
        head = "position_embedding_3d.position_embedding_head"
        tensors[f"{head}.0.weight"] = torch.randn(vision_hidden, in_features) * 0.1
        tensors[f"{head}.0.bias"] = torch.randn(vision_hidden) * 0.1
        tensors[f"{head}.1.weight"] = 1.0 + torch.randn(vision_hidden) * 0.1
        tensors[f"{head}.1.bias"] = torch.randn(vision_hidden) * 0.1
        tensors[f"{head}.3.weight"] = torch.randn(vision_hidden, vision_hidden) * 0.3
        tensors[f"{head}.3.bias"] = torch.randn(vision_hidden) * 0.1
    # the trained action embeddings; the LM's own rows at those ids stay stale, as in the release
    tensors["spatial_embed_tokens.weight"] = torch.randn(NUM_BINS["total"], hidden)
    _save_sharded(tensors, out_dir, shards)

    # ---- config.json in the release's keys
    text = {"architectures": ["Gemma2ForCausalLM"], "eos_token_id": [tok.eos_token_id],
            "hidden_act": "gelu_pytorch_tanh", "hidden_size": hidden, "intermediate_size": 64,
            "model_type": "gemma2", "num_hidden_layers": 2, "num_attention_heads": 2, "head_dim": 16,
            "query_pre_attn_scalar": 16, "max_position_embeddings": 512, "num_image_tokens": num_patches,
            "num_key_value_heads": 1, "tie_word_embeddings": False, "torch_dtype": "float32", "vocab_size": vocab}
    vision = {"hidden_size": vision_hidden, "intermediate_size": 64, "model_type": "siglip_vision_model",
              "num_attention_heads": 2, "num_hidden_layers": 2, "num_image_tokens": num_patches,
              "num_positions": num_patches, "patch_size": patch_size, "image_size": image_size,
              "projection_dim": hidden, "torch_dtype": "float32", "vision_use_head": False}
    config = {
        "_vocab_size": vocab, "action_token_begin_idx": begin,
        "architectures": ["SpatialVLAForConditionalGeneration"],
        "auto_map": {"AutoConfig": "configuration_spatialvla.SpatialVLAConfig",
                     "AutoModel": "modeling_spatialvla.SpatialVLAForConditionalGeneration"},
        "bos_token_id": tok.bos_token_id, "ego3d_patch_reso": reso, "eos_token_id": tok.eos_token_id,
        "hidden_size": 2048, "image_token_index": image_token_id, "model_type": "spatialvla", "n_freqs": n_freqs,
        "num_hidden_layers": 2, "pad_token_id": 0, "projection_dim": hidden,
        "spatial_token_num": NUM_BINS["total"], "text_config": text, "torch_dtype": "float32",
        "transformers_version": "4.47.0", "use_spatial_token": True, "use_vision_zoe": use_vision_zoe,
        "vision_config": vision,
    }
    if use_vision_zoe:
        config["vision_zoe_config"] = zoe_config.to_dict()
    (out_dir / "config.json").write_text(json.dumps(config, indent=2))
    (out_dir / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": 0}, indent=2))

    # ---- processor_config.json
    intrinsic = {"height": 480, "width": 640, "intrinsic": BRIDGE_INTRINSIC}
    processor_config = {
        "action_chunk_size": 4,
        "action_config": {"distribution": "gaussian", "num_bins": NUM_BINS, "use_spherical": True},
        "auto_map": {"AutoProcessor": "processing_spatialvla.SpatialVLAProcessor"},
        "bin_policy": gaussian_bin_policy(),
        "intrinsic_config": {BRIDGE: intrinsic, "default": intrinsic},
        "min_sigma": 0.0, "num_obs_steps": 1, "obs_delta": 1, "processor_class": "SpatialVLAProcessor",
        "statistics": {
            FRACTAL: _action_statistics([-0.22, -0.15, -0.23, -0.35, -0.42, -0.44, 0.0],
                                        [0.18, 0.15, 0.22, 0.59, 0.35, 0.45, 1.0]),
            BRIDGE: _action_statistics([-0.0287, -0.0417, -0.0261, -0.0809, -0.0929, -0.2072, 0.0],
                                       [0.0283, 0.0409, 0.0402, 0.0819, 0.0779, 0.2038, 1.0]),
        },
    }
    (out_dir / "processor_config.json").write_text(json.dumps(processor_config, indent=2))
    # the release ships upstream's remote code next to the weights; the converter never imports it
    for name in ("configuration_spatialvla.py", "modeling_spatialvla.py", "modeling_gemma2.py",
                 "processing_spatialvla.py", "action_tokenizer.py"):
        (out_dir / name).write_text("# stand-in for upstream's remote code file of the same name\n")
    return out_dir


def _edit_json(path: Path, **values) -> None:
    data = json.loads(path.read_text()) if path.is_file() else {}
    data.update(values)
    path.write_text(json.dumps(data, indent=2))


def _save_sharded(tensors: dict[str, torch.Tensor], out_dir: Path, shards: int) -> None:
    keys = sorted(tensors)
    groups = [list(g) for g in np.array_split(np.array(keys, dtype=object), shards)]
    weight_map, total = {}, 0
    for i, group in enumerate(groups, 1):
        name = f"model-{i:05d}-of-{shards:05d}.safetensors"
        save_file({k: tensors[k].contiguous() for k in group}, str(out_dir / name), metadata={"format": "pt"})
        for k in group:
            weight_map[k] = name
            total += tensors[k].numel() * tensors[k].element_size()
    (out_dir / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))

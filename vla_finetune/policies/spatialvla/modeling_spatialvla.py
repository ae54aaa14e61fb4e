"""SpatialVLA: PaliGemma predicts a chunk of actions as spatial action tokens.

The 8194 action tokens (:class:`SpatialActionTokenizer`) are appended to the PaliGemma
vocabulary (``<ACTION00000>`` ...; new embedding rows). A training sample is PaliGemma's
prefix-LM layout: ``[image tokens] <bos> prompt \\n`` (prefix, ``token_type_ids`` 0) then
``3 x chunk`` action tokens (suffix, ``token_type_ids`` 1), labels on the suffix only
(padded chunk steps are ignored). Prefixes are left-padded so every suffix starts at the
same position.

Finetuning is LoRA (peft, rank 32, alpha 32, all linear layers of the backbone) plus the
action-token embedding rows (peft ``trainable_token_indices``, so the 257k-row original
table stays frozen) and, when present, the Ego3D position MLP (trained in full: it is
small; upstream puts LoRA on it). :meth:`merge_lora` folds the adapters into the weights
for export; a saved folder is a plain (merged) PaliGemma inside the policy.

Inference decodes ``3 x chunk`` tokens greedily with ``generate``, each restricted to its
slot's token range (translation, rotation, gripper), then maps them back to actions.
Upstream generates unconstrained and clips out-of-slot ids into the slot; for a model that
emits tokens of the right slot (what it was trained to do) both give the same actions.

Ego3D position encoding (:class:`Ego3DPositionEncoding`), learned from upstream
``model/modeling_spatialvla.py`` (``Ego3DPositionEmbeddingMLP``, ``process_zoe``,
``backproject_patch``, ``get_image_features``) and written here on transformers'
``ZoeDepthForDepthEstimation``: the image is reflect-padded by 31 pixels and resized
(bicubic, corners aligned) to 384 x 384 for ZoeDepth; the predicted depth is resized back
to the padded size and cropped; it is area-averaged to ``reso x reso`` points per SigLIP
patch, each back-projected with the inverse intrinsics at its sub-cell centre; the
``(x, y, z)`` of the points, centred on ``(0, 0, 2)`` and halved, go through the NeRF
encoding ``[v, sin(2^k v), cos(2^k v)]`` (k < 8) and ``Linear-LayerNorm-ReLU-Linear``; the
result is added to SigLIP's last hidden state before the projector. ZoeDepth is frozen and
kept in eval mode. Upstream normalises with mean = std = 0.5 inside the model and pads /
resizes the [0, 1] image for ZoeDepth; padding and (weights summing to one) resizing
commute with that per-channel affine map, so here ZoeDepth's input is made from the
SigLIP-normalised pixels the PaliGemma processor already gives. It is added by a forward
hook on the vision tower, so PaliGemma's own forward/generate (and LoRA) are used as is.

Not included: upstream's re-fitting of the grid embeddings to a new action distribution
between pre-training and post-training (``spatial_embedding_adaption``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn
from transformers import (LogitsProcessor, LogitsProcessorList, PaliGemmaForConditionalGeneration, PreTrainedModel,
                          ZoeDepthConfig, ZoeDepthForDepthEstimation)

from vla_finetune.policies.common import PolicyFilesMixin, check_model_folder, load_processor
from vla_finetune.policies.spatialvla.action_tokenizer import ActionTokenizerError, SpatialActionTokenizer
from vla_finetune.policies.spatialvla.configuration_spatialvla import ACTION_TOKEN, SpatialVLAConfig

GRID_FILE = "action_tokenizer.json"


class SlotConstraint(LogitsProcessor):
    """Only the token range of the current slot (translation / rotation / gripper) may be emitted."""

    def __init__(self, prefix_length: int, offset: int, tokenizer: SpatialActionTokenizer):
        nt, nr = tokenizer.num_translation_tokens, tokenizer.num_rotation_tokens
        self.prefix_length = prefix_length
        self.ranges = [(offset, offset + nt), (offset + nt, offset + nt + nr),
                       (offset + nt + nr, offset + tokenizer.vocab_size)]

    def __call__(self, input_ids, scores):
        lo, hi = self.ranges[(input_ids.shape[1] - self.prefix_length) % 3]
        masked = torch.full_like(scores, float("-inf"))
        masked[:, lo:hi] = scores[:, lo:hi]
        return masked


class Ego3DPositionEncoding(nn.Module):
    """ZoeDepth depth -> per-patch camera-frame points -> frequency encoding -> MLP (see the module docstring)."""

    def __init__(self, config: SpatialVLAConfig, vision_hidden_size: int, patch_size: int):
        super().__init__()
        if not config.zoe_config or config.intrinsic is None:
            raise ValueError("use_ego3d needs zoe_config (a ZoeDepthConfig dict) and intrinsic (3x3)")
        self.reso, self.n_freqs, self.patch_size = config.ego3d_patch_reso, config.ego3d_n_freqs, patch_size
        self.input_size, self.pad = config.zoe_input_size, config.zoe_pad
        self.intrinsic = [list(map(float, row)) for row in config.intrinsic]
        self.depth_model = ZoeDepthForDepthEstimation(ZoeDepthConfig(**config.zoe_config))
        in_features = 3 * self.reso ** 2 * (2 * self.n_freqs + 1)
        # indices 0, 1, 3 as upstream's position_embedding_head (the ReLU has no weights)
        self.position_embedding_head = nn.Sequential(
            nn.Linear(in_features, vision_hidden_size), nn.LayerNorm(vision_hidden_size), nn.ReLU(),
            nn.Linear(vision_hidden_size, vision_hidden_size))
        self.depth_model.requires_grad_(False)
        self.depth_model.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.depth_model.eval()  # frozen: no drop-path / batch-norm updates in training
        return self

    @torch.no_grad()
    def depth(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` SigLIP-normalised pixels -> ``(B, 1, H, W)`` metric depth."""
        p, (h, w) = self.pad, pixel_values.shape[-2:]
        x = F.pad(pixel_values.float(), (p, p, p, p), mode="reflect")
        x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bicubic", align_corners=True)
        dtype = next(self.depth_model.parameters()).dtype
        depth = self.depth_model(pixel_values=x.to(dtype)).predicted_depth.float()
        depth = F.interpolate(depth.unsqueeze(1), size=(h + 2 * p, w + 2 * p), mode="bicubic", align_corners=True)
        return depth[..., p:p + h, p:p + w]

    def points(self, depth: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` depth -> ``(B, patches, reso^2 * 3)`` camera-frame points per patch."""
        b, _, h, w = depth.shape
        r, ps = self.reso, self.patch_size
        hp, wp = h // ps, w // ps
        sampled = F.interpolate(depth, size=(hp * r, wp * r), mode="area").reshape(b, 1, -1)
        # sub-cell centres in pixels (upstream: step patch // reso, offset patch / reso / 2)
        ys = torch.arange(0, h, ps // r, device=depth.device, dtype=torch.float32) + ps / r / 2
        xs = torch.arange(0, w, ps // r, device=depth.device, dtype=torch.float32) + ps / r / 2
        y, x = torch.meshgrid(ys, xs, indexing="ij")
        uv1 = torch.stack([x, y, torch.ones_like(x)]).reshape(3, -1)
        k_inv = torch.linalg.inv(torch.tensor(self.intrinsic, device=depth.device, dtype=torch.float32))
        xyz = (k_inv @ uv1) * sampled  # (B, 3, hp*r * wp*r)
        return xyz.reshape(b, 3, hp, r, wp, r).permute(0, 2, 4, 3, 5, 1).reshape(b, hp * wp, -1)

    def encode(self, xyz: torch.Tensor) -> torch.Tensor:
        """NeRF encoding of points centred on (0, 0, 2) and halved: ``[v, sin(2^k v), cos(2^k v)]`` per value."""
        centre = torch.tensor([0.0, 0.0, 2.0], device=xyz.device).repeat(xyz.shape[-1] // 3)
        v = ((xyz - centre) / 2.0).unsqueeze(-1)
        scaled = v * (2.0 ** torch.arange(self.n_freqs, device=xyz.device, dtype=v.dtype))
        return torch.cat([v, torch.sin(scaled), torch.cos(scaled)], -1).reshape(*xyz.shape[:2], -1)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W)`` SigLIP-normalised pixels -> ``(B, patches, vision hidden)`` position embedding."""
        features = self.encode(self.points(self.depth(pixel_values)))
        head = self.position_embedding_head
        return head(features.to(head[0].weight.dtype))


def _vision_tower(backbone):
    base = backbone.get_base_model() if isinstance(backbone, PeftModel) else backbone
    return base.model.vision_tower


class SpatialVLAPolicy(PolicyFilesMixin, PreTrainedModel):
    config_class = SpatialVLAConfig
    config: SpatialVLAConfig
    base_model_prefix = "spatialvla"
    main_input_name = "images"
    _no_split_modules = ["GemmaDecoderLayer", "SiglipEncoderLayer"]
    supports_gradient_checkpointing = True

    def __init__(self, config: SpatialVLAConfig, backbone: PaliGemmaForConditionalGeneration | None = None):
        super().__init__(config)
        # a loaded backbone is used as is (no second random copy of a 3B model)
        self.backbone = backbone if backbone is not None else PaliGemmaForConditionalGeneration(config.backbone_config)
        self.ego3d = None
        if config.use_ego3d:
            vision = self.backbone.config.vision_config
            self.ego3d = Ego3DPositionEncoding(config, vision.hidden_size, vision.patch_size)
            # the encoding joins SigLIP's output inside PaliGemma's own image path (training and generate)
            _vision_tower(self.backbone).register_forward_hook(self._add_ego3d, with_kwargs=True)
        self.action_tokenizer: SpatialActionTokenizer | None = None
        self._instruction = ""
        self.post_init()

    def _add_ego3d(self, module, args, kwargs, output):
        pixel_values = args[0] if args else kwargs["pixel_values"]
        hidden = output.last_hidden_state
        output.last_hidden_state = hidden + self.ego3d(pixel_values).to(hidden.dtype)
        return output

    def _init_weights(self, module):
        pass  # the backbone initialises its own modules; the policy adds none

    # ------------------------------------------------------------ construction

    @classmethod
    def from_backbone(cls, backbone_path, statistics, action_tokenizer: SpatialActionTokenizer,
                      **config_kwargs) -> "SpatialVLAPolicy":
        """A new policy on a PaliGemma folder (``google/paligemma-3b-pt-224`` layout); adds the action tokens."""
        folder = check_model_folder(backbone_path, "PaliGemma backbone")
        backbone = PaliGemmaForConditionalGeneration.from_pretrained(str(folder))
        processor = load_processor(folder)
        tokenizer = processor.tokenizer
        first = ACTION_TOKEN.format(0)
        if first not in tokenizer.get_vocab():
            tokenizer.add_tokens([ACTION_TOKEN.format(i) for i in range(action_tokenizer.vocab_size)],
                                 special_tokens=True)
        offset = tokenizer.convert_tokens_to_ids(first)
        last = tokenizer.convert_tokens_to_ids(ACTION_TOKEN.format(action_tokenizer.vocab_size - 1))
        if last - offset != action_tokenizer.vocab_size - 1:
            raise ActionTokenizerError(f"{folder}: the action tokens are not contiguous in the tokenizer")
        backbone.resize_token_embeddings(len(tokenizer), mean_resizing=True)
        config = SpatialVLAConfig(backbone_config=backbone.config.to_dict(), action_token_offset=offset,
                                  action_vocab_size=action_tokenizer.vocab_size, **config_kwargs)
        policy = cls(config, backbone=backbone)
        policy.attach(processor, statistics, config.normalization)
        policy.action_tokenizer = action_tokenizer
        return policy

    def save_extra(self, folder: Path) -> None:
        if self.action_tokenizer is None:
            raise ActionTokenizerError("no action tokenizer attached")
        self.action_tokenizer.save(folder / GRID_FILE)

    def load_extra(self, folder: Path) -> None:
        self.action_tokenizer = SpatialActionTokenizer.load(folder / GRID_FILE)
        if self.ego3d is not None:  # loading weights makes fresh parameters: freeze ZoeDepth again
            self.ego3d.depth_model.requires_grad_(False)

    def save_pretrained(self, save_directory, *args, **kwargs):
        if self.is_lora:
            raise RuntimeError("the backbone still has LoRA adapters: call merge_lora() before save_pretrained "
                               "(training checkpoints keep the adapters in accelerate's state instead)")
        super().save_pretrained(save_directory, *args, **kwargs)

    @property
    def chunk_size(self) -> int:
        return self.config.chunk_size

    # ------------------------------------------------------------ LoRA

    @property
    def is_lora(self) -> bool:
        return isinstance(self.backbone, PeftModel)

    def apply_lora(self) -> None:
        """Wrap the backbone in LoRA adapters; adapters, action-token rows (and the Ego3D MLP) train."""
        c = self.config
        ids = list(range(c.action_token_offset, c.action_token_offset + c.action_vocab_size))
        lora = LoraConfig(r=c.lora_rank, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
                          target_modules=c.lora_target_modules, trainable_token_indices={"embed_tokens": ids})
        self.backbone = get_peft_model(self.backbone, lora)
        if self.ego3d is not None:
            self.ego3d.depth_model.requires_grad_(False)

    def merge_lora(self) -> None:
        if self.is_lora:
            self.backbone = self.backbone.merge_and_unload()

    # ------------------------------------------------------------ inputs

    def prompts(self, instructions) -> list[str]:
        # lower-cased as upstream trains (data/dataset.py); surrounding white space dropped
        return [self.config.prompt_template.format(instruction=i.strip().lower()) for i in instructions]

    def prefix_inputs(self, images: list[np.ndarray], instructions) -> dict:
        tokenizer = self.processor.tokenizer
        tokenizer.padding_side = "left"
        prompts = [f"{self.processor.image_token}{p}" for p in self.prompts(instructions)]
        enc = self.processor(images=images, text=prompts, padding="longest", return_tensors="pt")
        device = self.device
        return {k: enc[k].to(device) for k in ("input_ids", "attention_mask", "pixel_values", "token_type_ids")}

    def action_token_ids(self, actions: np.ndarray) -> np.ndarray:
        """``(B, K, 7)`` normalised actions -> ``(B, 3K)`` vocabulary ids."""
        return self.action_tokenizer.encode(actions).reshape(len(actions), -1) + self.config.action_token_offset

    # ------------------------------------------------------------ training

    def forward(self, images: torch.Tensor, instruction: list[str], actions: torch.Tensor | None = None,
                action_mask: torch.Tensor | None = None, **_) -> dict:
        """``images`` (B, 1, h, w, 3) uint8, ``actions`` (B, 1, K, 7) normalised -> ``{"loss"}``."""
        if images.ndim != 5 or images.shape[1] != 1:
            raise ValueError(f"SpatialVLA takes one frame per sample: images (B, 1, h, w, 3), got {tuple(images.shape)}")
        if actions is None:
            raise ValueError("forward() trains on actions; use predict_chunk() for inference")
        if actions.shape[-1] != self.config.action_dim or actions.shape[-2] != self.config.chunk_size:
            raise ValueError(f"actions must be (B, 1, {self.config.chunk_size}, {self.config.action_dim}), "
                             f"got {tuple(actions.shape)}")
        prefix = self.prefix_inputs(list(images[:, 0].cpu().numpy()), instruction)
        ids = torch.from_numpy(self.action_token_ids(actions[:, 0].float().cpu().numpy())).to(self.device)
        b, n = ids.shape
        labels_suffix = ids.clone()
        if action_mask is not None:
            keep = action_mask[:, 0].to(self.device).repeat_interleave(3, dim=1)
            labels_suffix[~keep.bool()] = -100
        ones = torch.ones_like(ids)
        input_ids = torch.cat([prefix["input_ids"], ids], 1)
        labels = torch.cat([torch.full_like(prefix["input_ids"], -100), labels_suffix], 1)
        out = self.backbone(input_ids=input_ids, pixel_values=prefix["pixel_values"].to(self.backbone.dtype),
                            attention_mask=torch.cat([prefix["attention_mask"], ones], 1),
                            token_type_ids=torch.cat([torch.zeros_like(prefix["token_type_ids"]), ones], 1),
                            labels=labels)
        return {"loss": out.loss, "logits": out.logits[:, -n - 1:-1]}

    # ------------------------------------------------------------ inference (ChunkPredictor)

    def reset(self, instruction: str) -> None:
        self._instruction = instruction

    @torch.no_grad()
    def predict_tokens(self, images: list[np.ndarray], instructions) -> np.ndarray:
        prefix = self.prefix_inputs(images, instructions)
        length = prefix["input_ids"].shape[1]
        n = 3 * self.config.chunk_size
        constraint = SlotConstraint(length, self.config.action_token_offset, self.action_tokenizer)
        out = self.backbone.generate(**prefix, max_new_tokens=n, min_new_tokens=n, do_sample=False, num_beams=1,
                                     logits_processor=LogitsProcessorList([constraint]))
        return out[:, length:length + n].cpu().numpy() - self.config.action_token_offset

    @torch.no_grad()
    def predict_chunk(self, image: np.ndarray) -> np.ndarray:
        tokens = self.predict_tokens([np.asarray(image)], [self._instruction])[0]
        normalised = self.action_tokenizer.decode(tokens.reshape(self.config.chunk_size, 3))
        return self.normalizer.unnormalize(normalised)

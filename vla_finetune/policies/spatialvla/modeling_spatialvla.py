"""SpatialVLA: PaliGemma predicts a chunk of actions as spatial action tokens.

The 8194 action tokens (:class:`SpatialActionTokenizer`) are appended to the PaliGemma
vocabulary (``<ACTION_00000>`` ...; new embedding rows). A training sample is PaliGemma's
prefix-LM layout: ``[image tokens] <bos> prompt \\n`` (prefix, ``token_type_ids`` 0) then
``3 x chunk`` action tokens (suffix, ``token_type_ids`` 1), labels on the suffix only
(padded chunk steps are ignored). Prefixes are left-padded so every suffix starts at the
same position.

Finetuning is LoRA (peft, rank 32, alpha 32, all linear layers) plus the new action-token
embedding rows (peft ``trainable_token_indices``, so the 257k-row original table stays
frozen). :meth:`merge_lora` folds the adapters into the weights for export; a saved
folder is a plain (merged) PaliGemma inside the policy.

Inference decodes ``3 x chunk`` tokens greedily with ``generate``, each restricted to its
slot's token range (translation, rotation, gripper), then maps them back to actions.

Not included: SpatialVLA's Ego3D position encoding (needs a ZoeDepth depth model) and the
re-fitting of the grid embeddings between pre-training and post-training.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import LogitsProcessor, LogitsProcessorList, PaliGemmaForConditionalGeneration, PreTrainedModel

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
        self.action_tokenizer: SpatialActionTokenizer | None = None
        self._instruction = ""
        self.post_init()

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
        """Wrap the backbone in LoRA adapters; only adapters and action-token rows train."""
        c = self.config
        ids = list(range(c.action_token_offset, c.action_token_offset + c.action_vocab_size))
        lora = LoraConfig(r=c.lora_rank, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
                          target_modules=c.lora_target_modules, trainable_token_indices={"embed_tokens": ids})
        self.backbone = get_peft_model(self.backbone, lora)

    def merge_lora(self) -> None:
        if self.is_lora:
            self.backbone = self.backbone.merge_and_unload()

    # ------------------------------------------------------------ inputs

    def prompts(self, instructions) -> list[str]:
        return [self.config.prompt_template.format(instruction=i.strip().lower().rstrip(".")) for i in instructions]

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

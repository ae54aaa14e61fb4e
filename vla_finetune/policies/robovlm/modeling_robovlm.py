"""RoboVLM: Kosmos-2 reads (image, instruction, learnable action query) per frame; an LSTM
over the frame history turns the action-query features into chunks of 7-d actions.

Per frame, as RoboVLMs' "policy head" formulation: the prompt is tokenized by the
Kosmos-2 processor (image placeholders + instruction), a learnable ``[ACT]`` embedding is
inserted after the last real token, and the backbone's last hidden state at ``[ACT]`` is
that frame's feature. The LSTM (hidden 1024) runs over the ``H`` features of the window
and predicts, at every history step, a chunk of ``K`` actions: 6 arm values (normalised,
MSE or Huber) and a gripper logit (BCE). Training finetunes everything.

Inference (:meth:`predict_chunk`) keeps the features of the last ``H`` frames, so each
step runs the backbone once.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from transformers import Kosmos2ForConditionalGeneration, PreTrainedModel

from vla_finetune.policies.common import PolicyFilesMixin, check_model_folder, load_processor
from vla_finetune.policies.robovlm.configuration_robovlm import RoboVLMConfig


class RoboVLMPolicy(PolicyFilesMixin, PreTrainedModel):
    config_class = RoboVLMConfig
    config: RoboVLMConfig
    base_model_prefix = "robovlm"
    main_input_name = "images"
    _no_split_modules = ["Kosmos2TextBlock", "Kosmos2VisionEncoderLayer"]
    supports_gradient_checkpointing = True

    def __init__(self, config: RoboVLMConfig, backbone: Kosmos2ForConditionalGeneration | None = None):
        super().__init__(config)
        # a loaded backbone is used as is (no second random copy of a 1.6B model)
        self.backbone = backbone if backbone is not None else Kosmos2ForConditionalGeneration(config.backbone_config)
        width = config.backbone_config.text_config.embed_dim
        self.action_query = nn.Parameter(torch.zeros(width))
        self.lstm = nn.LSTM(width, config.lstm_hidden_size, num_layers=config.lstm_num_layers, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(config.lstm_hidden_size, config.lstm_hidden_size), nn.ReLU(), nn.Dropout(config.head_dropout),
            nn.Linear(config.lstm_hidden_size, config.chunk_size * config.action_dim))
        self._history: deque = deque(maxlen=config.history_len)
        self._instruction = ""
        self.post_init()

    def _init_weights(self, module):
        # only the policy's own modules: the backbone is initialised (or loaded) by its class
        if module is self:
            nn.init.normal_(self.action_query, std=0.02)
        elif isinstance(module, nn.Linear) and any(module is m for m in self.head):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        elif module is self.lstm:
            module.reset_parameters()

    # ------------------------------------------------------------ construction

    @classmethod
    def from_backbone(cls, backbone_path, statistics, **config_kwargs) -> "RoboVLMPolicy":
        """A new policy on a Kosmos-2 folder (``microsoft/kosmos-2-patch14-224`` layout)."""
        folder = check_model_folder(backbone_path, "Kosmos-2 backbone")
        backbone = Kosmos2ForConditionalGeneration.from_pretrained(str(folder))
        config = RoboVLMConfig(backbone_config=backbone.config.to_dict(), **config_kwargs)
        policy = cls(config, backbone=backbone)
        policy.attach(load_processor(folder), statistics, config.normalization)
        return policy

    @property
    def chunk_size(self) -> int:
        return self.config.chunk_size

    # ------------------------------------------------------------ features

    def prompts(self, instructions) -> list[str]:
        return [self.config.prompt_template.format(instruction=i.strip().lower().rstrip(".")) for i in instructions]

    def frame_features(self, images: list[np.ndarray], prompts: list[str]) -> torch.Tensor:
        """``(N, D)``: the backbone's last hidden state at ``[ACT]`` for N (image, prompt) pairs."""
        backbone = self.backbone
        device = self.action_query.device
        enc = self.processor(images=images, text=prompts, num_image_tokens=backbone.config.latent_query_num,
                             padding=True, return_tensors="pt")
        pixel_values = enc["pixel_values"].to(device, backbone.vision_model.dtype)
        # as Kosmos2Model.get_image_features: all vision tokens, layer-normed, L2-normed, resampled
        vision = backbone.vision_model(pixel_values=pixel_values).last_hidden_state
        image_embeds = F.normalize(backbone.vision_model.model.post_layernorm(vision), dim=-1)
        image_embeds, _ = backbone.image_to_text_projection(image_embeds)
        input_ids = enc["input_ids"].to(device)
        attention = enc["attention_mask"].to(device)
        image_mask = enc["image_embeds_position_mask"].to(device)
        text = backbone.text_model.model
        embeds = text.embed_tokens(input_ids)
        n, length, width = embeds.shape
        lengths = attention.sum(1)
        # insert [ACT] right after the last real token of each row (pads stay at the end)
        positions = torch.arange(length + 1, device=device)[None].expand(n, -1)
        before = positions < lengths[:, None]
        src = torch.where(before, positions, positions - 1).clamp(max=length - 1)
        gathered = torch.gather(embeds, 1, src[..., None].expand(-1, -1, width))
        is_act = positions == lengths[:, None]
        embeds = torch.where(is_act[..., None], self.action_query.to(embeds.dtype).expand(n, length + 1, width),
                             gathered)
        attention = torch.where(is_act, 1, torch.gather(attention, 1, src))
        image_mask = torch.where(is_act | ~before & (positions >= length), 0, torch.gather(image_mask, 1, src))
        hidden = text(inputs_embeds=embeds, attention_mask=attention, image_embeds=image_embeds,
                      image_embeds_position_mask=image_mask).last_hidden_state
        return hidden[torch.arange(n, device=device), lengths]

    def policy_head(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, H, D)`` frame features -> ``(B, H, K, 7)``: 6 normalised arm values + gripper logit."""
        out, _ = self.lstm(features.float() if features.dtype != self.lstm.weight_ih_l0.dtype else features)
        b, h, _ = out.shape
        return self.head(out).view(b, h, self.config.chunk_size, self.config.action_dim)

    # ------------------------------------------------------------ training

    def forward(self, images: torch.Tensor, instruction: list[str], actions: torch.Tensor | None = None,
                action_mask: torch.Tensor | None = None, image_mask: torch.Tensor | None = None, **_) -> dict:
        """``images`` (B, H, h, w, 3) uint8; ``actions`` (B, H, K, 7) normalised -> ``{"loss", ...}``."""
        b, h = images.shape[:2]
        if h != self.config.history_len:
            raise ValueError(f"images hold {h} frames per sample, the policy's history_len is {self.config.history_len}")
        frames = list(images.reshape(b * h, *images.shape[2:]).cpu().numpy())
        prompts = [p for p in self.prompts(instruction) for _ in range(h)]
        features = self.frame_features(frames, prompts).view(b, h, -1)
        prediction = self.policy_head(features)
        out = {"prediction": prediction}
        if actions is None:
            return out
        if actions.shape[-1] != self.config.action_dim:
            raise ValueError(f"actions must be {self.config.action_dim}-d, got shape {tuple(actions.shape)}")
        mask = (torch.ones(actions.shape[:-1], dtype=torch.bool, device=actions.device)
                if action_mask is None else action_mask.bool())
        weights = mask.float()
        denom = weights.sum().clamp(min=1.0)
        arm_fn = F.mse_loss if self.config.arm_loss == "mse" else F.smooth_l1_loss
        arm = arm_fn(prediction[..., :6].float(), actions[..., :6].float(), reduction="none").mean(-1)
        gripper = F.binary_cross_entropy_with_logits(prediction[..., 6].float(), actions[..., 6].float(),
                                                     reduction="none")
        arm_loss = (arm * weights).sum() / denom
        gripper_loss = (gripper * weights).sum() / denom
        out.update(loss=arm_loss + self.config.gripper_loss_weight * gripper_loss, arm_loss=arm_loss.detach(),
                   gripper_loss=gripper_loss.detach())
        return out

    # ------------------------------------------------------------ inference (ChunkPredictor)

    def reset(self, instruction: str) -> None:
        self._instruction = instruction
        self._history.clear()

    @torch.no_grad()
    def observe(self, image: np.ndarray) -> None:
        """Add a frame to the history without predicting (chunk execution between predictions)."""
        feature = self.frame_features([np.asarray(image)], self.prompts([self._instruction]))[0]
        self._history.append(feature)

    @torch.no_grad()
    def predict_chunk(self, image: np.ndarray) -> np.ndarray:
        self.observe(image)
        frames = list(self._history)
        frames = [frames[0]] * (self.config.history_len - len(frames)) + frames  # as the training windows pad
        prediction = self.policy_head(torch.stack(frames)[None])[0, -1].float()
        chunk = prediction.cpu().numpy().copy()
        chunk[:, 6] = (torch.sigmoid(prediction[:, 6]) > 0.5).float().cpu().numpy()
        return self.normalizer.unnormalize(chunk)

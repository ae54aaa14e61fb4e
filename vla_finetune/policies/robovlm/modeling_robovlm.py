"""RoboVLM: RoboVLMs' RoboKosMos with its LSTM policy head, as a transformers model.

What was learned from upstream (Robot-VLAs/RoboVLMs) and is reproduced here:

- ``robovlms/model/backbone/base_backbone.py`` (``forward_continuous``, history type
  "post"): every frame of the window is its own Kosmos-2 sequence
  ``[BOS] [image embeddings] [text tokens] [action token] [EOS]`` -- the image embeddings
  (vision tower -> ``post_layernorm`` -> L2 normalisation -> ``image_to_text_projection``,
  ``robokosmos.py``) are inserted right after BOS without ``<image>``/``</image>`` markers,
  the learnable ``action_token`` right before EOS; the (unscaled) embeddings go to the
  text transformer as ``inputs_embeds`` (which scales them all by ``embed_scale``), and the
  last hidden state (after the final layer norm) at the action token is the frame's feature.
- ``robovlms/data/data_utils.py``: the text is the tokenizer's (BOS/EOS added) encoding
  of ``"<grounding>An image of a robot " + instruction.strip()``; images are resized to
  224x224 (bicubic, no crop) and normalised with CLIP's mean/std (``image_processor`` of
  ``base_backbone.py``).
- ``robovlms/model/policy_head/base_policy.py`` (``LSTMDecoder``): ``rnn`` (nn.LSTM over
  the frame features), ``actions`` (``MLPTanhHead``: Linear-ReLU x3 -> Linear -> Tanh, 6K
  outputs) and ``gripper`` (``MLPSigmoidHead``, whose sigmoid is commented out: K logits).
  Our module names are theirs (``act_head.rnn``, ``act_head.actions.mlp.N``,
  ``act_head.gripper.mlp.N``, ``action_token``, ``backbone``), so a released checkpoint
  maps onto this model by dropping its ``model.`` prefix
  (:mod:`vla_finetune.policies.robovlm.convert_robovlms`).
- Inference (``LSTMDecoder.forward`` with one frame + ``eval/*/model_wrapper.py``): the
  LSTM runs over the features of the last ``window_size`` frames from a zero state (their
  stateful update until the window is full is the same thing); the chunk of the last frame
  is the prediction, the gripper is ``sigmoid(logit) > 0.5`` (1 = open) and the arm is
  un-normalised by ``norm_min/norm_max`` then by the q01/q99 bounds.

Why hand-written: upstream's model is a Lightning module tied to its trainer, patched
transformers 4.37 and its data pipeline; ours must be a ``PreTrainedModel`` that saves and
loads as one folder, trains with :mod:`vla_finetune.training` and serves
:func:`vla_finetune.policies.interface.load_policy`.

One deliberate difference in training: RoboVLMs right-pads the batch's text and then
inserts the action token before the *last* position, so in a batch of instructions of
different lengths a shorter one gets its action token after its padding. We build each row
as the unpadded inference sequence and pad after EOS, so a frame's feature never depends
on the other instructions of the batch and training sees what inference sees.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from transformers import Kosmos2ForConditionalGeneration, PreTrainedModel

from vla_finetune.policies.common import PolicyFilesMixin, check_model_folder, load_processor
from vla_finetune.policies.robovlm.configuration_robovlm import RoboVLMConfig

ARM_DIMS = 6


def _size_field(size, key: str):
    # image processors hold sizes as dicts or (transformers 5) SizeDict objects
    return size.get(key) if isinstance(size, dict) else getattr(size, key, None)


class MLPHead(nn.Module):
    """RoboVLMs' ``MLPTanhHead`` (``tanh=True``) / ``MLPSigmoidHead`` (logits): ``mlp.{0,2,4,6}``."""

    def __init__(self, in_features: int, hidden_sizes, out_features: int, tanh: bool):
        super().__init__()
        layers, width = [], in_features
        for size in hidden_sizes:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, out_features))
        if tanh:
            layers.append(nn.Tanh())
        self.mlp = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp(x)


class LSTMActionHead(nn.Module):
    """RoboVLMs' ``LSTMDecoder`` (down_sample "none", latent 1): ``rnn``, ``actions``, ``gripper``."""

    def __init__(self, config: RoboVLMConfig, in_features: int):
        super().__init__()
        hidden, k = config.lstm_hidden_size, config.chunk_size
        self.rnn = nn.LSTM(in_features, hidden, num_layers=config.lstm_num_layers, batch_first=True,
                           dropout=config.lstm_dropout)
        self.actions = MLPHead(hidden, config.head_hidden_sizes, k * ARM_DIMS, tanh=True)
        self.gripper = MLPHead(hidden, config.head_hidden_sizes, k, tanh=False)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` -> ``(B, T, K, 7)``: 6 tanh arm values (head space) + gripper logit."""
        out, _ = self.rnn(features.to(self.rnn.weight_ih_l0.dtype))
        b, t, _ = out.shape
        arm = self.actions(out).view(b, t, -1, ARM_DIMS)  # RoboVLMs: "b l (n d) -> b l n d"
        gripper = self.gripper(out).view(b, t, -1, 1)
        return torch.cat([arm, gripper], dim=-1)


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
        self.action_token = nn.Parameter(torch.zeros(width))
        self.act_head = LSTMActionHead(config, width)
        self._history: deque = deque(maxlen=config.history_len)
        self._instruction = ""
        self._prompt_cache: dict[str, list[int]] = {}
        self.post_init()

    def _init_weights(self, module):
        # only the policy's own modules (the backbone is initialised or loaded by its class),
        # as RoboVLMs: a zero action token, xavier/zero-bias MLPs, torch's default LSTM init
        if module is self:
            nn.init.zeros_(self.action_token)
        elif isinstance(module, nn.Linear) and any(module is m for m in self.act_head.modules()):
            nn.init.xavier_uniform_(module.weight)
            nn.init.zeros_(module.bias)
        elif module is self.act_head.rnn:
            module.reset_parameters()

    # ------------------------------------------------------------ construction

    @classmethod
    def from_backbone(cls, backbone_path, statistics, **config_kwargs) -> "RoboVLMPolicy":
        """A new policy (random head) on a Kosmos-2 folder (``microsoft/kosmos-2-patch14-224`` layout)."""
        folder = check_model_folder(backbone_path, "Kosmos-2 backbone")
        backbone = Kosmos2ForConditionalGeneration.from_pretrained(str(folder))
        config = RoboVLMConfig(backbone_config=backbone.config.to_dict(), **config_kwargs)
        policy = cls(config, backbone=backbone)
        policy.attach(load_processor(folder), statistics, config.normalization)
        return policy

    @property
    def chunk_size(self) -> int:
        return self.config.chunk_size

    # ------------------------------------------------------------ inputs

    def prompts(self, instructions) -> list[str]:
        """RoboVLMs' Kosmos text: the template around the stripped instruction (case kept)."""
        return [self.config.prompt_template.format(instruction=i.strip()) for i in instructions]

    def prompt_ids(self, prompt: str) -> list[int]:
        """The tokenizer's ids of a prompt, BOS/EOS included (as RoboVLMs' text function)."""
        if prompt not in self._prompt_cache:
            self._prompt_cache[prompt] = list(self.processor.tokenizer(prompt)["input_ids"])
        return self._prompt_cache[prompt]

    def pixel_values(self, images) -> torch.Tensor:
        """``(N, 3, S, S)``: bicubic resize to the processor's size (no crop), CLIP mean/std."""
        ip = self.processor.image_processor
        size = ip.crop_size if getattr(ip, "do_center_crop", False) else ip.size
        h = _size_field(size, "height") or _size_field(size, "shortest_edge")
        w = _size_field(size, "width") or h
        arrays = [np.asarray(Image.fromarray(np.asarray(im, np.uint8)).convert("RGB").resize((w, h), Image.BICUBIC),
                             np.float32) / 255.0 for im in images]
        x = (np.stack(arrays) - np.asarray(ip.image_mean, np.float32)) / np.asarray(ip.image_std, np.float32)
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()

    def image_embeddings(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """``(N, Q, D)``, as RoboKosMos.model_encode_images (all vision tokens, resampled)."""
        backbone = self.backbone
        vision = backbone.vision_model(pixel_values=pixel_values).last_hidden_state
        embeds = F.normalize(backbone.vision_model.model.post_layernorm(vision), dim=-1)
        embeds, _ = backbone.image_to_text_projection(embeds)
        return embeds

    def frame_features(self, images, instructions) -> torch.Tensor:
        """``(N, D)``: the last hidden state at the action token for N (image, instruction) pairs."""
        backbone = self.backbone
        device = self.action_token.device
        pixels = self.pixel_values(images).to(device, backbone.vision_model.dtype)
        image_embeds = self.image_embeddings(pixels)
        text = backbone.text_model.model
        tokenizer = self.processor.tokenizer
        n_bos, n_eos = int(tokenizer.bos_token is not None), int(tokenizer.eos_token is not None)
        rows, positions = [], []
        for prompt, image in zip(self.prompts(instructions), image_embeds):
            ids = self.prompt_ids(prompt)
            words = text.embed_tokens(torch.tensor(ids, device=device))
            body_end = len(ids) - n_eos
            rows.append(torch.cat([words[:n_bos], image.to(words.dtype), words[n_bos:body_end],
                                   self.action_token[None].to(words.dtype), words[body_end:]]))
            positions.append(body_end + image.shape[0])  # the action token: after BOS, image and text
        length = max(len(r) for r in rows)
        embeds = torch.stack([F.pad(r, (0, 0, 0, length - len(r))) for r in rows])
        attention = torch.stack([torch.arange(length, device=device) < len(r) for r in rows]).long()
        hidden = text(inputs_embeds=embeds, attention_mask=attention).last_hidden_state
        return hidden[torch.arange(len(rows), device=device), torch.tensor(positions, device=device)]

    def policy_head(self, features: torch.Tensor) -> torch.Tensor:
        """``(B, T, D)`` frame features -> ``(B, T, K, 7)``: 6 tanh arm values + gripper logit."""
        return self.act_head(features)

    # ------------------------------------------------------------ action spaces

    def to_head_space(self, actions: torch.Tensor) -> torch.Tensor:
        """q01/q99-normalised arm actions -> the head's [-1, 1] (RoboVLMs' normalize_action)."""
        lo, hi = self.config.action_norm_min, self.config.action_norm_max
        return 2.0 * (actions.clamp(lo, hi) - lo) / (hi - lo) - 1.0

    def from_head_space(self, arm: torch.Tensor) -> torch.Tensor:
        """The head's tanh outputs -> q01/q99-normalised arm actions (unnoramalize_action)."""
        lo, hi = self.config.action_norm_min, self.config.action_norm_max
        return 0.5 * (arm + 1.0) * (hi - lo) + lo

    def actions_from_prediction(self, prediction: torch.Tensor) -> np.ndarray:
        """``(..., K, 7)`` head outputs -> un-normalised actions, gripper 0/1 (1 = open)."""
        prediction = prediction.detach().float()
        normalised = torch.cat([self.from_head_space(prediction[..., :ARM_DIMS]),
                                (torch.sigmoid(prediction[..., ARM_DIMS:]) > 0.5).float()], dim=-1)
        return self.normalizer.unnormalize(normalised.cpu().numpy())

    # ------------------------------------------------------------ training

    def forward(self, images: torch.Tensor, instruction: list[str], actions: torch.Tensor | None = None,
                action_mask: torch.Tensor | None = None, image_mask: torch.Tensor | None = None, **_) -> dict:
        """``images`` (B, T, h, w, 3) uint8, T <= history_len; ``actions`` (B, T, K, 7) q01/q99-normalised.

        Returns ``{"prediction"}`` (B, T, K, 7) in the head's space (tanh arm, gripper
        logit) and, given actions, ``loss`` = arm loss + gripper_loss_weight x gripper BCE.
        """
        b, h = images.shape[:2]
        if h > self.config.history_len:
            raise ValueError(f"images hold {h} frames per sample, the policy's history_len is "
                             f"{self.config.history_len}")
        frames = list(images.reshape(b * h, *images.shape[2:]).cpu().numpy())
        instructions = [i for i in instruction for _ in range(h)]
        features = self.frame_features(frames, instructions).view(b, h, -1)
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
        target_arm = self.to_head_space(actions[..., :ARM_DIMS].float())
        arm_fn = F.mse_loss if self.config.arm_loss == "mse" else F.huber_loss
        arm = arm_fn(prediction[..., :ARM_DIMS].float(), target_arm, reduction="none").mean(-1)
        gripper = F.binary_cross_entropy_with_logits(prediction[..., ARM_DIMS].float(),
                                                     actions[..., ARM_DIMS].float().clamp(0, 1), reduction="none")
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
        self._history.append(self.frame_features([np.asarray(image)], [self._instruction])[0])

    @torch.no_grad()
    def predict_chunk(self, image: np.ndarray) -> np.ndarray:
        """``(K, 7)`` un-normalised actions for this frame, from the LSTM over the kept history."""
        self.observe(image)
        prediction = self.policy_head(torch.stack(list(self._history))[None])[0, -1]
        return self.actions_from_prediction(prediction)

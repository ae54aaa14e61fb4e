"""The ORV world model behind VP²'s video-prediction-model interface.

VP² asks a model ``model(batch) -> {"rgb": (N, n_ctx - 1 + H, h, w, 3)}`` for ``N`` sampled
action sequences of ``n_ctx - 1`` context actions + ``H`` planned actions, given the last
``n_ctx`` observed frames (``batch["video"]``, floats in [0, 1]). ORV is image-to-video:

- it starts from the *last* context frame (earlier context frames carry nothing ORV can use);
- ``actions[t]`` moves frame ``t`` to ``t + 1`` (the data side's convention), so ``H``
  planned actions need ``H + 1`` frames; ORV makes ``F = 8k >= H + 1`` (zero actions pad
  the tail) and frames ``1 .. H`` are the prediction;
- the ``n_ctx - 1`` context positions of the output are the observed context frames (the
  same for every sample, so they shift every sample's cost equally and change no ranking);
- frames are resized to the model's resolution and back (VP² plans at 64x64);
- samples go through the pipeline in batches of ``max_batch_size``, each with its own
  seeded generator (reproducible plans).

Action width: VP²'s robosuite actions are 4-d (x, y, z, gripper), RoboDesk's 5-d (x, y, z,
wrist, gripper), ORV-2B's 7-d (x, y, z, roll, pitch, yaw, gripper; BridgeV2). A model whose
``action_dim`` equals the environment's takes the actions as they are (a model fine-tuned on
VP²'s data). A 7-d model gets them scattered into its layout by :data:`ACTION_LAYOUTS`
(unused dimensions zero); any other mismatch is an error naming both widths.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from orv_engine.pipelines import ORVPipeline

# Where each environment's action dimensions go in the 7-d BridgeV2 layout
# (0-2 xyz translation, 3-5 roll/pitch/yaw, 6 gripper); the rest stay zero.
ACTION_LAYOUTS: dict[int, list[int]] = {
    4: [0, 1, 2, 6],  # robosuite OSC_POSITION: dx, dy, dz, gripper
    5: [0, 1, 2, 5, 6],  # RoboDesk: dx, dy, dz, wrist rotation (about z = yaw), gripper
}


def action_adapter(env_dim: int, model_dim: int):
    """A function (..., env_dim) -> (..., model_dim) per the rules in the module docstring."""
    if env_dim == model_dim:
        return lambda a: np.asarray(a, dtype=np.float32)
    if model_dim == 7 and env_dim in ACTION_LAYOUTS:
        index = ACTION_LAYOUTS[env_dim]

        def to_bridge(a):
            a = np.asarray(a, dtype=np.float32)
            out = np.zeros((*a.shape[:-1], 7), dtype=np.float32)
            out[..., index] = a
            return out

        return to_bridge
    raise ValueError(
        f"the environment's actions are {env_dim}-d but the world model takes action_dim={model_dim}; "
        f"known layouts map {sorted(ACTION_LAYOUTS)}-d actions into a 7-d model. Fine-tune the model on "
        f"{env_dim}-d actions or add a layout to benchmarks.vp2.world_model.ACTION_LAYOUTS"
    )


class ORVWorldModel:
    """VP² model interface around an :class:`~orv_engine.pipelines.ORVPipeline`."""

    base_prediction_modality = "rgb"

    def __init__(self, pipe, action_dim: int, num_context: int = 2, num_inference_steps: int = 50,
                 max_batch_size: int = 50, prompt: str = "", action_guidance_scale: float = 1.0,
                 seed: int = 0):
        self.pipe = pipe
        cfg = pipe.transformer.config
        if list(cfg.condition_kinds):
            raise ValueError(
                f"the VP² world model is action-only (ORV stage 1) but this transformer takes conditions "
                f"{list(cfg.condition_kinds)}; VP² has no occupancy maps to give it"
            )
        self.adapt = action_adapter(action_dim, cfg.action_dim)
        self.action_dim, self.num_context = action_dim, num_context
        self.num_inference_steps, self.max_batch_size = num_inference_steps, max_batch_size
        self.prompt, self.action_guidance_scale, self.seed = prompt, action_guidance_scale, seed
        scale = pipe.vae_scale_factor_spatial
        self.height, self.width = cfg.sample_height * scale, cfg.sample_width * scale
        self.calls = 0

    @classmethod
    def from_pretrained(cls, path: str | Path, action_dim: int, device: str | None = None,
                        dtype: torch.dtype | None = None, **kwargs) -> "ORVWorldModel":
        if not Path(path).is_dir():
            raise FileNotFoundError(f"ORV pipeline folder {path} not found")
        pipe = ORVPipeline.from_pretrained(str(path), dtype=dtype) if dtype else ORVPipeline.from_pretrained(str(path))
        pipe.set_progress_bar_config(disable=True)
        if device:
            pipe.to(device)
        return cls(pipe, action_dim=action_dim, **kwargs)

    def predict(self, first_frames: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """(N, h, w, 3) in [0, 1] + (N, H, action_dim) -> (N, H, h, w, 3): frames after each action."""
        n, horizon = actions.shape[:2]
        out_h, out_w = first_frames.shape[1:3]
        num_frames = 8 * math.ceil((horizon + 1) / 8)
        model_actions = np.zeros((n, num_frames, self.pipe.transformer.config.action_dim), np.float32)
        model_actions[:, :horizon] = self.adapt(actions)
        images = torch.from_numpy(np.array(first_frames, dtype=np.float32)).permute(0, 3, 1, 2) * 2 - 1
        frames = []
        for start in range(0, n, self.max_batch_size):
            stop = min(start + self.max_batch_size, n)
            generators = [torch.Generator().manual_seed(self.seed * 1_000_003 + self.calls * 10_007 + i)
                          for i in range(start, stop)]
            video = self.pipe(
                image=images[start:stop], actions=model_actions[start:stop], prompt=self.prompt,
                height=self.height, width=self.width, num_inference_steps=self.num_inference_steps,
                action_guidance_scale=self.action_guidance_scale, generator=generators, output_type="pt",
            ).frames  # (B, F, 3, H, W) in [0, 1]
            video = video[:, 1 : horizon + 1].float()
            if video.shape[-2:] != (out_h, out_w):
                b, t = video.shape[:2]
                video = F.interpolate(video.flatten(0, 1), size=(out_h, out_w), mode="bilinear",
                                      antialias=True, align_corners=False).view(b, t, 3, out_h, out_w)
            frames.append(video.permute(0, 1, 3, 4, 2).clamp(0, 1).cpu().numpy())
        self.calls += 1
        return np.concatenate(frames)

    def __call__(self, batch: dict) -> dict:
        video = np.asarray(batch["video"], dtype=np.float32)
        actions = np.asarray(batch["actions"], dtype=np.float32)
        n_ctx = self.num_context
        if video.ndim != 5 or video.shape[1] < 1 or video.shape[-1] != 3:
            raise ValueError(f"batch['video'] must be (N, context, H, W, 3), got {video.shape}")
        if actions.ndim != 3 or actions.shape[0] != video.shape[0] or actions.shape[-1] != self.action_dim:
            raise ValueError(
                f"batch['actions'] must be (N={video.shape[0]}, context-1+horizon, {self.action_dim}), got {actions.shape}"
            )
        predicted = self.predict(video[:, -1], actions[:, n_ctx - 1 :])
        context = video[:, video.shape[1] - (n_ctx - 1) :]
        return {"rgb": np.concatenate([context, predicted], axis=1)}

"""ORV-MV training: 1-3 views per sample, the view-attention model, the same objective.

What differs from the single-view :class:`~orv_engine.training.trainer.Trainer`:

- data (:mod:`.data_mv`): multi-view samples with the paper's view sampling and side-view
  conditions; one sample per process and micro-batch (samples have different numbers of
  views); clips are VAE-encoded online.
- model: the transformer folder (single-view ORV, stock CogVideoX, or ORV-MV) becomes an
  :class:`ORVMultiViewTransformer3DModel` (a single-view one through ``from_single_view``:
  the first step computes what the single-view model computes, view by view).
- loss (:func:`multiview_diffusion_loss`): the v-prediction loss of
  :mod:`orv_engine.training.losses` with one timestep, one action sequence and one null-action
  draw per sample shared by its views; noise and first-frame dropout per view.

Everything else (accelerate, bf16 autocast, checkpoints with exact resume, EMA, logs) is
the single-view trainer's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from orv_engine.training.data_mv import MultiViewStream
from orv_engine.training.losses import _rand, _randn
from orv_engine.training.trainer import Trainer


# ---------------------------------------------------------------- objective


@dataclass
class MultiViewLossInputs:
    video_latents: torch.Tensor  # (B, V, L, C, h, w)
    image_latents: torch.Tensor  # (B, V, 1, C, h, w) noise-augmented first frames
    actions: torch.Tensor  # (B, r*L, 7), shared by the views
    prompt_embeds: torch.Tensor  # (B, S, D)
    condition_latents: torch.Tensor | None = None  # (B, V, L, k*C, h, w)
    view_ids: torch.Tensor | None = None  # (B, V)


def multiview_diffusion_loss(transformer, scheduler, inputs: MultiViewLossInputs, generator: torch.Generator, *,
                             image_dropout: float = 0.05, null_action_prob: float = 0.1) -> tuple[torch.Tensor, dict]:
    """The weighted v-prediction loss (as :func:`orv_engine.training.losses.diffusion_loss`) over views."""
    x0 = inputs.video_latents
    b, v, num_latent_frames = x0.shape[:3]
    device, dtype = x0.device, x0.dtype
    t = torch.randint(0, scheduler.config.num_train_timesteps, (b,), generator=generator).to(device)
    noise = _randn(x0.shape, generator, device, dtype)
    drop_image = _rand((b, v), generator, device) < image_dropout
    null_action = _rand((b,), generator, device) < null_action_prob

    image = inputs.image_latents.to(dtype) * (~drop_image).to(dtype).view(b, v, 1, 1, 1, 1)
    image = torch.cat([image, image.new_zeros(b, v, num_latent_frames - 1, *image.shape[3:])], dim=2)
    t_views = t.repeat_interleave(v)
    noisy = scheduler.add_noise(x0.flatten(0, 1), noise.flatten(0, 1), t_views).reshape(x0.shape)
    v_pred = transformer(
        hidden_states=torch.cat([noisy, image], dim=3), encoder_hidden_states=inputs.prompt_embeds, timestep=t,
        actions=inputs.actions, condition_latents=inputs.condition_latents, null_action_mask=null_action,
        view_ids=inputs.view_ids, return_dict=False,
    )[0]
    x0_pred = scheduler.get_velocity(v_pred.flatten(0, 1).float(), noisy.flatten(0, 1).float(), t_views)
    weights = (1.0 / (1.0 - scheduler.alphas_cumprod.to(device)[t_views].float())).view(b * v, 1, 1, 1, 1)
    per_view = (weights * (x0_pred - x0.flatten(0, 1).float()) ** 2).reshape(b, v, -1).mean(dim=2)
    return per_view.mean(), {"timesteps": t, "null_action": null_action, "drop_image": drop_image}


def multiview_batch_latents(vae, batch: dict, kinds, generator, loss_config, device, dtype) -> MultiViewLossInputs:
    """A stream batch (B=1 sample of V views, pixels) -> latents for the loss (no prompt yet)."""
    from orv_engine.training.latents import encode_conditions, encode_first_frames, encode_posterior, sample_latents

    video = batch["video"]  # (B, V, T, 3, H, W)
    b, v = video.shape[:2]
    flat = video.flatten(0, 1).to(device)
    dist = encode_posterior(vae, flat.permute(0, 2, 1, 3, 4))
    video_latents = sample_latents(vae, dist.mean, dist.logvar, generator)
    image_latents = encode_first_frames(vae, flat[:, 0], generator, loss_config.image_noise_mean,
                                        loss_config.image_noise_std)
    conditions = None
    if kinds:
        conds = {k: c.flatten(0, 1).to(device) for k, c in batch["conditions"].items()}
        conditions = encode_conditions(vae, conds, kinds)
        conditions = conditions.reshape(b, v, *conditions.shape[1:]).to(device, dtype)
    return MultiViewLossInputs(
        video_latents=video_latents.reshape(b, v, *video_latents.shape[1:]).to(device, dtype),
        image_latents=image_latents.reshape(b, v, *image_latents.shape[1:]).to(device, dtype),
        actions=batch["actions"].to(device, dtype), prompt_embeds=None, condition_latents=conditions,
    )


# ---------------------------------------------------------------- trainer


def load_multiview_transformer(path, condition_kinds, num_views: int):
    """ORV-MV from an ORV-MV folder, or from a single-view ORV / CogVideoX folder (copied view modules)."""
    import json

    from orv_engine.models.transformer_orv_mv import ORVMultiViewTransformer3DModel
    from orv_engine.training.components import load_transformer

    path = Path(path).expanduser()
    saved = json.loads((path / "config.json").read_text())
    if saved.get("_class_name") == ORVMultiViewTransformer3DModel.__name__:
        model = ORVMultiViewTransformer3DModel.from_pretrained(path)
        if list(model.condition_kinds) != list(condition_kinds) or model.config.num_views != num_views:
            raise ValueError(f"{path}: an ORV-MV model with condition_kinds {model.condition_kinds} and num_views "
                             f"{model.config.num_views}; the config asks for {list(condition_kinds)} / {num_views}")
        return model
    return ORVMultiViewTransformer3DModel.from_single_view(load_transformer(path, condition_kinds), num_views)


class MultiViewTrainer(Trainer):
    """:class:`Trainer` on multi-view samples; takes a :class:`~orv_engine.training.config_mv.MultiViewConfig`.

    Only the hooks differ: the transformer (ORV-MV), which parameters train
    (``multiview.trainable``), the data, the loss of a micro-batch and the saved pipeline."""

    program = "orv-mv-train"

    def _load_components(self):
        from functools import partial

        from orv_engine.training.components import load_components

        cfg = self.config
        return load_components(cfg.model.pretrained_path, cfg.model.transformer_path, cfg.model.condition_kinds,
                               transformer_loader=partial(load_multiview_transformer,
                                                          num_views=cfg.multiview.num_views))

    def _is_trainable(self, name: str) -> bool:
        return self.config.multiview.trainable != "view" or name.startswith("view_attention_blocks.")

    def _setup_data(self):
        self.stream = MultiViewStream(self.config, self.accelerator.process_index, self.accelerator.num_processes)
        self.val_clips = []

    def _micro_batch_loss(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        cfg, acc = self.config, self.accelerator
        inputs = multiview_batch_latents(self.components.vae, batch, cfg.model.condition_kinds, generator, cfg.loss,
                                         acc.device, self.weight_dtype)
        inputs.prompt_embeds = self._prompt_embeds(batch)
        with acc.autocast():
            loss, _ = multiview_diffusion_loss(self.transformer, self.components.scheduler, inputs, generator,
                                               image_dropout=cfg.loss.image_dropout,
                                               null_action_prob=cfg.loss.null_action_prob)
        return loss, {"views": batch["views"][0]}

    def _log_fields(self, details: list[dict]) -> dict:
        return {"num_views": float(np.mean([len(d["views"].split("+")) for d in details]))}

    def _pipeline_class(self):
        from orv_engine.pipelines.pipeline_orv_mv import ORVMultiViewPipeline

        return ORVMultiViewPipeline


if __name__ == "__main__":  # accelerate launch -m orv_engine.training.trainer_mv CONFIG ...
    from orv_engine.training.cli import main_multiview

    raise SystemExit(main_multiview())

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

from functools import partial
from pathlib import Path

import numpy as np
import torch

from orv_engine.models.transformer_orv_mv import ORVMultiViewTransformer3DModel
from orv_engine.pipelines.pipeline_orv_mv import ORVMultiViewPipeline
from orv_engine.training.components import load_components
from orv_engine.training.data_mv import MultiViewStream
from orv_engine.training.latents import encode_conditions, encode_first_frames, encode_posterior, sample_latents
from orv_engine.training.losses import LossInputs, diffusion_loss
from orv_engine.training.trainer import Trainer


# ---------------------------------------------------------------- objective


# ORV-MV's batch is the single-view one with a views axis (see :mod:`.losses`).
MultiViewLossInputs = LossInputs


def multiview_diffusion_loss(transformer, scheduler, inputs: LossInputs, generator: torch.Generator, *,
                             image_dropout: float = 0.05, null_action_prob: float = 0.1) -> tuple[torch.Tensor, dict]:
    """The single-view loss (:func:`orv_engine.training.losses.diffusion_loss`) on a batch with a views axis."""
    if inputs.video_latents.ndim != 6:
        raise ValueError(f"multi-view video latents must be (B, V, L, C, h, w), got {tuple(inputs.video_latents.shape)}")
    return diffusion_loss(transformer, scheduler, inputs, generator, image_dropout=image_dropout,
                          null_action_prob=null_action_prob)


def multiview_batch_latents(vae, batch: dict, kinds, generator, loss_config, device, dtype,
                            sample_conditions: bool = False) -> MultiViewLossInputs:
    """A stream batch (B=1 sample of V views, pixels) -> latents for the loss (no prompt yet)."""
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
        conditions = encode_conditions(vae, conds, kinds, generator if sample_conditions else None)
        conditions = conditions.reshape(b, v, *conditions.shape[1:]).to(device, dtype)
    return MultiViewLossInputs(
        video_latents=video_latents.reshape(b, v, *video_latents.shape[1:]).to(device, dtype),
        image_latents=image_latents.reshape(b, v, *image_latents.shape[1:]).to(device, dtype),
        actions=batch["actions"].to(device, dtype), prompt_embeds=None, condition_latents=conditions,
    )


# ---------------------------------------------------------------- trainer


def load_multiview_transformer(path, condition_kinds, num_views: int):
    """ORV-MV from any folder ORV's loader knows: an ORV-MV folder as saved, a single-view
    ORV / CogVideoX / official ORV folder with view modules copied from its blocks."""
    return ORVMultiViewTransformer3DModel.from_pretrained(Path(path).expanduser(), condition_kinds=list(condition_kinds),
                                                         num_views=num_views)


class MultiViewTrainer(Trainer):
    """:class:`Trainer` on multi-view samples; takes a :class:`~orv_engine.training.config_mv.MultiViewConfig`.

    Only the hooks differ: the transformer (ORV-MV), which parameters train
    (``multiview.trainable``), the data, the loss of a micro-batch and the saved pipeline."""

    program = "orv-mv-train"
    pipeline_class = ORVMultiViewPipeline

    def _load_components(self):
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
                                         acc.device, self.weight_dtype,
                                         sample_conditions=cfg.data.condition_encoding == "orv-official")
        inputs.prompt_embeds = self._prompt_embeds(batch)
        with acc.autocast():
            loss, _ = multiview_diffusion_loss(self.transformer, self.components.scheduler, inputs, generator,
                                               image_dropout=cfg.loss.image_dropout,
                                               null_action_prob=cfg.loss.null_action_prob)
        return loss, {"views": batch["views"][0]}

    def _log_fields(self, details: list[dict]) -> dict:
        return {"num_views": float(np.mean([len(d["views"].split("+")) for d in details]))}

"""ORV-MV's transformer: ORV with a view-attention module before every block.

A thin layer over :class:`ORVTransformer3DModel`: the view modules are part of the ORV
model when its config sets ``num_views`` (as upstream's ``multiview`` flag), and this class
only takes the multi-view input layout ``(B, V, L, 2C, H, W)``, repeats what a sample's
views share (text, timestep, actions) and calls the same forward on the ``B*V`` videos.
Loading is ORV's one loader: an ORV-MV folder loads as saved, a single-view ORV, CogVideoX
or official ORV folder gets view modules copied from its blocks (zero ``proj_out``: the
new model computes what the single-view one computes, view by view).
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  (a saved pipeline's library module)

from orv_engine.models.checkpoint_files import CheckpointError
from orv_engine.models.loading import VIEW_MODULE_PREFIX, load_into
from orv_engine.models.transformer_orv import ORVTransformer3DModel


class ORVMultiViewTransformer3DModel(ORVTransformer3DModel):
    """ORV with view attention (paper Sec. 3.2.1); ``config.num_views``: the most views a sample may have."""

    @classmethod
    def from_single_view(cls, model: ORVTransformer3DModel, num_views: int = 3) -> "ORVMultiViewTransformer3DModel":
        """A multi-view model around a single-view ORV model: every weight copied, each view
        module started from its block (same outputs, view by view)."""
        if isinstance(model, ORVMultiViewTransformer3DModel) or model.view_attention_blocks is not None:
            raise TypeError("the model is already multi-view")
        if not isinstance(model, ORVTransformer3DModel):
            raise TypeError(f"expected an ORVTransformer3DModel, got {type(model).__name__}")
        config = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
        config["num_views"] = num_views
        # Built for real (not on "meta"): CogVideoX's positional table is a non-persistent buffer.
        mv = torch.nn.Module.to(cls.from_config(config), device=model.device)
        state = dict(model.state_dict())
        if any(k.startswith(VIEW_MODULE_PREFIX) for k in state):
            raise CheckpointError("single-view weights hold view modules")
        load_into(mv, state, source=f"{type(model).__name__} instance", creatable=(VIEW_MODULE_PREFIX,))
        mv = torch.nn.Module.to(mv, dtype=model.dtype)
        return mv.train(model.training)

    def _check_views(self, hidden_states, condition_latents, view_ids, actions, null_action_mask):
        if hidden_states.ndim != 6:
            raise ValueError(
                "hidden_states of the multi-view model must be (batch, views, latent_frames, channels, height, "
                f"width), got shape {tuple(hidden_states.shape)}; add a views axis of size 1 for one view"
            )
        b, v = hidden_states.shape[:2]
        if v > self.config.num_views:
            raise ValueError(f"{v} views given, the model has positions for num_views={self.config.num_views}")
        if condition_latents is not None and (condition_latents.ndim != 6 or tuple(condition_latents.shape[:2]) != (b, v)):
            raise ValueError(
                f"condition_latents of shape {tuple(condition_latents.shape)} must be (batch={b}, views={v}, "
                "latent_frames, k*C, height, width), one set per view"
            )
        if view_ids is not None:
            if tuple(view_ids.shape) != (b, v):
                raise ValueError(f"view_ids of shape {tuple(view_ids.shape)} must be (batch={b}, views={v})")
            if int(view_ids.min()) < 0 or int(view_ids.max()) >= self.config.num_views:
                raise ValueError(f"view_ids must be in [0, {self.config.num_views}), got {view_ids.tolist()}")
        if actions is not None and actions.shape[0] != b:
            raise ValueError(f"actions have batch {actions.shape[0]}, hidden_states {b}: one action sequence per "
                             "sample, shared by its views")
        if null_action_mask is not None and null_action_mask.shape[0] != b:
            raise ValueError(f"null_action_mask has {null_action_mask.shape[0]} entries for {b} samples")

    # The signature is ORVTransformer3DModel.forward's plus ``view_ids`` (a deliberate override:
    # callers see every argument); the body only adapts the layout and calls ``forward_views``.
    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: int | float | torch.LongTensor,
        actions: torch.Tensor | None = None,
        condition_latents: torch.Tensor | None = None,
        null_action_mask: torch.Tensor | None = None,
        view_ids: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        ofs: int | float | torch.LongTensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ) -> tuple[torch.Tensor] | Transformer2DModelOutput:
        """Predict the denoising target of (B, V, L, in_channels, H, W) latents; returns (B, V, L, C, H, W).

        Args:
            encoder_hidden_states: (B, S, D) text embeddings, shared by a sample's views.
            timestep: scalar or (B,), shared by a sample's views.
            actions: (B, r*L, action_dim) chunk-aligned, shared by a sample's views, or ``None``.
            condition_latents: (B, V, L, k*C, H, W), each view's own condition latents.
            null_action_mask: (B,) bool.
            view_ids: (B, V) long, the view index of Eq. 3's ``PE_v`` for each view;
                default ``0..V-1`` in the given order (upstream's only layout).
        """
        self._check_views(hidden_states, condition_latents, view_ids, actions, null_action_mask)
        b, v = hidden_states.shape[:2]

        def per_view(x):
            return None if x is None else x.repeat_interleave(v, dim=0)

        flat = hidden_states.flatten(0, 1)
        text = per_view(encoder_hidden_states)
        conditions = None if condition_latents is None else condition_latents.flatten(0, 1)
        self._check_inputs(flat, text, conditions)
        timestep = torch.as_tensor(timestep, device=hidden_states.device)
        timestep = timestep.expand(b) if timestep.ndim == 0 else timestep
        output = self.forward_views(
            flat, text, per_view(timestep), per_view(actions), conditions, per_view(null_action_mask), v, view_ids,
            per_view(timestep_cond), ofs, image_rotary_emb, attention_kwargs,
        )
        output = output.reshape(b, v, *output.shape[1:])
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)

"""ORV-MV's transformer: ORV with a view-attention module before every block.

Why a subclass of :class:`ORVTransformer3DModel`: every single-view weight keeps its name,
so a single-view ORV checkpoint loads into the multi-view model unchanged
(:meth:`ORVMultiViewTransformer3DModel.from_single_view` / ``from_pretrained`` on a
single-view folder) and only ``view_attention_blocks.*`` are new (:mod:`.view_attention`,
copied from each block's attention, zero gate: a fresh multi-view model computes exactly
what the single-view model computes, view by view).

Input layout: ``(B, V, L, 2C, H, W)``, a batch of ``B`` samples of ``V`` views each (all
samples of a batch have the same number of views; views of one sample share timestep,
text and actions). Inside, the views are flattened to ``B*V`` videos for everything
per-view (patch embedding, the single-view blocks, the action-expert AdaLN, the output)
and regrouped by latent frame for the view attention. ``V`` may be anything from 1 to
``config.num_views`` (the number of view positions of Eq. 3).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  (a saved pipeline's library module)

from orv_engine.models.action_adaln import final_adaln, orv_block_forward
from orv_engine.models.checkpoint_files import CheckpointError
from orv_engine.models.transformer_orv import ORVTransformer3DModel
from orv_engine.models.view_attention import ViewAttention, view_position_table

VIEW_MODULE_PREFIX = "view_attention_blocks."


class ORVMultiViewTransformer3DModel(ORVTransformer3DModel):
    """ORV with view attention (paper Sec. 3.2.1). ``num_views``: the most views a sample may have.

    Other parameters as :class:`ORVTransformer3DModel`.
    """

    _skip_layerwise_casting_patterns = ["patch_embed", "norm", "action_encoder", "condition_fusion"]

    @register_to_config
    def __init__(
        self,
        num_attention_heads: int = 30,
        attention_head_dim: int = 64,
        in_channels: int = 32,
        out_channels: int | None = 16,
        flip_sin_to_cos: bool = True,
        freq_shift: int = 0,
        time_embed_dim: int = 512,
        ofs_embed_dim: int | None = None,
        text_embed_dim: int = 4096,
        num_layers: int = 30,
        dropout: float = 0.0,
        attention_bias: bool = True,
        sample_width: int = 90,
        sample_height: int = 60,
        sample_frames: int = 49,
        patch_size: int = 2,
        patch_size_t: int | None = None,
        temporal_compression_ratio: int = 4,
        max_text_seq_length: int = 226,
        activation_fn: str = "gelu-approximate",
        timestep_activation_fn: str = "silu",
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        spatial_interpolation_scale: float = 1.875,
        temporal_interpolation_scale: float = 1.0,
        use_rotary_positional_embeddings: bool = False,
        use_learned_positional_embeddings: bool = False,
        patch_bias: bool = True,
        action_dim: int = 7,
        action_chunk: int = 4,
        action_embed_dim: int | None = None,
        action_hidden_dim: int | None = None,
        condition_kinds: tuple[str, ...] | list[str] = (),
        condition_hidden_dim: int | None = None,
        num_views: int = 3,
    ):
        if num_views < 1:
            raise ValueError(f"num_views must be >= 1, got {num_views}")
        super().__init__(
            num_attention_heads=num_attention_heads, attention_head_dim=attention_head_dim,
            in_channels=in_channels, out_channels=out_channels, flip_sin_to_cos=flip_sin_to_cos,
            freq_shift=freq_shift, time_embed_dim=time_embed_dim, ofs_embed_dim=ofs_embed_dim,
            text_embed_dim=text_embed_dim, num_layers=num_layers, dropout=dropout, attention_bias=attention_bias,
            sample_width=sample_width, sample_height=sample_height, sample_frames=sample_frames,
            patch_size=patch_size, patch_size_t=patch_size_t, temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length, activation_fn=activation_fn,
            timestep_activation_fn=timestep_activation_fn, norm_elementwise_affine=norm_elementwise_affine,
            norm_eps=norm_eps, spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_rotary_positional_embeddings=use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings, patch_bias=patch_bias,
            action_dim=action_dim, action_chunk=action_chunk, action_embed_dim=action_embed_dim,
            action_hidden_dim=action_hidden_dim, condition_kinds=condition_kinds,
            condition_hidden_dim=condition_hidden_dim,
        )
        inner_dim = num_attention_heads * attention_head_dim
        self.view_attention_blocks = torch.nn.ModuleList([
            ViewAttention(inner_dim, num_attention_heads, attention_head_dim, time_embed_dim,
                          norm_elementwise_affine, norm_eps, attention_bias)
            for _ in range(num_layers)
        ])
        for view_block, block in zip(self.view_attention_blocks, self.transformer_blocks):
            view_block.copy_from_block(block)

    # ------------------------------------------------------------------ building

    @classmethod
    def from_single_view(cls, model: ORVTransformer3DModel, num_views: int = 3) -> "ORVMultiViewTransformer3DModel":
        """A multi-view model around a single-view ORV model: every weight copied, each view
        module copied from its block's attention with a zero gate (same outputs, view by view)."""
        if isinstance(model, ORVMultiViewTransformer3DModel):
            raise TypeError("the model is already multi-view")
        if not isinstance(model, ORVTransformer3DModel):
            raise TypeError(f"expected an ORVTransformer3DModel, got {type(model).__name__}")
        config = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
        config["num_views"] = num_views
        # Built for real (not on "meta"): CogVideoX's positional table is a non-persistent buffer.
        mv = torch.nn.Module.to(cls.from_config(config), device=model.device)
        state = model.state_dict()
        result = mv.load_state_dict(state, strict=False)
        unexpected = list(result.unexpected_keys)
        missing = [k for k in result.missing_keys if not k.startswith(VIEW_MODULE_PREFIX)]
        if unexpected or missing:
            raise CheckpointError(f"single-view weights do not fit the multi-view model: missing {missing}, "
                                  f"unexpected {unexpected}")
        for view_block, block in zip(mv.view_attention_blocks, mv.transformer_blocks):
            view_block.copy_from_block(block)
        mv = torch.nn.Module.to(mv, dtype=model.dtype)
        return mv.train(model.training)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load an ORV-MV folder, or build one from a single-view ORV / CogVideoX folder.

        A folder saved by this class loads as saved. A single-view ORV folder (or a stock
        CogVideoX folder, converted as :meth:`ORVTransformer3DModel.from_pretrained` does) is
        loaded and passed through :meth:`from_single_view` with ``num_views`` (keyword, default 3).
        """
        folder = Path(pretrained_model_name_or_path)
        if kwargs.get("subfolder"):
            folder = folder / kwargs["subfolder"]
        config_file = folder / "config.json"
        if not config_file.is_file():
            raise CheckpointError(f"{folder} has no config.json; is it a diffusers transformer folder?")
        saved = json.loads(config_file.read_text())
        if saved.get("_class_name") == cls.__name__:
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        num_views = kwargs.pop("num_views", 3)
        single = ORVTransformer3DModel.from_pretrained(pretrained_model_name_or_path, **kwargs)
        return cls.from_single_view(single, num_views=num_views).eval()

    # ------------------------------------------------------------------ forward

    def view_positions(self, view_ids: torch.Tensor, grid_height: int, grid_width: int) -> torch.Tensor:
        """(B, V) view indices -> (B, V, P, D) positions of Eq. 3 (PE_v (+) PE_s)."""
        cfg = self.config
        inner_dim = cfg.num_attention_heads * cfg.attention_head_dim
        key = (grid_height, grid_width, view_ids.device)
        cache = self.__dict__.setdefault("_view_position_cache", {})
        if key not in cache:
            cache.clear()
            cache[key] = view_position_table(inner_dim, cfg.num_views, grid_height, grid_width,
                                             cfg.spatial_interpolation_scale, 1.0, device=view_ids.device)
        return cache[key][view_ids]

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
            actions: (B, r*L, action_dim) chunk-aligned, shared by a sample's views (they
                feed the single-view blocks only), or ``None`` for the null-action token.
            condition_latents: (B, V, L, k*C, H, W), each view's own condition latents.
            null_action_mask: (B,) bool.
            view_ids: (B, V) long, the view index of Eq. 3's ``PE_v`` for each view;
                default ``0..V-1`` in the given order.
        """
        self._check_views(hidden_states, condition_latents, view_ids, actions, null_action_mask)
        b, v, num_frames, _, height, width = hidden_states.shape
        flat = hidden_states.reshape(b * v, *hidden_states.shape[2:])
        text = encoder_hidden_states.repeat_interleave(v, dim=0)
        flat_conditions = None if condition_latents is None else condition_latents.reshape(b * v, *condition_latents.shape[2:])
        self._check_inputs(flat, text, flat_conditions)
        if view_ids is None:
            view_ids = torch.arange(v, device=hidden_states.device).expand(b, v)
        view_ids = view_ids.to(hidden_states.device)

        # 1. Time embedding per sample; action tokens per sample; both repeated per view.
        timestep = torch.as_tensor(timestep, device=hidden_states.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(b)
        t_emb = self.time_proj(timestep).to(dtype=hidden_states.dtype)
        emb = self.time_embedding(t_emb, timestep_cond)
        if self.ofs_embedding is not None:
            emb = emb + self.ofs_embedding(self.ofs_proj(ofs).to(dtype=hidden_states.dtype))
        action_tokens = self.action_encoder(actions, b, num_frames, null_action_mask, dtype=emb.dtype)
        vision_cond = F.silu(emb[:, None, :] + action_tokens).expand(b, -1, -1)  # (B, L, T)
        time_cond = F.silu(emb).expand(b, -1)  # (B, T): the text AdaLN input, and the view modules'
        vision_cond = vision_cond.repeat_interleave(v, dim=0)
        text_cond = time_cond.repeat_interleave(v, dim=0)

        # 2. Per-view condition fusion and patch embedding (stock).
        if flat_conditions is not None:
            c = self.config.out_channels
            noisy = self.condition_fusion(flat[:, :, :c], flat_conditions)
            flat = torch.cat([noisy, flat[:, :, c:]], dim=2)
        tokens = self.embedding_dropout(self.patch_embed(text, flat))
        text_seq_length = text.shape[1]
        encoder_hidden_states, tokens = tokens[:, :text_seq_length], tokens[:, text_seq_length:]
        p = self.config.patch_size
        positions = self.view_positions(view_ids, height // p, width // p).to(tokens.dtype)

        # 3. Per block: view attention (across views, per latent frame), then the single-view block.
        for view_block, block in zip(self.view_attention_blocks, self.transformer_blocks):
            args = (tokens, encoder_hidden_states, vision_cond, text_cond, image_rotary_emb, attention_kwargs)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                tokens = self._gradient_checkpointing_func(view_block, tokens, time_cond, v, positions)
                tokens, encoder_hidden_states = self._gradient_checkpointing_func(
                    functools.partial(orv_block_forward, block), tokens, *args[1:])
            else:
                tokens = view_block(tokens, time_cond, v, positions)
                tokens, encoder_hidden_states = orv_block_forward(block, tokens, *args[1:])

        # 4. Final norms and projection, unpatchify, regroup the views.
        tokens = self.norm_final(tokens)
        tokens = final_adaln(self.norm_out, tokens, vision_cond)
        tokens = self.proj_out(tokens)
        output = tokens.reshape(b * v, num_frames, height // p, width // p, -1, p, p)
        output = output.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)
        output = output.reshape(b, v, *output.shape[1:])
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)

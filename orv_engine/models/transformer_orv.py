"""ORV's transformer: CogVideoX's, plus actions (chunked, action-expert AdaLN), visual
conditions fused in token space, and (ORV-MV) view attention.

Why a subclass: ORV is a fine-tune of CogVideoX-2B, so every pretrained module is kept
with its diffusers name and only these are added (paper Sec. 3.2, Listing 1, Eq. 2,
Table 8), each the same function as the official code (OrangeSodahub/ORV):

- ``action_encoder``: chunk-aligned actions (B, r*L, 7) -> one token per latent frame
  (:mod:`.action_encoder`);
- the action-expert AdaLN (:mod:`.action_adaln`): vision tokens of latent frame ``j`` are
  modulated from ``silu(temb + action_token_j)`` with the pretrained vision rows of each
  AdaLN, text tokens from ``silu(temb)``; no new AdaLN weights;
- ``condition_fusion``: the VAE latents of ``k`` condition kinds through the model's own
  patch embedding, fused into the vision tokens by a zero-initialised linear layer
  (:mod:`.condition_fusion`);
- ``view_attention_blocks`` when ``num_views`` is set (ORV-MV, :mod:`.view_attention`).

Input: (B, L, 2C, H, W) = noisy latents and first-frame latents (image-to-video), so the
patch embedding takes 32 channels where CogVideoX-2B (text-to-video) takes 16.

Loading (:meth:`ORVTransformer3DModel.from_pretrained`, one loader for every path, the
rules in :mod:`.loading`): a
folder of this class loads as saved; a stock CogVideoX folder is converted (16 -> 32 input
channels with zero new channels, fresh zero-initialised ORV modules: the converted model
computes exactly what CogVideoX computes for zero first-frame latents and null actions);
an official ORV folder is converted by :mod:`.upstream_orv`; a single-view folder loaded
into the multi-view class gets view modules copied from its blocks. Every path checks
every key and shape before any weight is used.
"""

from __future__ import annotations

import functools
from typing import Any

import torch
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.models.modeling_outputs import Transformer2DModelOutput
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  (see below)
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXTransformer3DModel
from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

from orv_engine.models.action_adaln import final_adaln, orv_block_forward
from orv_engine.models.action_encoder import ChunkedActionEncoder
from orv_engine.models.condition_fusion import ConditionFusion
from orv_engine.models.loading import NEW_MODULE_PREFIXES, load_into, load_pretrained, orv_config_from_stock
from orv_engine.preprocessing import ORVPreprocessing
from orv_engine.models.view_attention import ViewAttention, view_position_table

# CogVideoX's rotary tables are laid out for a 480x720 base video (diffusers' pipelines).
ROPE_BASE_SIZE = (480, 720)
VAE_SCALE_FACTOR_SPATIAL = 8

# ``ModelMixin`` is imported above on purpose: a saved pipeline names this module as the
# transformer's library, and diffusers' loader looks the loadable base classes up in it.


class ORVTransformer3DModel(CogVideoXTransformer3DModel):
    """CogVideoX transformer with chunked action conditioning and visual-condition fusion.

    ORV parameters (the rest are ``CogVideoXTransformer3DModel``'s):
        action_dim: size of one action (7-DoF end-effector delta + gripper).
        action_chunk: ``r``, actions per latent frame (the VAE's temporal compression).
        action_embed_dim: size of an action token; must equal ``time_embed_dim`` (added to it).
        action_hidden_dim: hidden width of the action MLP (default ``4 * time_embed_dim``).
        condition_kinds: names of the visual conditions, in fusion order (e.g. depth, semantics).
        modulate_text_tokens: CogVideoX-2B's AdaLN with text rows (True), or vision rows only
            and blocks that never see the text (upstream's 1.4B models trained from scratch).
        num_views: None for single-view ORV; the number of view positions of ORV-MV.
        preprocessing: the inputs this checkpoint expects (:class:`.preprocessing.ORVPreprocessing`).
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
        modulate_text_tokens: bool = True,
        num_views: int | None = None,
        preprocessing: dict | None = None,
    ):
        if patch_size_t is not None:
            raise ValueError(
                "ORV conditions one action token per latent frame; temporal patching (patch_size_t, "
                "CogVideoX 1.5) would merge latent frames and is not supported"
            )
        if action_embed_dim is not None and action_embed_dim != time_embed_dim:
            raise ValueError(
                f"action_embed_dim ({action_embed_dim}) must equal time_embed_dim ({time_embed_dim}): "
                "action tokens are added to the time embedding"
            )
        if out_channels is None:
            out_channels = in_channels
        if in_channels not in (out_channels, 2 * out_channels):
            raise ValueError(
                f"in_channels ({in_channels}) must be 2 * out_channels ({2 * out_channels}: noisy + first-frame "
                f"latents) or out_channels"
            )
        if action_chunk != temporal_compression_ratio:
            raise ValueError(
                f"action_chunk ({action_chunk}) must equal the VAE's temporal compression "
                f"temporal_compression_ratio ({temporal_compression_ratio}): one chunk per latent frame"
            )
        if num_views is not None and num_views < 1:
            raise ValueError(f"num_views must be None (single view) or >= 1, got {num_views}")
        ORVPreprocessing.from_dict(preprocessing)  # validate early: a bad record fails at load
        super().__init__(
            num_attention_heads=num_attention_heads,
            attention_head_dim=attention_head_dim,
            in_channels=in_channels,
            out_channels=out_channels,
            flip_sin_to_cos=flip_sin_to_cos,
            freq_shift=freq_shift,
            time_embed_dim=time_embed_dim,
            ofs_embed_dim=ofs_embed_dim,
            text_embed_dim=text_embed_dim,
            num_layers=num_layers,
            dropout=dropout,
            attention_bias=attention_bias,
            sample_width=sample_width,
            sample_height=sample_height,
            sample_frames=sample_frames,
            patch_size=patch_size,
            patch_size_t=patch_size_t,
            temporal_compression_ratio=temporal_compression_ratio,
            max_text_seq_length=max_text_seq_length,
            activation_fn=activation_fn,
            timestep_activation_fn=timestep_activation_fn,
            norm_elementwise_affine=norm_elementwise_affine,
            norm_eps=norm_eps,
            spatial_interpolation_scale=spatial_interpolation_scale,
            temporal_interpolation_scale=temporal_interpolation_scale,
            use_rotary_positional_embeddings=use_rotary_positional_embeddings,
            use_learned_positional_embeddings=use_learned_positional_embeddings,
            patch_bias=patch_bias,
        )
        inner_dim = num_attention_heads * attention_head_dim
        if not modulate_text_tokens:  # vision rows only (upstream's modulate_encoder_hidden_states=False)
            for block in self.transformer_blocks:
                block.norm1.linear = torch.nn.Linear(time_embed_dim, 3 * inner_dim, bias=True)
                block.norm2.linear = torch.nn.Linear(time_embed_dim, 3 * inner_dim, bias=True)
        self.action_encoder = ChunkedActionEncoder(
            action_dim=action_dim,
            action_chunk=action_chunk,
            embed_dim=time_embed_dim,
            hidden_dim=action_hidden_dim or 4 * time_embed_dim,
        )
        kinds = list(condition_kinds or ())
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"condition_kinds has duplicates: {kinds}")
        self.condition_fusion = ConditionFusion(inner_dim, len(kinds)) if kinds else None
        self.view_attention_blocks = None
        if num_views is not None:
            self.view_attention_blocks = torch.nn.ModuleList([
                ViewAttention(inner_dim, num_attention_heads, attention_head_dim, time_embed_dim,
                              norm_elementwise_affine, norm_eps, attention_bias, modulate_text_tokens)
                for _ in range(num_layers)
            ])
            for view_block, block in zip(self.view_attention_blocks, self.transformer_blocks):
                view_block.copy_from_block(block)

    # ------------------------------------------------------------------ properties

    @property
    def condition_kinds(self) -> list[str]:
        return list(self.config.condition_kinds or ())

    @property
    def preprocessing(self) -> ORVPreprocessing:
        """The input conventions this checkpoint was trained with (defaults: this project's)."""
        return ORVPreprocessing.from_dict(self.config.preprocessing)

    # ------------------------------------------------------------------ forward

    def _check_inputs(self, hidden_states, encoder_hidden_states, condition_latents):
        cfg = self.config
        if hidden_states.ndim != 5:
            raise ValueError(
                f"hidden_states must be (batch, latent_frames, channels, height, width), got shape "
                f"{tuple(hidden_states.shape)}"
            )
        b, f, c, h, w = hidden_states.shape
        if c != cfg.in_channels:
            what = f"{cfg.out_channels} noisy + {cfg.out_channels} first-frame latent channels"
            raise ValueError(f"hidden_states has {c} channels, the model takes in_channels={cfg.in_channels} ({what})")
        if h % cfg.patch_size or w % cfg.patch_size:
            raise ValueError(f"latent size {h}x{w} must be a multiple of patch_size={cfg.patch_size}")
        if encoder_hidden_states.shape[-1] != cfg.text_embed_dim:
            raise ValueError(
                f"encoder_hidden_states has dim {encoder_hidden_states.shape[-1]}, expected "
                f"text_embed_dim={cfg.text_embed_dim}"
            )
        if condition_latents is None:
            return
        if self.condition_fusion is None:
            raise ValueError("condition_latents were given but this model has no condition_kinds configured")
        expected = (b, f, cfg.out_channels * len(self.condition_kinds), h, w)
        if tuple(condition_latents.shape) != expected:
            raise ValueError(
                f"condition_latents of shape {tuple(condition_latents.shape)} do not match the latents: expected "
                f"{expected} ({len(self.condition_kinds)} kinds {self.condition_kinds} x {cfg.out_channels} "
                "channels, concatenated on channels, same frames/size as the latents)"
            )

    def rotary_embedding(self, num_frames: int, height: int, width: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """CogVideoX 1.0's 3D rotary table for ``num_frames`` latent frames of ``height x width``
        latents (the layout of diffusers' CogVideoX pipelines and upstream ORV's training)."""
        p = self.config.patch_size
        grid_h, grid_w = height // p, width // p
        base_h, base_w = (size // (VAE_SCALE_FACTOR_SPATIAL * p) for size in ROPE_BASE_SIZE)
        crops = get_resize_crop_region_for_grid((grid_h, grid_w), base_w, base_h)
        cos, sin = get_3d_rotary_pos_embed(
            embed_dim=self.config.attention_head_dim, crops_coords=crops, grid_size=(grid_h, grid_w),
            temporal_size=num_frames, device=device,
        )
        return cos.to(device), sin.to(device)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep: int | float | torch.LongTensor,
        actions: torch.Tensor | None = None,
        condition_latents: torch.Tensor | None = None,
        null_action_mask: torch.Tensor | None = None,
        timestep_cond: torch.Tensor | None = None,
        ofs: int | float | torch.LongTensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
        return_dict: bool = True,
    ) -> tuple[torch.Tensor] | Transformer2DModelOutput:
        """Predict the denoising target of (B, L, in_channels, H, W) latents.

        Args:
            actions: chunk-aligned (B, r*L, action_dim), ``r`` rows per latent frame (rows of
                the reference frame are zeros), or ``None`` for the null-action token.
            condition_latents: (B, L, k*C, H, W) VAE latents of the ``k`` condition kinds in
                ``config.condition_kinds`` order, or ``None`` to skip the fusion.
            null_action_mask: (B,) bool; marked samples use the null-action token
                (classifier-free guidance on actions, action dropout in training).
            Other arguments as in ``CogVideoXTransformer3DModel.forward``.
        """
        self._check_inputs(hidden_states, encoder_hidden_states, condition_latents)
        output = self.forward_views(hidden_states, encoder_hidden_states, timestep, actions, condition_latents,
                                    null_action_mask, 1, None, timestep_cond, ofs, image_rotary_emb, attention_kwargs)
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)

    def forward_views(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        timestep,
        actions: torch.Tensor | None,
        condition_latents: torch.Tensor | None,
        null_action_mask: torch.Tensor | None,
        num_views: int,
        view_ids: torch.Tensor | None,
        timestep_cond: torch.Tensor | None = None,
        ofs=None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        attention_kwargs: dict[str, Any] | None = None,
    ) -> torch.Tensor:
        """The forward pass on ``N = B * num_views`` flattened videos (views of a sample
        adjacent; per-sample inputs already repeated per view). Returns (N, L, C, H, W)."""
        batch_size, num_frames, _, height, width = hidden_states.shape

        # 1. Time embedding (stock), action tokens, the two AdaLN inputs (computed once).
        timestep = torch.as_tensor(timestep, device=hidden_states.device)
        if timestep.ndim == 0:
            timestep = timestep.expand(batch_size)
        t_emb = self.time_proj(timestep).to(dtype=hidden_states.dtype)
        emb = self.time_embedding(t_emb, timestep_cond)
        if self.ofs_embedding is not None:
            ofs_emb = self.ofs_embedding(self.ofs_proj(ofs).to(dtype=hidden_states.dtype))
            emb = emb + ofs_emb
        action_tokens = self.action_encoder(actions, batch_size, num_frames, null_action_mask, dtype=emb.dtype)
        vision_cond = F.silu(emb[:, None, :] + action_tokens)  # (N, L, T)
        text_cond = F.silu(emb)  # (N, T)
        if vision_cond.shape[0] != batch_size:
            vision_cond = vision_cond.expand(batch_size, -1, -1)
            text_cond = text_cond.expand(batch_size, -1)
        if image_rotary_emb is None and self.config.use_rotary_positional_embeddings:
            image_rotary_emb = self.rotary_embedding(num_frames, height, width, hidden_states.device)

        # 2. Patch embedding (stock), view positions (ORV-MV), condition tokens fused (Eq. 2).
        text_seq_length = encoder_hidden_states.shape[1]
        tokens = self.embedding_dropout(self.patch_embed(encoder_hidden_states, hidden_states))
        text_tokens, tokens = tokens[:, :text_seq_length], tokens[:, text_seq_length:]
        if self.view_attention_blocks is not None and num_views > 1:  # upstream: no view positions for one view
            tokens = tokens + self._view_positions(tokens, num_views, view_ids, num_frames, height, width)
        if condition_latents is not None:
            tokens = self.condition_fusion(tokens, self._condition_tokens(encoder_hidden_states, condition_latents))

        # 3. Blocks: view attention (ORV-MV), then the block with the action-expert AdaLN.
        checkpointing = torch.is_grad_enabled() and self.gradient_checkpointing
        for i, block in enumerate(self.transformer_blocks):
            if self.view_attention_blocks is not None:
                view_args = (tokens, text_tokens, text_cond, num_views, num_frames)
                view_block = self.view_attention_blocks[i]
                tokens = self._gradient_checkpointing_func(view_block, *view_args) if checkpointing else view_block(*view_args)
            args = (tokens, text_tokens, vision_cond, text_cond, image_rotary_emb, attention_kwargs)
            if checkpointing:
                tokens, text_tokens = self._gradient_checkpointing_func(functools.partial(orv_block_forward, block), *args)
            else:
                tokens, text_tokens = orv_block_forward(block, *args)

        # 4. Final norms (the AdaLN one per latent frame) and projection.
        tokens = self.norm_final(tokens)
        tokens = final_adaln(self.norm_out, tokens, vision_cond)
        tokens = self.proj_out(tokens)

        # 5. Unpatchify (CogVideoX 1.0 layout).
        p = self.config.patch_size
        output = tokens.reshape(batch_size, num_frames, height // p, width // p, -1, p, p)
        return output.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)

    def _condition_tokens(self, encoder_hidden_states: torch.Tensor, condition_latents: torch.Tensor) -> torch.Tensor:
        """(N, L, k*C, H, W) -> (N, L*P, k*D): each kind through the model's own patch
        embedding, positional embedding included; an image-to-video model takes a condition
        latent twice on channels (upstream's ``cat([c, c])``)."""
        c = self.config.out_channels
        text_seq_length = encoder_hidden_states.shape[1]
        tokens = []
        for i in range(len(self.condition_kinds)):
            latents = condition_latents[:, :, i * c : (i + 1) * c].to(self.patch_embed.proj.weight.dtype)
            if self.config.in_channels == 2 * c:
                latents = torch.cat([latents, latents], dim=2)
            embedded = self.embedding_dropout(self.patch_embed(encoder_hidden_states, latents))
            tokens.append(embedded[:, text_seq_length:])
        return torch.cat(tokens, dim=-1)

    def _view_positions(self, tokens, num_views: int, view_ids, num_frames: int, height: int, width: int):
        """(N, L*P, D) positions PE_v (+) PE_s of each flattened video's view (Eq. 3)."""
        n = tokens.shape[0]
        b = n // num_views
        if num_views > self.config.num_views:
            raise ValueError(f"{num_views} views given, the model has positions for num_views={self.config.num_views}")
        if view_ids is None:
            view_ids = torch.arange(num_views, device=tokens.device).expand(b, num_views)
        p = self.config.patch_size
        key = (height // p, width // p, str(tokens.device))
        cache = self.__dict__.setdefault("_view_position_cache", {})
        if key not in cache:
            cache.clear()
            inner_dim = tokens.shape[-1]
            cache[key] = view_position_table(inner_dim, self.config.num_views, height // p, width // p,
                                             self.config.spatial_interpolation_scale, 1.0, device=tokens.device)
        table = cache[key][view_ids.to(tokens.device).reshape(-1)]  # (N, P, D)
        return table.to(tokens.dtype).repeat(1, num_frames, 1)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_cogvideox(cls, stock: CogVideoXTransformer3DModel, **orv_config) -> "ORVTransformer3DModel":
        """Build ORV around an in-memory CogVideoX transformer (weights copied, see module doc)."""
        config = orv_config_from_stock(dict(stock.config), orv_config)
        model = cls.from_config(config)
        load_into(model, dict(stock.state_dict()), source=f"{type(stock).__name__} instance",
                  creatable=NEW_MODULE_PREFIXES)
        # nn.Module.to: ModelMixin.to warns about fp32 modules, and ORV has none to keep.
        return model if stock.dtype == model.dtype else torch.nn.Module.to(model, dtype=stock.dtype)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load any transformer folder this project knows (local paths only).

        - a folder of this class (``config.json`` names it) loads as saved;
        - a CogVideoX folder (e.g. ``CogVideoX-2b/transformer``) is converted: 16 -> 32 input
          channels with zero new channels, fresh zero-initialised ORV modules;
        - an official ORV folder (``CogVideoXTransformer3DModelTraj``, sharded or not) is
          converted in memory (:mod:`.upstream_orv`; one log line says what was mapped and
          what was dropped);
        - a single-view folder loaded by the multi-view class gets view-attention modules
          copied from its blocks (``num_views`` keyword, default 3).

        ORV config keys (``action_dim``, ``condition_kinds``, ...) may be passed as keyword
        overrides. Missing, unexpected or mis-shaped weights, a truncated file or a folder
        without config raise :class:`CheckpointError` naming them, before any weight is used.
        """
        return load_pretrained(cls, pretrained_model_name_or_path, kwargs)

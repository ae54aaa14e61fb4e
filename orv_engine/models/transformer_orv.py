"""ORV's transformer: CogVideoX's, plus actions (chunked, action-expert AdaLN) and conditions.

Why a subclass: ORV is a fine-tune of CogVideoX-2B, so every pretrained module is kept
with its diffusers name (checkpoints of either load into the other's layout) and only
three things are added (paper Sec. 3.2, Listing 1, Eq. 2, Table 8):

- ``action_encoder``: chunk-aligned actions (B, r*L, 7) -> one token per latent frame;
- the action-expert AdaLN (:mod:`.action_adaln`): vision tokens of latent frame ``j`` are
  modulated from ``silu(temb + action_token_j)`` with the pretrained vision rows of each
  AdaLN, text tokens from ``silu(temb)``; no new AdaLN weights;
- ``condition_fusion``: VAE latents of ``k`` condition kinds fused into the noisy latents
  through a zero-initialised MLP.

Input: (B, L, 2C, H, W) = noisy latents and first-frame latents (image-to-video), so the
patch embedding takes 32 channels where CogVideoX-2B (text-to-video) takes 16.
:meth:`ORVTransformer3DModel.from_pretrained` converts such a folder on the fly: the new
input channels start at zero and the new modules at zero, so the converted model computes
exactly what CogVideoX computes (for zero first-frame latents and null actions).
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
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  (see below)
from diffusers.models.transformers.cogvideox_transformer_3d import CogVideoXTransformer3DModel

from orv_engine.models.action_adaln import final_adaln, orv_block_forward
from orv_engine.models.action_encoder import ChunkedActionEncoder
from orv_engine.models.condition_fusion import ConditionFusion
from orv_engine.models.checkpoint_files import CheckpointError, checkpoint_shapes, check_shapes, load_checkpoint

ORV_CONFIG_KEYS = (
    "action_dim",
    "action_chunk",
    "action_embed_dim",
    "action_hidden_dim",
    "condition_kinds",
    "condition_hidden_dim",
)
NEW_MODULE_PREFIXES = ("action_encoder.", "condition_fusion.")

# ``ModelMixin`` is imported above on purpose: a saved pipeline names this module as the
# transformer's library, and diffusers' loader looks the loadable base classes up in it.


class ORVTransformer3DModel(CogVideoXTransformer3DModel):
    """CogVideoX transformer with chunked action conditioning and visual-condition fusion.

    ORV parameters (the rest are ``CogVideoXTransformer3DModel``'s):
        action_dim: size of one action (7-DoF end-effector delta + gripper).
        action_chunk: ``r``, actions per latent frame (the VAE's temporal compression).
        action_embed_dim: size of an action token; must equal ``time_embed_dim`` (added to it).
        action_hidden_dim: hidden width of the action MLP (default: ``time_embed_dim``).
        condition_kinds: names of the visual conditions, in channel order (e.g. depth, semantics).
        condition_hidden_dim: hidden width of the fusion MLP (default: the transformer width).
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
        self.action_encoder = ChunkedActionEncoder(
            action_dim=action_dim,
            action_chunk=action_chunk,
            embed_dim=time_embed_dim,
            hidden_dim=action_hidden_dim or time_embed_dim,
        )
        kinds = list(condition_kinds or ())
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"condition_kinds has duplicates: {kinds}")
        self.condition_fusion = (
            ConditionFusion(out_channels, len(kinds), condition_hidden_dim or inner_dim) if kinds else None
        )

    # ------------------------------------------------------------------ forward

    @property
    def condition_kinds(self) -> list[str]:
        return list(self.config.condition_kinds or ())

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
        batch_size, num_frames, _, height, width = hidden_states.shape

        # 1. Time embedding (stock), action tokens, the two AdaLN inputs (computed once).
        t_emb = self.time_proj(timestep).to(dtype=hidden_states.dtype)
        emb = self.time_embedding(t_emb, timestep_cond)
        if self.ofs_embedding is not None:
            ofs_emb = self.ofs_embedding(self.ofs_proj(ofs).to(dtype=hidden_states.dtype))
            emb = emb + ofs_emb
        action_tokens = self.action_encoder(actions, batch_size, num_frames, null_action_mask, dtype=emb.dtype)
        vision_cond = F.silu(emb[:, None, :] + action_tokens)  # (B, L, T)
        text_cond = F.silu(emb)  # (B, T)
        if vision_cond.shape[0] != batch_size:
            vision_cond = vision_cond.expand(batch_size, -1, -1)
            text_cond = text_cond.expand(batch_size, -1)

        # 2. Visual conditions into the noisy latents (Eq. 2), then the stock patch embedding.
        if condition_latents is not None:
            c = self.config.out_channels
            noisy = self.condition_fusion(hidden_states[:, :, :c], condition_latents)
            hidden_states = torch.cat([noisy, hidden_states[:, :, c:]], dim=2)
        hidden_states = self.patch_embed(encoder_hidden_states, hidden_states)
        hidden_states = self.embedding_dropout(hidden_states)
        text_seq_length = encoder_hidden_states.shape[1]
        encoder_hidden_states = hidden_states[:, :text_seq_length]
        hidden_states = hidden_states[:, text_seq_length:]

        # 3. Transformer blocks with the action-expert AdaLN.
        for block in self.transformer_blocks:
            args = (hidden_states, encoder_hidden_states, vision_cond, text_cond, image_rotary_emb, attention_kwargs)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                hidden_states, encoder_hidden_states = self._gradient_checkpointing_func(
                    functools.partial(orv_block_forward, block), *args
                )
            else:
                hidden_states, encoder_hidden_states = orv_block_forward(block, *args)

        # 4. Final norms (the AdaLN one per latent frame) and projection.
        hidden_states = self.norm_final(hidden_states)
        hidden_states = final_adaln(self.norm_out, hidden_states, vision_cond)
        hidden_states = self.proj_out(hidden_states)

        # 5. Unpatchify (CogVideoX 1.0 layout).
        p = self.config.patch_size
        output = hidden_states.reshape(batch_size, num_frames, height // p, width // p, -1, p, p)
        output = output.permute(0, 1, 4, 2, 5, 3, 6).flatten(5, 6).flatten(3, 4)
        if not return_dict:
            return (output,)
        return Transformer2DModelOutput(sample=output)

    # ------------------------------------------------------------------ loading

    @classmethod
    def from_cogvideox(cls, stock: CogVideoXTransformer3DModel, **orv_config) -> "ORVTransformer3DModel":
        """Build ORV around an in-memory CogVideoX transformer (weights copied, see module doc)."""
        config = _orv_config_from_stock(dict(stock.config), orv_config)
        model = cls.from_config(config)
        state = {k: v for k, v in stock.state_dict().items()}
        _load_converted(model, state, source=f"{type(stock).__name__} instance")
        # nn.Module.to: ModelMixin.to warns about fp32 modules, and ORV has none to keep.
        return model if stock.dtype == model.dtype else torch.nn.Module.to(model, dtype=stock.dtype)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """Load an ORV checkpoint, or convert a CogVideoX transformer folder (local paths only).

        An ORV folder (``config.json`` names ``ORVTransformer3DModel``) loads as saved; a
        CogVideoX text-to-video folder (e.g. ``CogVideoX-2b/transformer``) is converted: 16
        -> 32 input channels with zero new channels, fresh zero-initialised ORV modules.
        ORV config keys (``action_dim``, ``condition_kinds``, ...) may be passed as keyword
        overrides for the conversion. Missing or mismatched weights raise
        :class:`CheckpointError` naming them.
        """
        subfolder = kwargs.get("subfolder")
        variant = kwargs.get("variant")
        folder = Path(pretrained_model_name_or_path)
        if subfolder:
            folder = folder / subfolder
        if not folder.is_dir():
            raise CheckpointError(
                f"{folder} is not a local folder. ORV loads local checkpoints only: download the model "
                "first (e.g. `huggingface-cli download zai-org/CogVideoX-2b --local-dir CogVideoX-2b`) and "
                "pass the folder (with subfolder='transformer' for a whole pipeline folder)"
            )
        config_file = folder / "config.json"
        if not config_file.is_file():
            hint = " (pass subfolder='transformer' for a pipeline folder)" if (folder / "transformer").is_dir() else ""
            raise CheckpointError(f"{folder} has no config.json; is it a diffusers transformer folder?{hint}")
        saved = json.loads(config_file.read_text())
        if saved.get("_class_name") == "ORVMultiViewTransformer3DModel" and cls is ORVTransformer3DModel:
            raise CheckpointError(
                f"{folder} holds a multi-view ORV model (ORV-MV); load it with "
                "orv_engine.models.transformer_orv_mv.ORVMultiViewTransformer3DModel.from_pretrained")
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in ORV_CONFIG_KEYS or k in saved}

        if saved.get("_class_name") == cls.__name__ or any(k in saved for k in ORV_CONFIG_KEYS):
            config = {**{k: v for k, v in saved.items() if not k.startswith("_")}, **overrides}
            with torch.device("meta"):
                expected = cls.from_config(config).state_dict()
            found = checkpoint_shapes(folder, variant)
            check_shapes(expected, found, folder)
            return super().from_pretrained(pretrained_model_name_or_path, **kwargs, **overrides)

        # A stock CogVideoX folder: convert.
        torch_dtype = kwargs.get("dtype", kwargs.get("torch_dtype"))  # diffusers 0.42 renamed it
        config = _orv_config_from_stock(saved, overrides)
        model = cls.from_config(config)
        state = load_checkpoint(folder, variant)
        _load_converted(model, state, source=str(folder))
        model.eval()
        if torch_dtype is not None:
            model = torch.nn.Module.to(model, dtype=torch_dtype)
        return model


def _orv_config_from_stock(stock: dict, overrides: dict) -> dict:
    config = {k: v for k, v in stock.items() if not k.startswith("_")}
    out_channels = config.get("out_channels") or config.get("in_channels", 16)
    if config.get("in_channels", 16) == out_channels:  # text-to-video: add the first-frame channels
        config["in_channels"] = 2 * out_channels
    config.update(overrides)
    return config


def _load_converted(model: ORVTransformer3DModel, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy stock weights into ``model``: expand the patch embedding, check every key."""
    key = "patch_embed.proj.weight"
    expected = model.state_dict()
    if key in state and key in expected:
        old, new_shape = state[key], expected[key].shape
        if old.ndim == 4 and old.shape[1] < new_shape[1] and old.shape[0] == new_shape[0]:
            grown = torch.zeros(new_shape, dtype=old.dtype)
            grown[:, : old.shape[1]] = old
            state[key] = grown
    check_shapes(
        {k: v for k, v in expected.items() if not k.startswith(NEW_MODULE_PREFIXES)},
        {k: tuple(v.shape) for k, v in state.items()},
        source,
    )
    result = model.load_state_dict(state, strict=False)
    assert not result.unexpected_keys, result.unexpected_keys

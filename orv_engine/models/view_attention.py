"""ORV-MV's view attention: tokens of the same latent frame attend across camera views.

Why a separate module per block (paper Sec. 3.2.1, Fig. 5): CogVideoX's 3D attention (the
*single-view module*) mixes the ``T*H*W`` tokens of one video. ORV-MV adds, before each
block, a *multiview module* whose attention runs, for every latent frame, over the tokens
of all ``V`` views of that frame. Everything else stays per view.

The function is the official one (OrangeSodahub/ORV ``MVBlock``; its ``mv_blocks.i`` keys
load here as ``view_attention_blocks.i``, :mod:`orv_engine.models.upstream_orv`):

- ``norm1``: a CogVideoX AdaLN fed with the time embedding alone (no action token), the
  vision rows modulating the vision tokens and, when the model modulates text
  (CogVideoX-2B), the text rows modulating the text tokens;
- ``attn1``: attention over ``[text tokens of all V views; the V*P vision tokens of one
  latent frame]`` (the text part of its output is dropped), CogVideoX's attention layout;
- ``proj_out``: a linear layer, zero at the start, then the vision gate of ``norm1``; the
  module's only path to the residual, so a fresh module adds nothing.
- Positions (Eq. 3): ``PE_v(v) (+) PE_s(x, y)`` (CogVideoX's 3D sin-cos table with the frame
  axis replaced by the view index) is added to the vision tokens once, before the first
  block and only when there are several views (:meth:`ORVTransformer3DModel.forward_views`),
  not inside this module. So a fresh multi-view model equals the single-view one for one
  view; with several, only through the positions added to the residual stream.

Upstream also has a ``cam_encoder`` per block that its forward never uses; it is dropped.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from diffusers.models.attention_processor import Attention, CogVideoXAttnProcessor2_0
from diffusers.models.embeddings import get_3d_sincos_pos_embed
from diffusers.models.normalization import CogVideoXLayerNormZero


class ViewAttention(nn.Module):
    """One multiview module: AdaLN(timestep) -> attention across views (+ text) -> projection -> gate."""

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        attention_head_dim: int,
        time_embed_dim: int,
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        attention_bias: bool = True,
        modulate_text_tokens: bool = True,
    ):
        super().__init__()
        self.norm1 = CogVideoXLayerNormZero(time_embed_dim, dim, norm_elementwise_affine, norm_eps, bias=True)
        if not modulate_text_tokens:
            self.norm1.linear = nn.Linear(time_embed_dim, 3 * dim, bias=True)
        self.attn1 = Attention(
            query_dim=dim, dim_head=attention_head_dim, heads=num_attention_heads, qk_norm="layer_norm",
            eps=1e-6, bias=attention_bias, out_bias=True, processor=CogVideoXAttnProcessor2_0(),
        )
        self.proj_out = nn.Linear(dim, dim)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    @torch.no_grad()
    def copy_from_block(self, block) -> None:
        """Start from a ``CogVideoXBlock``: its first AdaLN and attention; ``proj_out`` zero."""
        self.norm1.load_state_dict(block.norm1.state_dict())
        self.attn1.load_state_dict(block.attn1.state_dict())
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        time_cond: torch.Tensor,
        num_views: int,
        num_frames: int,
    ) -> torch.Tensor:
        """hidden_states (B*V, L*P, D), views of a sample adjacent; encoder_hidden_states
        (B*V, S, D) each view's text tokens; time_cond ``silu(temb)`` (B*V, T); ``L`` latent
        frames. Returns (B*V, L*P, D)."""
        bv, lp, d = hidden_states.shape
        b, s = bv // num_views, encoder_hidden_states.shape[1]
        modulation = self.norm1.linear(time_cond)
        shift, scale, gate = modulation[:, : 3 * d].chunk(3, dim=-1)
        normed = self.norm1.norm(hidden_states) * (1 + scale)[:, None] + shift[:, None]
        p = lp // num_frames
        # (B*V, L*P, D) -> (B*L, V*P, D): one sequence per latent frame over all views.
        x = normed.reshape(b, num_views, num_frames, p, d).transpose(1, 2).reshape(b * num_frames, num_views * p, d)
        if modulation.shape[-1] == 6 * d:
            enc_shift, enc_scale, _ = modulation[:, 3 * d :].chunk(3, dim=-1)
            text = self.norm1.norm(encoder_hidden_states) * (1 + enc_scale)[:, None] + enc_shift[:, None]
            text = text.reshape(b, 1, num_views * s, d).expand(b, num_frames, num_views * s, d)
            text = text.reshape(b * num_frames, num_views * s, d)
        else:
            text = x[:, :0]
        out, _ = self.attn1(hidden_states=x, encoder_hidden_states=text)
        out = self.proj_out(out)
        out = out.reshape(b, num_frames, num_views, p, d).transpose(1, 2).reshape(bv, lp, d)
        return hidden_states + gate[:, None] * out


def view_position_table(
    dim: int, num_views: int, grid_height: int, grid_width: int,
    spatial_interpolation_scale: float = 1.875, view_interpolation_scale: float = 1.0,
    device=None,
) -> torch.Tensor:
    """(num_views, grid_height*grid_width, dim): Eq. 3's PE_v(v) (+) PE_s(x, y) for v = 0..num_views-1."""
    return get_3d_sincos_pos_embed(
        dim, (grid_width, grid_height), num_views, spatial_interpolation_scale, view_interpolation_scale,
        device=device, output_type="pt",
    ).float()

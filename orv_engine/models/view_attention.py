"""ORV-MV's view attention: tokens of the same latent frame attend across camera views.

Why a separate module per block (paper Sec. 3.2.1, Fig. 5, summary "multiview module"):
CogVideoX's 3D attention (the *single-view module*) mixes the ``T*H*W`` tokens of one video
(``F_P in R^{B_P x THW x D}``). ORV-MV adds, before each block, a *multiview module* whose
attention runs over ``F_V in R^{(B*T) x (V*H*W) x D}``: for every latent frame, the tokens
of all ``V`` views of that frame. Everything else stays per view.

- Weights: a copy of the block's pretrained attention (``attn1``: q/k/v, per-head
  LayerNorms, output projection) and of its normalisation, so the module starts as the
  single-view module would (paper Sec. 10.2.2: "initialize ... through copying from the
  singleview module").
- Zero start: the residual gate is zero-initialised, so a fresh multi-view model computes
  exactly what the single-view model computes; the gate is the only path to the residual.
- Conditioning: the AdaLN of the copied ``norm1`` fed with ``silu(temb)`` alone (the
  timestep; no action token, no text tokens). The paper's multiview module "excludes
  action priors"; keeping the timestep modulation means the copied attention sees tokens
  scaled the way its pretrained weights expect at every noise level (a plain LayerNorm
  would feed it unmodulated tokens at the start of fine-tuning).
- Positions (Eq. 3): ``PE(v, x, y) = PE_v(v) (+) PE_s(x, y)``, CogVideoX's own 3D
  sin-cos embedding (:func:`diffusers.models.embeddings.get_3d_sincos_pos_embed`) with the
  frame axis replaced by the view index, added to the normalised tokens before the
  attention. ``(+)`` is CogVideoX's channel concatenation: 1/4 of the channels encode the
  view, 3/4 the patch position. The view index is an input (``view_ids``), so permuting
  the views together with their ids permutes the outputs (the attention itself has no
  order).
"""

from __future__ import annotations

import torch
import torch.nn as nn
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import get_3d_sincos_pos_embed


class ViewAttention(nn.Module):
    """One multiview module: AdaLN(timestep) -> + view/space positions -> attention -> gated residual."""

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        attention_head_dim: int,
        time_embed_dim: int,
        norm_elementwise_affine: bool = True,
        norm_eps: float = 1e-5,
        attention_bias: bool = True,
        attention_out_bias: bool = True,
    ):
        super().__init__()
        self.norm = nn.LayerNorm(dim, eps=norm_eps, elementwise_affine=norm_elementwise_affine)
        # shift, scale, gate from silu(temb); the gate rows start at zero.
        self.modulation = nn.Linear(time_embed_dim, 3 * dim, bias=True)
        self.attn = Attention(
            query_dim=dim, dim_head=attention_head_dim, heads=num_attention_heads, qk_norm="layer_norm",
            eps=1e-6, bias=attention_bias, out_bias=attention_out_bias,
        )
        self.zero_gate()

    @torch.no_grad()
    def zero_gate(self) -> None:
        dim = self.norm.normalized_shape[0]
        self.modulation.weight[2 * dim :].zero_()
        self.modulation.bias[2 * dim :].zero_()

    @torch.no_grad()
    def copy_from_block(self, block) -> None:
        """Copy a ``CogVideoXBlock``'s attention and the vision rows of its first AdaLN; zero the gate."""
        dim = self.norm.normalized_shape[0]
        self.norm.load_state_dict(block.norm1.norm.state_dict())
        linear = block.norm1.linear  # rows: vision shift/scale/gate, text shift/scale/gate
        self.modulation.weight.copy_(linear.weight[: 3 * dim])
        self.modulation.bias.copy_(linear.bias[: 3 * dim])
        self.attn.load_state_dict(block.attn1.state_dict())
        self.zero_gate()

    def forward(
        self,
        hidden_states: torch.Tensor,
        time_cond: torch.Tensor,
        num_views: int,
        view_positions: torch.Tensor,
    ) -> torch.Tensor:
        """hidden_states: (B*V, L*P, D), views of a sample adjacent; time_cond: silu(temb) (B, T);
        view_positions: (B, V, P, D) PE(v, x, y) of each sample's views. Returns (B*V, L*P, D)."""
        bv, lp, d = hidden_states.shape
        b = bv // num_views
        p = view_positions.shape[2]
        num_frames = lp // p
        x = hidden_states.reshape(b, num_views, num_frames, p, d).transpose(1, 2)  # (B, L, V, P, D)
        shift, scale, gate = self.modulation(time_cond).chunk(3, dim=-1)  # (B, D) each
        normed = self.norm(x) * (1 + scale)[:, None, None, None] + shift[:, None, None, None]
        normed = normed + view_positions[:, None].to(normed.dtype)
        out = self.attn(normed.reshape(b * num_frames, num_views * p, d))
        x = x + gate[:, None, None, None] * out.reshape(b, num_frames, num_views, p, d)
        return x.transpose(1, 2).reshape(bv, lp, d)


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

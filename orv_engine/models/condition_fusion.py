"""Fuse visual-condition tokens into the vision tokens (paper Eq. 2, the official function).

    h <- h + Linear(repeat(h, k) + concat([PatchEmbed(c_1), ..., PatchEmbed(c_k)]))

Why this shape: ORV injects its soft occupancy-rendered maps (depth, semantics, ...) only
at the input, not layer by layer like a ControlNet; that is cheap and robust to coarse
conditions. As in the official code (OrangeSodahub/ORV, ``initial_combine_linear``),
each condition's VAE latents go through the transformer's *own* patch embedding
(positional embedding included), so the fusion works in token space on ``k * D``
features; the linear layer starts at zero, so a model fresh from stage 1 computes exactly
the stage-1 function. The patch embedding is the transformer's; this module holds only
the linear layer.
"""

from __future__ import annotations

import torch
from torch import nn


class ConditionFusion(nn.Module):
    def __init__(self, inner_dim: int, num_kinds: int):
        super().__init__()
        self.num_kinds = num_kinds
        self.proj = nn.Linear(inner_dim * num_kinds, inner_dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, hidden_states: torch.Tensor, condition_tokens: torch.Tensor) -> torch.Tensor:
        """hidden (B, N, D), condition tokens (B, N, k*D) -> fused hidden (B, N, D)."""
        x = hidden_states.repeat(1, 1, self.num_kinds) + condition_tokens.to(hidden_states.dtype)
        return hidden_states + self.proj(x.to(self.proj.weight.dtype)).to(hidden_states.dtype)

"""Fuse visual-condition latents into the noisy input latents (paper Eq. 2).

    z_in <- ZeroMLP(repeat(z_in, k) + concat([c_1, ..., c_k])) + z_in

Why this shape: ORV injects its soft occupancy-rendered maps (depth, semantics, ...) only
into the input, not layer by layer like a ControlNet; that is cheap and robust to coarse
conditions. The MLP is per latent pixel (1x1 convolutions), ``k`` kinds of ``C``-channel
latents go in, ``C`` channels come out, and its last layer starts at zero so a freshly
loaded model is exactly the backbone.
"""

from __future__ import annotations

import torch
from torch import nn


class ConditionFusion(nn.Module):
    def __init__(self, latent_channels: int, num_kinds: int, hidden_dim: int):
        super().__init__()
        self.latent_channels = latent_channels
        self.num_kinds = num_kinds
        self.proj_in = nn.Conv2d(latent_channels * num_kinds, hidden_dim, kernel_size=1)
        self.act = nn.SiLU()
        self.proj_out = nn.Conv2d(hidden_dim, latent_channels, kernel_size=1)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)

    def forward(self, latents: torch.Tensor, conditions: torch.Tensor) -> torch.Tensor:
        """latents (B, F, C, H, W), conditions (B, F, k*C, H, W) -> fused latents (B, F, C, H, W)."""
        b, f, c, h, w = latents.shape
        x = latents.repeat(1, 1, self.num_kinds, 1, 1) + conditions.to(latents.dtype)
        x = x.reshape(b * f, c * self.num_kinds, h, w).to(self.proj_in.weight.dtype)
        x = self.proj_out(self.act(self.proj_in(x)))
        return latents + x.reshape(b, f, c, h, w).to(latents.dtype)

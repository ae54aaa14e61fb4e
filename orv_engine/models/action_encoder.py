"""Chunked action encoder (paper Sec. 3.2): ``r`` consecutive 7-DoF actions -> one token.

Why chunks: the 3D VAE folds ``r = 4`` frames into one latent frame, so one token per
chunk lines the actions up with the latent frames they produce (the data side stores them
that way: :func:`orv_engine.data.clips.chunk_align_actions`). The token has the size of
the time embedding because the action-expert AdaLN adds the two.

The function is the official one (OrangeSodahub/ORV ``ActionEmbed``): ``Linear(r*7 ->
4*T) -> GELU(tanh) -> Linear(4*T -> T)`` and a learned null-action token (upstream's
``mask_embed``) that replaces the tokens of a sample for classifier-free guidance on
actions and for action dropout in training. Upstream's ``action_embed.mlp.0`` /
``mlp.3`` / ``mask_embed`` are this module's ``proj_in`` / ``proj_out`` / ``null_token``
(:mod:`orv_engine.models.upstream_orv` maps them).

Initialisation (ours, not upstream's): the output layer and the null token start at zero,
so a model converted from CogVideoX ignores actions until trained and computes exactly
what CogVideoX computes. Inference is deterministic: upstream's encoder replaces the
actions of ~10% of the samples by the null token at random even at inference (its mask
flag is fixed when the module is built); here only ``null_action_mask`` does.
"""

from __future__ import annotations

import torch
from torch import nn


class ChunkedActionEncoder(nn.Module):
    def __init__(self, action_dim: int = 7, action_chunk: int = 4, embed_dim: int = 512, hidden_dim: int | None = None):
        super().__init__()
        self.action_dim = action_dim
        self.action_chunk = action_chunk
        hidden_dim = hidden_dim or 4 * embed_dim
        self.proj_in = nn.Linear(action_dim * action_chunk, hidden_dim)
        self.act = nn.GELU(approximate="tanh")
        self.proj_out = nn.Linear(hidden_dim, embed_dim)
        nn.init.zeros_(self.proj_out.weight)
        nn.init.zeros_(self.proj_out.bias)
        self.null_token = nn.Parameter(torch.zeros(embed_dim))

    def check_actions(self, actions: torch.Tensor, batch_size: int, num_latent_frames: int) -> None:
        r = self.action_chunk
        expected = (batch_size, r * num_latent_frames, self.action_dim)
        if actions.ndim != 3 or actions.shape[-1] != self.action_dim:
            raise ValueError(
                f"actions must be (batch, {r} * latent_frames, action_dim={self.action_dim}), got shape "
                f"{tuple(actions.shape)}: the last dimension is the action dim ({self.action_dim})"
            )
        if tuple(actions.shape) != expected:
            raise ValueError(
                f"actions of shape {tuple(actions.shape)} do not match {num_latent_frames} latent frames: expected "
                f"{expected} (chunk-aligned, {r} rows per latent frame, the first {r} rows zeros for the "
                "reference frame; see orv_engine.data.clips.chunk_align_actions)"
            )

    def forward(
        self,
        actions: torch.Tensor | None,
        batch_size: int,
        num_latent_frames: int,
        null_action_mask: torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        """Chunk-aligned actions (B, r*L, D_a) -> tokens (B, L, embed_dim).

        ``actions=None`` gives the null token everywhere; ``null_action_mask`` (B,) bool
        replaces the tokens of the marked samples by the null token.
        """
        dtype = dtype or self.null_token.dtype
        null = self.null_token.to(dtype)[None, None, :].expand(batch_size, num_latent_frames, -1)
        if actions is None:
            return null
        self.check_actions(actions, batch_size, num_latent_frames)
        chunks = actions.to(self.proj_in.weight.dtype).reshape(batch_size, num_latent_frames, -1)
        tokens = self.proj_out(self.act(self.proj_in(chunks))).to(dtype)
        if null_action_mask is not None:
            mask = torch.as_tensor(null_action_mask, device=tokens.device, dtype=torch.bool)
            if mask.shape != (batch_size,):
                raise ValueError(f"null_action_mask must be ({batch_size},) bool, got shape {tuple(mask.shape)}")
            tokens = torch.where(mask[:, None, None], null, tokens)
        return tokens

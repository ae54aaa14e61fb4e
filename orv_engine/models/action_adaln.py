"""Action-expert AdaLN (paper Listing 1): per-latent-frame modulation of the vision tokens.

CogVideoX's expert AdaLN maps ``silu(temb)`` through one linear layer to six vectors:
shift/scale/gate for the vision tokens (first half of the weight rows) and for the text
tokens (second half). ORV feeds the *vision* half ``silu(temb + action_token)`` instead,
one action token per latent frame, so each frame's vision tokens are modulated by the
actions that produce it. The text half keeps ``silu(temb)``. No new weights: the
pretrained rows are reused, which is what lets a fine-tune start from CogVideoX-2B.

These are functions over the stock diffusers modules (``CogVideoXBlock``,
``CogVideoXLayerNormZero``, ``AdaLayerNorm``) rather than subclasses, so the state-dict
keys stay those of CogVideoX and any pretrained checkpoint loads unchanged.

Shapes: vision hidden states are (B, L*P, D) with L latent frames of P patches each; the
per-frame modulation (B, L, D) is broadcast over the P patches through a view, never
materialised per token (the cost stays that of the stock model).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from diffusers.models.normalization import AdaLayerNorm, CogVideoXLayerNormZero


def _per_frame(x: torch.Tensor, num_frames: int) -> torch.Tensor:
    b, s, d = x.shape
    if s % num_frames:
        raise ValueError(f"{s} vision tokens cannot be split into {num_frames} latent frames")
    return x.reshape(b, num_frames, s // num_frames, d)


def expert_adaln(
    norm: CogVideoXLayerNormZero,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    vision_cond: torch.Tensor,
    text_cond: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Like ``CogVideoXLayerNormZero.forward`` with per-frame vision conditioning.

    vision_cond: ``silu(temb + action)`` (B, L, T); text_cond: ``silu(temb)`` (B, T).
    Returns normed vision (B, L, P, D), normed text (B, S_t, D), vision gate (B, L, 1, D)
    and text gate (B, 1, D); the text ones are ``None`` for a vision-only AdaLN.
    """
    dim = hidden_states.shape[-1]
    weight, bias = norm.linear.weight, norm.linear.bias
    shift, scale, gate = F.linear(
        vision_cond, weight[: 3 * dim], None if bias is None else bias[: 3 * dim]
    ).chunk(3, dim=-1)
    num_frames = vision_cond.shape[1]
    hidden = _per_frame(norm.norm(hidden_states), num_frames) * (1 + scale)[:, :, None] + shift[:, :, None]
    if not modulates_text(norm, dim):
        return hidden, None, gate[:, :, None], None
    enc_shift, enc_scale, enc_gate = F.linear(
        text_cond, weight[3 * dim :], None if bias is None else bias[3 * dim :]
    ).chunk(3, dim=-1)
    encoder = norm.norm(encoder_hidden_states) * (1 + enc_scale)[:, None, :] + enc_shift[:, None, :]
    return hidden, encoder, gate[:, :, None], enc_gate[:, None, :]


def modulates_text(norm: CogVideoXLayerNormZero, dim: int) -> bool:
    """Whether this AdaLN has the text rows (6 * dim outputs) or vision rows only (3 * dim)."""
    return norm.linear.out_features == 6 * dim


def final_adaln(norm_out: AdaLayerNorm, hidden_states: torch.Tensor, vision_cond: torch.Tensor) -> torch.Tensor:
    """``AdaLayerNorm`` (CogVideoX's chunk_dim=1 layout: shift, scale) per latent frame."""
    shift, scale = norm_out.linear(vision_cond).chunk(2, dim=-1)
    num_frames = vision_cond.shape[1]
    out = _per_frame(norm_out.norm(hidden_states), num_frames) * (1 + scale)[:, :, None] + shift[:, :, None]
    return out.flatten(1, 2)


def orv_block_forward(
    block,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    vision_cond: torch.Tensor,
    text_cond: torch.Tensor,
    image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    attention_kwargs: dict[str, Any] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``CogVideoXBlock.forward`` with the action-expert AdaLN (same modules, same weights)."""
    text_seq_length = encoder_hidden_states.size(1)
    attention_kwargs = attention_kwargs or {}
    num_frames = vision_cond.shape[1]

    norm_hidden, norm_encoder, gate_msa, enc_gate_msa = expert_adaln(
        block.norm1, hidden_states, encoder_hidden_states, vision_cond, text_cond
    )
    with_text = norm_encoder is not None
    if not with_text:  # vision-only blocks: an empty text sequence keeps the stock attention processor
        text_seq_length = 0
        norm_encoder = encoder_hidden_states[:, :0]
    attn_hidden, attn_encoder = block.attn1(
        hidden_states=norm_hidden.flatten(1, 2),
        encoder_hidden_states=norm_encoder,
        image_rotary_emb=image_rotary_emb,
        **attention_kwargs,
    )
    hidden_states = (_per_frame(hidden_states, num_frames) + gate_msa * _per_frame(attn_hidden, num_frames)).flatten(1, 2)
    if with_text:
        encoder_hidden_states = encoder_hidden_states + enc_gate_msa * attn_encoder

    norm_hidden, norm_encoder, gate_ff, enc_gate_ff = expert_adaln(
        block.norm2, hidden_states, encoder_hidden_states, vision_cond, text_cond
    )
    if not with_text:
        norm_encoder = encoder_hidden_states[:, :0]
    ff_output = block.ff(torch.cat([norm_encoder, norm_hidden.flatten(1, 2)], dim=1))
    hidden_states = (
        _per_frame(hidden_states, num_frames) + gate_ff * _per_frame(ff_output[:, text_seq_length:], num_frames)
    ).flatten(1, 2)
    if with_text:
        encoder_hidden_states = encoder_hidden_states + enc_gate_ff * ff_output[:, :text_seq_length]
    return hidden_states, encoder_hidden_states

"""Turn user inputs (first frames, per-frame actions, condition maps) into checked tensors.

Why separate from the pipeline: these are the rules a user trips over (4k frames, action
dim, condition sizes), so they live in one place with messages that say what is wrong.

Conventions: numpy/PIL images are uint8 in [0, 255] or float in [0, 1], channels last;
torch images are (3, H, W) / (B, 3, H, W) in [-1, 1] (the diffusers convention).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from orv_engine.data.clips import chunk_align_actions
from orv_engine.preprocessing import to_vae_range


def _to_float01(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == bool:
        return array.astype(np.float32)
    return array.astype(np.float32)


def images_to_tensor(image, height: int | None = None, width: int | None = None) -> torch.Tensor:
    """First frame(s) -> (B, 3, H, W) float in [-1, 1], resized to (height, width) if given."""
    if isinstance(image, torch.Tensor):
        x = image.float()
        if x.ndim == 3:
            x = x[None]
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"a torch image must be (3, H, W) or (B, 3, H, W) in [-1, 1], got {tuple(image.shape)}")
    else:
        items = image if isinstance(image, (list, tuple)) else [image]
        if len(items) == 0:
            raise ValueError("image is an empty list")
        arrays = []
        for item in items:
            a = np.asarray(item.convert("RGB")) if hasattr(item, "convert") else np.asarray(item)
            if a.ndim == 4:
                arrays.extend(list(a))
                continue
            arrays.append(a)
        for a in arrays:
            if a.ndim != 3 or a.shape[-1] != 3:
                raise ValueError(f"a numpy image must be (H, W, 3), got shape {a.shape}")
        if len({a.shape for a in arrays}) > 1:
            raise ValueError(f"images of a batch differ in size: {sorted({a.shape for a in arrays})}")
        x = torch.from_numpy(np.stack([_to_float01(a) for a in arrays])).permute(0, 3, 1, 2) * 2 - 1
    if height is not None and width is not None and tuple(x.shape[-2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return x


def check_num_frames(num_frames: int) -> None:
    """``F`` per-frame actions drive a ``4k + 1``-frame video (CogVideoX's VAE): ``F = 4k``."""
    if num_frames < 4 or num_frames % 4:
        raise ValueError(
            f"{num_frames} frames requested (one action per frame): ORV generates 4k frames (4, 8, 12, 16, ...) "
            f"from 4k actions, the VAE sees 4k+1 with the frame after the last action; {num_frames} + 1 = "
            f"{num_frames + 1} is not of the form 4k+1. Use pipe.rollout() for episodes of any length"
        )


def actions_to_tensor(actions, batch_size: int, action_dim: int) -> torch.Tensor:
    """Per-frame actions (F, D) or (B, F, D) -> float tensor (B, F, D), checked."""
    a = torch.as_tensor(np.asarray(actions.detach().cpu() if isinstance(actions, torch.Tensor) else actions),
                        dtype=torch.float32)
    if a.ndim == 2:
        a = a[None].expand(batch_size, -1, -1)
    if a.ndim != 3:
        raise ValueError(f"actions must be (frames, {action_dim}) or (batch, frames, {action_dim}), got {tuple(a.shape)}")
    if a.shape[-1] != action_dim:
        raise ValueError(
            f"actions have dim {a.shape[-1]} but the transformer takes action_dim={action_dim} "
            f"(shape {tuple(a.shape)}; 7 = 6 end-effector deltas + gripper)"
        )
    if a.shape[0] != batch_size:
        raise ValueError(f"actions are for {a.shape[0]} samples, the batch has {batch_size} first frames")
    if a.shape[1] > 4 and not a[:, :4].any() and a[:, 4:].any():
        raise ValueError(
            f"{a.shape[1]} action rows whose first 4 are zeros look chunk-aligned (4 * latent_frames, as "
            "Clip.actions are stored); the pipeline takes per-frame actions, one per generated frame: drop the "
            "first 4 zero rows"
        )
    check_num_frames(a.shape[1])
    return a


def chunk_actions(frame_actions: torch.Tensor, num_latent_frames: int, action_chunk: int) -> torch.Tensor:
    """(B, F, D) per-frame -> (B, r*L, D) chunk-aligned, with the data side's own function."""
    rows = [chunk_align_actions(a.numpy(), num_latent_frames, action_chunk)[0] for a in frame_actions]
    return torch.from_numpy(np.stack(rows))


def conditions_to_videos(
    conditions: Mapping[str, object] | None,
    kinds: Sequence[str],
    batch_size: int,
    num_frames: int,
    height: int,
    width: int,
    encoding: str = "engine",
) -> dict[str, torch.Tensor] | None:
    """Condition images per kind -> {kind: (B, 3, F+1, H, W)} in the VAE's range for the
    checkpoint's ``encoding`` ([-1, 1] for "engine", as given for "orv-official"; see
    :func:`orv_engine.occupancy.condition_images.encoded_condition_images`).

    Each kind: (F, H, W) / (F, H, W, 3) arrays (single-channel maps are repeated to RGB;
    uint8 in [0, 255] or float in [0, 1]), optionally with a batch dimension first, and F
    or F+1 frames (a copy of the last frame is added when F are given).
    """
    if conditions is None or len(conditions) == 0:
        return None
    if not kinds:
        raise ValueError(f"conditions {sorted(conditions)} given but the transformer has no condition_kinds")
    missing, unknown = [k for k in kinds if k not in conditions], [k for k in conditions if k not in kinds]
    if missing or unknown:
        raise ValueError(
            f"conditions must be exactly the transformer's condition_kinds {list(kinds)}: "
            f"missing {missing}, unknown {unknown}"
        )
    out = {}
    for kind in kinds:
        value = conditions[kind]
        a = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        a = _to_float01(a)
        if a.ndim == 3 or (a.ndim == 4 and a.shape[-1] == 3 and a.shape[0] in (num_frames, num_frames + 1)):
            a = np.broadcast_to(a[None], (batch_size, *a.shape))
        if a.ndim == 4:
            a = a[..., None]
        if a.ndim != 5 or a.shape[-1] not in (1, 3):
            raise ValueError(
                f"condition {kind!r} must be (frames, H, W) or (frames, H, W, 3) (optionally batched), "
                f"got shape {np.asarray(value).shape}"
            )
        if a.shape[0] != batch_size:
            raise ValueError(f"condition {kind!r} is for {a.shape[0]} samples, the batch has {batch_size}")
        if a.shape[1] not in (num_frames, num_frames + 1):
            raise ValueError(
                f"condition {kind!r} has {a.shape[1]} frames; the video has {num_frames} "
                f"(pass {num_frames} or {num_frames + 1} with the placeholder)"
            )
        if tuple(a.shape[2:4]) != (height, width):
            raise ValueError(
                f"condition {kind!r} has size {a.shape[2]}x{a.shape[3]}, the video is {height}x{width}"
            )
        if a.shape[1] == num_frames:
            a = np.concatenate([a, a[:, -1:]], axis=1)
        x = torch.from_numpy(np.array(a, dtype=np.float32))  # a copy: the input may be a read-only view
        if x.shape[-1] == 1:
            x = x.expand(*x.shape[:-1], 3)
        out[kind] = to_vae_range(x.permute(0, 4, 1, 2, 3), encoding)  # (B, 3, F+1, H, W)
    return out

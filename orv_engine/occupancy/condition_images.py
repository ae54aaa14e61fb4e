"""Condition maps -> the RGB images the VAE encodes, in one fixed way that training,
validation and inference share (and the contact sheets show).

Two encodings (``CONDITION_ENCODINGS``), because a checkpoint only understands the one it was
trained with:

- ``"engine"`` (this project's): :func:`condition_images` gives uint8 RGB,

  - depth: per clip, valid depths mapped linearly to ``[0.1, 1]`` with near = bright (2nd
    and 98th percentile of the clip), background 0; repeated to 3 channels;
  - semantics: label id ``k`` -> ``PALETTE[k % len(PALETTE)]``, background black;

  mapped to ``[-1, 1]`` (``x / 127.5 - 1``) like video frames before the VAE.
- ``"orv-official"`` (upstream ORV's data pipeline, ``_get_cond_frames``): float images fed
  to the VAE as they are, *not* mapped to ``[-1, 1]``,

  - depth: ``clip(depth, 0.01, 0.4) * 2.5``, in ``[0.025, 1]``: near = dark, far = bright,
    one fixed range for every clip. Where there is no depth (``<= 0`` or not finite here)
    the value is the far end, 1: upstream's renderer sets pixels that no Gaussian covers to
    51.2 before the clamp. The range is upstream's, in the units of its reconstructions;
    this project's depths are metres, so anything beyond 0.4 saturates;
  - semantics: upstream's 60-colour palette (:func:`orv_palette`: HSV hues ``i / 60``,
    saturation 0.75, value 0.95, channels truncated to integers, the last colour black)
    divided by 255; background (< 0) black. Ids of 60 and more have no colour upstream
    (an index error there), and are refused here.

  Upstream also *samples* the VAE posterior for these latents (times ``scaling_factor``);
  this module only prepares the images.

Kinds are named ``"depth"`` and ``"semantics"`` here (upstream: ``"depth"`` and ``"label"``).
"""

from __future__ import annotations

import colorsys

import numpy as np

from orv_engine.preprocessing import CONDITION_ENCODINGS, to_vae_range

PALETTE = np.array(
    [[70, 70, 70], [160, 120, 60], [210, 210, 210], [220, 40, 40], [40, 170, 70], [240, 200, 30],
     [40, 90, 220], [170, 60, 200], [60, 200, 200], [250, 140, 40], [120, 200, 90], [200, 120, 160]],
    np.uint8,
)

CONDITION_KINDS = ("depth", "semantics")

ORV_DEPTH_RANGE = (0.01, 0.4)  # upstream's clamp, before the gain
ORV_DEPTH_GAIN = 2.5  # 1 / 0.4: the clamped range -> [0.025, 1]
ORV_NUM_COLORS = 60


def orv_palette(n: int = ORV_NUM_COLORS) -> np.ndarray:
    """Upstream's label colours: ``(n, 3)`` uint8, HSV ``(i / n, 0.75, 0.95)`` with each
    channel truncated (``int(c * 255)``), the last colour black."""
    colors = [[int(c * 255) for c in colorsys.hsv_to_rgb(i / n, 0.75, 0.95)] for i in range(n)]
    colors[-1] = [0, 0, 0]
    return np.array(colors, np.uint8)


ORV_PALETTE = orv_palette()


def depth_image(depth: np.ndarray) -> np.ndarray:
    """(T, H, W) metres (0 = no depth) -> (T, H, W, 3) uint8, near bright, background black."""
    depth = np.asarray(depth, np.float32)
    valid = depth > 0
    lo, hi = np.percentile(depth[valid], [2, 98]) if valid.any() else (0.0, 1.0)
    value = 1.0 - 0.9 * np.clip((depth - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    gray = np.where(valid, value, 0.0)
    return np.repeat((gray * 255).round().astype(np.uint8)[..., None], 3, axis=-1)


def semantic_image(labels: np.ndarray) -> np.ndarray:
    """(T, H, W) int label ids (< 0 = background) -> (T, H, W, 3) uint8 palette colours."""
    labels = np.asarray(labels)
    out = PALETTE[np.mod(labels, len(PALETTE))]
    out[labels < 0] = 0
    return out


def _check_kinds(maps: dict[str, np.ndarray], kinds) -> list[str]:
    kinds = list(kinds)
    for kind in kinds:
        if kind not in CONDITION_KINDS:
            raise ValueError(f"condition kind {kind!r} is unknown (known: {', '.join(CONDITION_KINDS)})")
        if kind not in maps:
            raise ValueError(f"condition kind {kind!r} has no map (maps hold: {', '.join(maps) or 'none'})")
        if np.ndim(maps[kind]) != 3:
            raise ValueError(f"{kind} map must be (T, H, W), got shape {np.shape(maps[kind])}")
    return kinds


def condition_images(maps: dict[str, np.ndarray], kinds) -> dict[str, np.ndarray]:
    """{kind: raw map (T, H, W)} -> {kind: (T, H, W, 3) uint8} for each of ``kinds``."""
    convert = {"depth": depth_image, "semantics": semantic_image}
    return {kind: convert[kind](maps[kind]) for kind in kinds}


def orv_depth_input(depth: np.ndarray) -> np.ndarray:
    """(T, H, W) depth -> (T, H, W, 3) float32 in ``[0.025, 1]``, upstream's (module docstring)."""
    depth = np.asarray(depth, np.float32)
    lo, hi = ORV_DEPTH_RANGE
    value = np.clip(depth, lo, hi) * np.float32(ORV_DEPTH_GAIN)
    value = np.where(np.isfinite(depth) & (depth > 0), value, np.float32(hi * ORV_DEPTH_GAIN))
    return np.repeat(value.astype(np.float32)[..., None], 3, axis=-1)


def orv_semantic_input(labels: np.ndarray) -> np.ndarray:
    """(T, H, W) int label ids (< 0 = background) -> (T, H, W, 3) float32 in [0, 1], upstream's
    60-colour palette / 255."""
    labels = np.asarray(labels)
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.isfinite(labels).all() or (labels != np.round(labels)).any():
            raise ValueError(f"semantics map must hold integer label ids, got dtype {labels.dtype} with fractions")
        labels = labels.astype(np.int64)
    if labels.size and labels.max() >= ORV_NUM_COLORS:
        raise ValueError(
            f"semantics map: label id {int(labels.max())} has no colour in upstream's "
            f"{ORV_NUM_COLORS}-colour palette (ids 0..{ORV_NUM_COLORS - 1}, < 0 = background)"
        )
    palette = ORV_PALETTE.astype(np.float32) / np.float32(255.0)
    out = palette[np.clip(labels, 0, ORV_NUM_COLORS - 1)]
    out[labels < 0] = 0.0
    return out


def encoded_condition_images(maps: dict[str, np.ndarray], kinds, encoding: str) -> dict[str, np.ndarray]:
    """{kind: raw map (T, H, W)} -> {kind: (T, H, W, 3) float32 in [0, 1]}, the images of
    ``encoding`` (module docstring) before the VAE's value range: what the pipeline's
    ``conditions`` take and the contact sheets can show."""
    if encoding not in CONDITION_ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(map(repr, CONDITION_ENCODINGS))}, got {encoding!r}")
    kinds = _check_kinds(maps, kinds)
    if encoding == "engine":
        return {kind: image.astype(np.float32) / np.float32(255.0) for kind, image in condition_images(maps, kinds).items()}
    convert = {"depth": orv_depth_input, "semantics": orv_semantic_input}
    return {kind: convert[kind](maps[kind]) for kind in kinds}


def condition_vae_inputs(maps: dict[str, np.ndarray], kinds, encoding: str) -> dict[str, np.ndarray]:
    """{kind: raw map (T, H, W)} -> {kind: (T, H, W, 3) float32}, already in the range the VAE
    must receive under ``encoding`` (module docstring): ``"engine"``: :func:`condition_images`
    mapped to ``[-1, 1]``; ``"orv-official"``: upstream's images, unmapped."""
    if encoding == "engine":  # exactly the trainer's uint8 -> [-1, 1] mapping
        images = condition_images(maps, _check_kinds(maps, kinds))
        return {kind: image.astype(np.float32) / np.float32(127.5) - np.float32(1.0) for kind, image in images.items()}
    return {kind: to_vae_range(image, encoding) for kind, image in encoded_condition_images(maps, kinds, encoding).items()}

"""Condition maps -> VAE inputs under this project's encoding and upstream ORV's."""

from __future__ import annotations

import colorsys

import numpy as np
import pytest

from orv_engine.occupancy.condition_images import (
    CONDITION_ENCODINGS,
    ORV_PALETTE,
    condition_images,
    condition_vae_inputs,
    depth_image,
    semantic_image,
)


def maps(t: int = 3, h: int = 4, w: int = 5, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    depth = rng.uniform(0.0, 1.2, (t, h, w)).astype(np.float32)
    depth[0, 0, 0] = 0.0  # no depth
    labels = rng.integers(-1, 12, (t, h, w)).astype(np.int32)
    return {"depth": depth, "semantics": labels}


def upstream_colour(i: int, n: int = 60) -> np.ndarray:
    """generate_colors' recipe, written out: HSV (i/n, 0.75, 0.95), int-truncated, last black."""
    if i == n - 1:
        return np.zeros(3)
    return np.array([int(c * 255) for c in colorsys.hsv_to_rgb(i / n, 0.75, 0.95)], np.float64)


def test_encodings():
    assert CONDITION_ENCODINGS == ("engine", "orv-official")


def test_engine_is_todays_images_mapped_to_minus_one_one():
    m = maps()
    out = condition_vae_inputs(m, ["depth", "semantics"], "engine")
    images = condition_images(m, ["depth", "semantics"])
    for kind in ("depth", "semantics"):
        assert out[kind].dtype == np.float32 and out[kind].shape == (3, 4, 5, 3)
        np.testing.assert_array_equal(out[kind], images[kind].astype(np.float32) / 127.5 - 1)
    # the same float32 values as the trainer's conversion of the uint8 images
    import torch

    trainer = torch.from_numpy(images["depth"]).float().div(127.5).sub(1.0).numpy()
    np.testing.assert_array_equal(out["depth"], trainer)


def test_condition_images_is_unchanged():
    m = maps()
    images = condition_images(m, ["semantics", "depth"])
    assert list(images) == ["semantics", "depth"]
    np.testing.assert_array_equal(images["depth"], depth_image(m["depth"]))
    np.testing.assert_array_equal(images["semantics"], semantic_image(m["semantics"]))
    assert images["depth"].dtype == np.uint8


def test_orv_depth_values():
    depth = np.array([[[0.005, 0.01, 0.2, 0.4, 1.0, 0.0, -1.0, np.nan]]], np.float32)
    out = condition_vae_inputs({"depth": depth}, ["depth"], "orv-official")["depth"]
    assert out.shape == (1, 1, 8, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], out[..., 1])
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    # clamp to [0.01, 0.4], times 2.5; no depth (<= 0, NaN) = upstream's background = far = 1
    np.testing.assert_allclose(out[0, 0, :, 0], [0.025, 0.025, 0.5, 1.0, 1.0, 1.0, 1.0, 1.0], rtol=1e-6)
    assert np.isfinite(out).all() and out.min() >= 0.025 - 1e-7 and out.max() <= 1.0 + 1e-7


def test_orv_palette_is_upstreams():
    assert ORV_PALETTE.shape == (60, 3) and ORV_PALETTE.dtype == np.uint8
    for i in range(60):
        np.testing.assert_array_equal(ORV_PALETTE[i], upstream_colour(i))
    # hue 0: (0.95, 0.2375, 0.2375) * 255 = (242.25, 60.56, 60.56) -> truncated, not rounded
    np.testing.assert_array_equal(ORV_PALETTE[0], [242, 60, 60])


def test_orv_label_values():
    labels = np.array([[[0, 1, 30, 58, 59, -1, -7]]], np.int32)
    out = condition_vae_inputs({"semantics": labels}, ["semantics"], "orv-official")["semantics"]
    assert out.shape == (1, 1, 7, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0, 0], upstream_colour(0) / 255, rtol=1e-6)
    np.testing.assert_allclose(out[0, 0, 0], [242 / 255, 60 / 255, 60 / 255], rtol=1e-6)
    for j, label in enumerate([1, 30, 58]):
        np.testing.assert_allclose(out[0, 0, j + 1], upstream_colour(label) / 255, rtol=1e-6)
    assert not out[0, 0, 4:].any()  # label 59 (upstream's last colour) and background: black
    assert out.min() >= 0 and out.max() <= 1


def test_orv_labels_as_whole_floats_are_accepted_and_other_values_refused():
    labels = np.array([[[0.0, 3.0, -1.0]]], np.float32)
    out = condition_vae_inputs({"semantics": labels}, ["semantics"], "orv-official")["semantics"]
    np.testing.assert_allclose(out[0, 0, 1], upstream_colour(3) / 255, rtol=1e-6)
    with pytest.raises(ValueError, match="integer label ids"):
        condition_vae_inputs({"semantics": np.full((1, 1, 1), 2.5)}, ["semantics"], "orv-official")
    with pytest.raises(ValueError, match="label id 60 has no colour"):
        condition_vae_inputs({"semantics": np.full((1, 2, 2), 60)}, ["semantics"], "orv-official")


def test_both_kinds_and_only_the_kinds_asked_for():
    m = maps()
    out = condition_vae_inputs(m, ("semantics",), "orv-official")
    assert list(out) == ["semantics"]
    both = condition_vae_inputs(m, ["depth", "semantics"], "orv-official")
    assert {k: v.shape for k, v in both.items()} == {"depth": (3, 4, 5, 3), "semantics": (3, 4, 5, 3)}
    assert both["depth"][0, 0, 0, 0] == pytest.approx(1.0)  # the no-depth pixel of maps()


def test_bad_arguments_name_the_problem():
    m = maps()
    with pytest.raises(ValueError, match="encoding must be one of 'engine', 'orv-official'"):
        condition_vae_inputs(m, ["depth"], "official")
    with pytest.raises(ValueError, match="kind 'label' is unknown"):
        condition_vae_inputs(m, ["label"], "orv-official")
    with pytest.raises(ValueError, match="kind 'depth' has no map"):
        condition_vae_inputs({"semantics": m["semantics"]}, ["depth"], "engine")
    with pytest.raises(ValueError, match="depth map must be \\(T, H, W\\)"):
        condition_vae_inputs({"depth": m["depth"][0]}, ["depth"], "orv-official")

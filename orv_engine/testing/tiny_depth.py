"""Tiny random-weight Depth Pro and Depth Anything folders, in transformers' on-disk format.

Why: the RGB-to-occupancy depth stage (:mod:`orv_engine.occupancy.from_rgb.depth`) loads
``apple/DepthPro-hf`` or a Depth Anything V2 checkpoint from a local folder; neither can be
downloaded here, yet the loader, the pre/post-processing and the metric-depth arithmetic
must run on exactly that format. Each builder writes ``config.json`` (with the real
``model_type``), ``model.safetensors`` and ``preprocessor_config.json`` with
``save_pretrained``; a forward pass takes a few milliseconds on CPU. The depths mean nothing.

Depth Pro keeps every ratio its multi-resolution patch encoder relies on, at 1/24 of the
size: processor images 1536 -> 64 px, encoder patches 384 -> 16 px, with the real scale
ratios (0.25, 0.5, 1) and overlaps (0, 0.5, 0.25), hence the same 1 / 3 x 3 / 5 x 5 patch
grids. Its ViT patches are 8 px (2 x 2 tokens per encoder patch instead of 24 x 24); the
decoder always upsamples the token grid 64 times, so the predicted canonical inverse depth
is 128 x 128 here (1536 x 1536 for the real model). The heads' last layers are set so the
canonical inverse depth is positive and the field of view near 60 degrees, as a trained
model's would be.

    python -m orv_engine.testing.tiny_depth outputs/tiny-depth-pro depth_pro
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

DEPTH_PRO_IMAGE_SIZE = 64  # the processor's square input (1536 in apple/DepthPro-hf)
DEPTH_PRO_FOV_DEGREES = 60.0  # the tiny FOV head's bias: a plausible horizontal field of view


def _vit(hidden_size: int, image_size: int, patch_size: int, layers: int) -> dict:
    return {"model_type": "dinov2", "hidden_size": hidden_size, "num_hidden_layers": layers,
            "num_attention_heads": 2, "intermediate_size": 2 * hidden_size, "patch_size": patch_size,
            "image_size": image_size}


def build_tiny_depth_pro(folder, seed: int = 0) -> Path:
    """Write a tiny ``DepthProForDepthEstimation`` (with its FOV head) and its processor."""
    from transformers import DepthProConfig, DepthProForDepthEstimation, DepthProImageProcessor

    folder = Path(folder)
    torch.manual_seed(seed)
    patch = DEPTH_PRO_IMAGE_SIZE // 4  # the smallest scaled image (ratio 0.25) is one patch
    vit = _vit(hidden_size=16, image_size=patch, patch_size=8, layers=2)
    config = DepthProConfig(
        fusion_hidden_size=16, patch_size=patch, intermediate_hook_ids=[1, 0], intermediate_feature_dims=[8, 8],
        scaled_images_ratios=[0.25, 0.5, 1.0], scaled_images_overlap_ratios=[0.0, 0.5, 0.25],
        scaled_images_feature_dims=[16, 16, 8], merge_padding_value=3, use_fov_model=True, num_fov_head_layers=2,
        image_model_config=dict(vit), patch_model_config=dict(vit), fov_model_config=dict(vit),
    )
    model = DepthProForDepthEstimation(config).eval()
    with torch.no_grad():
        # canonical inverse depth = ReLU(conv(...)): a positive bias keeps it away from 0
        model.head.layers[-2].weight.abs_().mul_(0.05)
        model.head.layers[-2].bias.fill_(1.0)
        # field of view (degrees) = last conv of the FOV head: near 60, varying a little per image
        last = model.fov_model.head.layers[-1]
        last.weight.mul_(0.1)
        last.bias.fill_(DEPTH_PRO_FOV_DEGREES)
    model.save_pretrained(folder)
    DepthProImageProcessor(size={"height": DEPTH_PRO_IMAGE_SIZE, "width": DEPTH_PRO_IMAGE_SIZE}).save_pretrained(folder)
    return folder


def build_tiny_depth_anything(folder, seed: int = 0) -> Path:
    """Write a tiny relative ``DepthAnythingForDepthEstimation`` (DINOv2 backbone) and its processor."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config, DPTImageProcessor

    folder = Path(folder)
    torch.manual_seed(seed)
    backbone = Dinov2Config(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64,
                            patch_size=14, image_size=56, out_indices=[1, 2, 3, 4], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=32,
                                 neck_hidden_sizes=[8, 16, 32, 32], reassemble_factors=[4, 2, 1, 0.5],
                                 fusion_hidden_size=16, head_hidden_size=8)
    model = DepthAnythingForDepthEstimation(config).eval()
    with torch.no_grad():  # relative disparity = ReLU(...): keep it positive
        model.head.conv3.bias.fill_(1.0)
    model.save_pretrained(folder)
    DPTImageProcessor(size={"height": 56, "width": 56}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(folder)
    return folder


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("kind", choices=["depth_pro", "depth_anything"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    build = build_tiny_depth_pro if args.kind == "depth_pro" else build_tiny_depth_anything
    print(build(args.folder, seed=args.seed))


if __name__ == "__main__":
    main()

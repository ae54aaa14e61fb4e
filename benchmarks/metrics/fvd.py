"""FVD features: the Kinetics-400 I3D, from a local file, in two published variants.

``styleganv`` (default): StyleGAN-V's ``i3d_torchscript.pt``, the TorchScript port of the
TF-Hub I3D that the original FVD (Unterthiner et al.) uses; its 400-d output with
``return_features=True`` is the logits before the softmax. StyleGAN-V hands it uint8
clips with ``rescale=True, resize=True``; here, as the PyTorch FVD wrappers that load this
file do (e.g. common_metrics_on_video_quality), clips are resized to 224x224 (bilinear, per
frame) and scaled to [-1, 1] before the call and the network is called with
``rescale=False, resize=False, return_features=True``, so one preprocessing serves both
variants. The Gaussian is fitted with the biased covariance, as StyleGAN-V's
``FeatureStats.get_mean_cov`` does.

``videogpt``: VideoGPT's / TATS' ``i3d_pretrained_400.pt``, a state dict for the PyTorch
``InceptionI3d`` (taken from the ``cd-fvd`` package rather than copied). VideoGPT resizes
the shorter side to 224, centre-crops 224x224, scales to [-1, 1] and uses the logits with
the unbiased covariance.

FVD at clip length L uses the first L frames of every clip (StyleGAN-V reads generated
clips from offset 0 too). The Kinetics I3D pools time by 8 and then averages over 2
steps, so it needs at least 9 frames; Table 1's protocol uses 16 (1 given + 15 predicted).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from cdfvd.third_party.i3d.pytorch_i3d import InceptionI3d

from orv_engine.device import resolve_device

VARIANTS = ("styleganv", "videogpt")
RESOLUTION = 224
COVARIANCE_DDOF = {"styleganv": 0, "videogpt": 1}


class ClipTooShortError(ValueError):
    """The I3D network cannot take clips this short."""


def load_i3d(path: str | Path, variant: str = "styleganv", device: str | torch.device = "auto") -> torch.nn.Module:
    """Load the I3D of ``variant`` from ``path`` onto ``device``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown I3D variant {variant!r}: one of {VARIANTS}")
    path, device = Path(path), resolve_device(device)
    if not path.is_file():
        raise FileNotFoundError(f"I3D weights not found: {path}")
    if variant == "styleganv":
        try:
            model = torch.jit.load(str(path), map_location=device)
        except RuntimeError as error:
            raise ValueError(
                f"{path} is not a TorchScript file (StyleGAN-V's i3d_torchscript.pt); for "
                f"VideoGPT's i3d_pretrained_400.pt state dict use variant 'videogpt': {str(error)[:200]}"
            ) from error
        return model.eval()
    model = InceptionI3d(400, in_channels=3)
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state_dict)
    except Exception as error:  # a TorchScript archive, a wrong architecture, ...
        raise ValueError(
            f"{path} is not a state dict of VideoGPT's InceptionI3d (i3d_pretrained_400.pt); "
            f"for StyleGAN-V's i3d_torchscript.pt use variant 'styleganv': {str(error)[:200]}"
        ) from error
    return model.eval().to(device)


def preprocess(clips: torch.Tensor, variant: str) -> torch.Tensor:
    """``(B, T, H, W, 3) uint8`` -> ``(B, 3, T, 224, 224)`` float in [-1, 1]."""
    b, t, h, w, c = clips.shape
    frames = clips.reshape(b * t, h, w, c).permute(0, 3, 1, 2).float()
    if variant == "videogpt":  # shorter side to 224, then centre crop
        scale = RESOLUTION / min(h, w)
        size = (max(RESOLUTION, math.ceil(h * scale)), max(RESOLUTION, math.ceil(w * scale)))
        frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
        top, left = (size[0] - RESOLUTION) // 2, (size[1] - RESOLUTION) // 2
        frames = frames[:, :, top : top + RESOLUTION, left : left + RESOLUTION]
    else:
        frames = F.interpolate(frames, size=(RESOLUTION, RESOLUTION), mode="bilinear", align_corners=False)
    frames = frames * (2.0 / 255.0) - 1.0
    return frames.reshape(b, t, c, RESOLUTION, RESOLUTION).permute(0, 2, 1, 3, 4).contiguous()


class I3DFeatures:
    """Callable: ``(B, T, H, W, 3) uint8`` clips -> ``(B, 400)`` I3D logits."""

    def __init__(self, path: str | Path, variant: str = "styleganv", device: str | torch.device = "auto"):
        self.variant = variant
        self.device = resolve_device(device)
        self.model = load_i3d(path, variant, self.device)
        self.ddof = COVARIANCE_DDOF[variant]

    @torch.no_grad()
    def __call__(self, clips: np.ndarray) -> np.ndarray:
        x = preprocess(torch.as_tensor(clips).to(self.device), self.variant)
        try:
            if self.variant == "styleganv":
                out = self.model(x, rescale=False, resize=False, return_features=True)
            else:
                out = self.model(x)
        except RuntimeError as error:
            if "smaller than kernel" in str(error) or "too small" in str(error):
                raise ClipTooShortError(
                    f"the I3D network cannot take {clips.shape[1]}-frame clips (the Kinetics I3D "
                    f"needs at least 9 frames; FVD is usually reported at 16): {str(error).splitlines()[-1][:200]}"
                ) from error
            raise
        return out.reshape(out.shape[0], -1).double().cpu().numpy()

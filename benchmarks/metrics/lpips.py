"""LPIPS per frame (optional): the ``lpips`` package with its backbone from a local file.

The ``lpips`` package ships its learned linear layers, but takes the backbone (AlexNet,
VGG16 or SqueezeNet 1.1) from torchvision's ImageNet weights, which it downloads. Here
the backbone is built empty (``pnet_rand=True``) and filled from the torchvision state
dict the user gives (``alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth`` or
``squeezenet1_1-b8a52dc0.pth``); without that file LPIPS is not computed, and asking for
it without the file is an error that says which file is missing.

Inputs are RGB frames scaled to [-1, 1] at their own size (the package's convention);
averaged like PSNR/SSIM: per frame, over a clip's frames, over clips.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import lpips as lpips_package
import numpy as np
import torch

from orv_engine.device import resolve_device

BACKBONE_FILES = {
    "alex": "alexnet-owt-7be5be79.pth",
    "vgg": "vgg16-397923af.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}


def _backbone_state_dict(backbone: torch.nn.Module, torchvision_state: dict) -> dict:
    """torchvision ``features.<i>.*`` keys -> lpips ``slice<k>.<i>.*`` keys."""
    where = {name: slice_name for slice_name, part in backbone.named_children() for name, _ in part.named_children()}
    remapped = {}
    for key, value in torchvision_state.items():
        head, _, rest = key.partition(".")
        if head != "features":
            continue  # the classifier is not part of LPIPS
        index, _, param = rest.partition(".")
        if index in where:
            remapped[f"{where[index]}.{index}.{param}"] = value
    return remapped


def load_lpips(backbone_path: str | Path | None, net: str = "alex", device: str | torch.device = "auto"):
    """The LPIPS v0.1 model with the torchvision backbone weights at ``backbone_path``."""
    if net not in BACKBONE_FILES:
        raise ValueError(f"unknown LPIPS network {net!r}: one of {sorted(BACKBONE_FILES)}")
    if backbone_path is None or not Path(backbone_path).is_file():
        raise FileNotFoundError(
            f"LPIPS needs the torchvision ImageNet weights of its backbone as a local file "
            f"({BACKBONE_FILES[net]} for net={net!r}), got {backbone_path!r}; they cannot be "
            "downloaded here. Leave LPIPS out, or pass the file."
        )
    with warnings.catch_warnings():  # torchvision's 'pretrained=' deprecation inside lpips
        warnings.simplefilter("ignore", UserWarning)
        model = lpips_package.LPIPS(net=net, version="0.1", pretrained=True, pnet_rand=True, verbose=False)
    state = torch.load(backbone_path, map_location="cpu", weights_only=True)
    try:
        model.net.load_state_dict(_backbone_state_dict(model.net, state), strict=True)
    except RuntimeError as error:
        raise ValueError(
            f"{backbone_path} is not torchvision's {net} state dict ({BACKBONE_FILES[net]}): {str(error)[:300]}"
        ) from error
    return model.eval().to(resolve_device(device))


class LPIPSFrames:
    """Callable: two ``(T, H, W, 3) uint8`` stacks -> ``(T,)`` LPIPS distances."""

    def __init__(self, backbone_path: str | Path | None, net: str = "alex", device: str | torch.device = "auto",
                 batch_size: int = 32):
        self.device = resolve_device(device)
        self.model = load_lpips(backbone_path, net, self.device)
        self.batch_size = batch_size

    def _scaled(self, frames: np.ndarray) -> torch.Tensor:
        return torch.as_tensor(frames).to(self.device).permute(0, 3, 1, 2).float() * (2.0 / 255.0) - 1.0

    @torch.no_grad()
    def __call__(self, generated: np.ndarray, ground_truth: np.ndarray) -> np.ndarray:
        if generated.shape != ground_truth.shape:
            raise ValueError(f"frame stacks differ in shape: {generated.shape} vs {ground_truth.shape}")
        out = []
        for i in range(0, len(generated), self.batch_size):
            d = self.model(self._scaled(generated[i : i + self.batch_size]),
                           self._scaled(ground_truth[i : i + self.batch_size]))
            out.append(d.flatten().double().cpu().numpy())
        return np.concatenate(out)

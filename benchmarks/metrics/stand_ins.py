"""Random-weight networks of the real architectures, saved in the real on-disk formats.

No model hub is reachable here, so the tests and the CPU speed benchmark build these and
load them through exactly the code a user runs with the real files:

* FID: pytorch-fid's FID InceptionV3 classifier (torchvision ``Inception3`` with 1008
  classes and ``FIDInceptionA/C/E`` blocks), saved as a state dict like
  ``pt_inception-2015-12-05-6726825d.pth``.
* FVD, StyleGAN-V: the PyTorch ``InceptionI3d`` (from ``cd-fvd``) traced and wrapped in a
  scripted module with StyleGAN-V's call signature ``(x, rescale, resize,
  return_features)``, saved with ``torch.jit.save`` like ``i3d_torchscript.pt``. Tracing
  freezes the "same" paddings for the traced clip length; for other lengths it still runs
  the real layers, which is all a stand-in must do.
* FVD, VideoGPT: the ``InceptionI3d`` state dict, like ``i3d_pretrained_400.pt``.
* LPIPS: torchvision's AlexNet state dict, like ``alexnet-owt-7be5be79.pth``.

Speed does not depend on the weights, so the benchmark's figures hold for the real files.
Convolutions get He-normal weights so activations keep their scale through the depth
(PyTorch's default init shrinks them towards zero and every clip would look alike).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from cdfvd.third_party.i3d.pytorch_i3d import InceptionI3d
from pytorch_fid import inception as pfi
from torch import Tensor, nn


def _he_init(model: nn.Module, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Conv3d, nn.Linear)):
            fan_in = module.weight[0].numel()
            with torch.no_grad():
                module.weight.copy_(torch.randn(module.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
                if module.bias is not None:
                    module.bias.zero_()
    return model.eval()


def fid_inception_classifier(seed: int = 0) -> nn.Module:
    """pytorch-fid's FID Inception (the module its weight file is the state dict of)."""
    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return _he_init(net, seed)


def save_fid_inception(path: str | Path, seed: int = 0) -> Path:
    path = Path(path)
    torch.save(fid_inception_classifier(seed).state_dict(), path)
    return path


def i3d(seed: int = 0) -> nn.Module:
    return _he_init(InceptionI3d(400, in_channels=3), seed)


def save_i3d_state_dict(path: str | Path, seed: int = 0) -> Path:
    """Like VideoGPT's ``i3d_pretrained_400.pt``."""
    path = Path(path)
    torch.save(i3d(seed).state_dict(), path)
    return path


class StyleGANVI3D(nn.Module):
    """StyleGAN-V's detector interface around an I3D: uint8-range or [-1, 1] input."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False) -> Tensor:
        x = x.float()
        if rescale:
            x = x * (2.0 / 255.0) - 1.0
        if resize:
            x = F.interpolate(x, size=[x.shape[2], 224, 224], mode="trilinear", align_corners=False)
        logits = self.net(x)
        if return_features:
            return logits
        return torch.softmax(logits, dim=1)


def save_i3d_torchscript(path: str | Path, seed: int = 0, frames: int = 16) -> Path:
    """Like StyleGAN-V's ``i3d_torchscript.pt``."""
    path = Path(path)
    example = torch.zeros(1, 3, frames, 224, 224)
    with torch.no_grad():
        traced = torch.jit.trace(i3d(seed), example, check_trace=False)
    torch.jit.save(torch.jit.script(StyleGANVI3D(traced)), str(path))
    return path


def save_alexnet(path: str | Path, seed: int = 0) -> Path:
    """Like torchvision's ``alexnet-owt-7be5be79.pth`` (LPIPS backbone)."""
    path = Path(path)
    torch.save(_he_init(torchvision.models.alexnet(weights=None), seed).state_dict(), path)
    return path

"""FID features: pytorch-fid's InceptionV3 (pool3, 2048-d) with weights from a local file.

pytorch-fid is the reference PyTorch FID (it reproduces the TensorFlow numbers), so its
network is used as it is: ``InceptionV3`` with the FID variants of the Inception blocks
(``FIDInceptionA/C/E``), input resized to 299x299 bilinearly and scaled to [-1, 1] inside
the network. The only thing changed is where the weights come from: pytorch-fid fetches
``pt_inception-2015-12-05-6726825d.pth`` from GitHub, which this machine and many
clusters cannot reach, so its URL loader is pointed at the local state dict for the
duration of the constructor.

FID is computed over frames: every frame of every clip is one sample, and the Fréchet
distance uses pytorch-fid's unbiased covariance.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
from pytorch_fid import inception as _pfi

from orv_engine.device import resolve_device

FEATURE_DIM = 2048
COVARIANCE_DDOF = 1  # np.cov default, as pytorch-fid


@contextlib.contextmanager
def _weights_from(state_dict: dict):
    original = _pfi.load_state_dict_from_url
    _pfi.load_state_dict_from_url = lambda *args, **kwargs: state_dict
    try:
        yield
    finally:
        _pfi.load_state_dict_from_url = original


def load_inception(path: str | Path, device: str | torch.device = "auto") -> _pfi.InceptionV3:
    """pytorch-fid's FID InceptionV3 (pool3 output) with the state dict at ``path``.

    ``path`` is pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (or any state dict of
    the same architecture).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"FID Inception weights not found: {path} (pytorch-fid's pt_inception-2015-12-05-6726825d.pth)"
        )
    state_dict = torch.load(path, map_location="cpu", weights_only=True)
    try:
        with _weights_from(state_dict):
            model = _pfi.InceptionV3([_pfi.InceptionV3.BLOCK_INDEX_BY_DIM[FEATURE_DIM]])
    except RuntimeError as error:  # load_state_dict: missing/unexpected keys or shapes
        raise ValueError(
            f"{path} is not a state dict of pytorch-fid's FID InceptionV3 "
            f"(pt_inception-2015-12-05-*.pth): {str(error)[:300]}"
        ) from error
    return model.eval().to(resolve_device(device))


class InceptionFeatures:
    """Callable: ``(N, H, W, 3) uint8`` frames -> ``(N, 2048)`` pool3 features."""

    def __init__(self, path: str | Path, device: str | torch.device = "auto"):
        self.device = resolve_device(device)
        self.model = load_inception(path, self.device)

    @torch.no_grad()
    def __call__(self, frames: np.ndarray) -> np.ndarray:
        x = torch.as_tensor(frames).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        pooled = self.model(x)[0]  # (N, 2048, 1, 1); resize to 299 happens inside
        return pooled.flatten(1).double().cpu().numpy()

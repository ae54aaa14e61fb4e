"""Occ2GS adaptive scaling rule (supplementary Sec. 10.1.2): sigma = k2 * z_hat ** k1, with
z_hat = (z - min z) / (max z - min z) + 1 in [1, 2] the camera depth normalised over the
Gaussians in view.

The paper's k2 is in canonical units where a voxel is 0.001; ``reference_voxel_size`` makes
sigma follow the voxel size, so a grid with other voxels keeps the same look.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

SCALE_PRESETS: dict[str, tuple[float, float]] = {
    "bridge": (3.7, 0.00023),
    "droid": (3.2, 0.00047),
    "rt1": (3.2, 0.00047),
}


@dataclass(frozen=True)
class GaussianScaleRule:
    k1: float = 3.7  # exponent: mostly shapes far Gaussians
    k2: float = 0.00023  # base scale: size of the nearest Gaussians (canonical units)
    reference_voxel_size: float = 0.001  # voxel size the (k1, k2) were tuned for

    @classmethod
    def preset(cls, dataset: str) -> "GaussianScaleRule":
        if dataset not in SCALE_PRESETS:
            raise ValueError(f"dataset: no Occ2GS scale preset for {dataset!r}; known: {sorted(SCALE_PRESETS)}")
        k1, k2 = SCALE_PRESETS[dataset]
        return cls(k1, k2)

    def sigma(self, depth: torch.Tensor, depth_range: tuple[float, float], voxel_size: float) -> torch.Tensor:
        """World-space standard deviation of each Gaussian from its camera depth."""
        z_min, z_max = depth_range
        span = z_max - z_min
        z_hat = 1.0 + ((depth - z_min) / span).clamp(0.0, 1.0) if span > 0 else torch.ones_like(depth)
        return self.k2 * (voxel_size / self.reference_voxel_size) * z_hat.pow(self.k1)

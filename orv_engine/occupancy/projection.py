"""Project isotropic 3D Gaussians to screen-space ellipses, as diff-gaussian-rasterization
does (which the paper adapted): EWA local affine projection, a 0.3 px^2 low-pass dilation,
and a footprint of ``ceil(3 sigma)`` pixels around the rounded centre.

Shared by the fast tiled renderer and the dense reference so both composite exactly the
same Gaussian-pixel pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from orv_engine.occupancy.gaussian_scale import GaussianScaleRule


@dataclass(frozen=True)
class SplatSettings:
    scale_rule: GaussianScaleRule = GaussianScaleRule()
    opacity: float = 1.0  # the paper's non-learnable opacity
    alpha_max: float = 0.99  # as in 3DGS: a single Gaussian never fully blocks a pixel
    alpha_min: float = 1.0 / 255.0  # fragments fainter than this are skipped (3DGS)
    dilation: float = 0.3  # px^2 added to the 2D covariance (3DGS anti-aliasing)
    background_alpha: float = 0.1  # pixels with less accumulated alpha are background
    near: float = 1e-3  # Gaussians closer than this to the camera are culled


@dataclass
class ProjectedGaussians:
    """Gaussians in view, sorted front to back."""

    index: torch.Tensor  # (G,) long, rows of the input means
    depth: torch.Tensor  # (G,) float32 camera z
    center_col: torch.Tensor  # (G,) long, rounded centre pixel
    center_row: torch.Tensor
    offset_u: torch.Tensor  # (G,) float32, u - center_col  (in [-0.5, 0.5])
    offset_v: torch.Tensor
    conic: torch.Tensor  # (G, 3) float32: inverse 2D covariance (a, b, c)
    radius: torch.Tensor  # (G,) long footprint half-width in pixels


def world_to_camera(cam_to_world: torch.Tensor) -> torch.Tensor:
    rotation = cam_to_world[:3, :3].T
    return torch.cat([torch.cat([rotation, -(rotation @ cam_to_world[:3, 3:])], 1),
                      cam_to_world[3:]], 0)


def visible_depth_range(means: torch.Tensor, K: torch.Tensor, cam_to_world: torch.Tensor,
                        height: int, width: int, near: float):
    """(min z, max z) of Gaussian centres inside the view frustum, or None if none are."""
    view = world_to_camera(cam_to_world.to(means.dtype))
    cam = means @ view[:3, :3].T + view[:3, 3]
    z = cam[:, 2]
    front = z > near
    u = K[0, 0] * cam[:, 0] / z + K[0, 2]
    v = K[1, 1] * cam[:, 1] / z + K[1, 2]
    inside = front & (u > -0.5) & (u < width - 0.5) & (v > -0.5) & (v < height - 0.5)
    if not bool(inside.any()):
        return None
    zi = z[inside]
    return float(zi.min()), float(zi.max())


def project(means: torch.Tensor, K: torch.Tensor, cam_to_world: torch.Tensor, height: int,
            width: int, voxel_size: float, settings: SplatSettings,
            depth_range: tuple[float, float] | None = None) -> ProjectedGaussians:
    """Cull, project and sort front-to-back the Gaussians centred at ``means`` (N, 3)."""
    means = means.to(torch.float32)
    K = K.to(torch.float32)
    view = world_to_camera(cam_to_world.to(torch.float64)).to(torch.float32)
    cam = torch.addmm(view[:3, 3], means, view[:3, :3].T)
    x, y, z = cam.unbind(1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    front = z > settings.near
    z_safe = torch.where(front, z, torch.ones_like(z))
    u = fx * x / z_safe + cx
    v = fy * y / z_safe + cy
    if depth_range is None:
        centre_in = front & (u > -0.5) & (u < width - 0.5) & (v > -0.5) & (v < height - 0.5)
        depth_range = (float(z[centre_in].min()), float(z[centre_in].max())) if bool(centre_in.any()) else (1.0, 1.0)
    sigma = settings.scale_rule.sigma(z_safe, depth_range, voxel_size)
    # EWA: cov2d = sigma^2 J J^T with J the Jacobian of the projection (off-axis terms
    # clamped to 1.3x the field of view, like 3DGS), plus the dilation.
    limit_x = 1.3 * (0.5 * width / fx)
    limit_y = 1.3 * (0.5 * height / fy)
    tx = (x / z_safe).clamp(-limit_x, limit_x)
    ty = (y / z_safe).clamp(-limit_y, limit_y)
    scale2 = (sigma / z_safe) ** 2
    cov_xx = scale2 * fx * fx * (1 + tx * tx) + settings.dilation
    cov_yy = scale2 * fy * fy * (1 + ty * ty) + settings.dilation
    cov_xy = scale2 * fx * fy * tx * ty
    radius = torch.ceil(3.0 * torch.sqrt(torch.maximum(cov_xx, cov_yy))).long()
    col = torch.floor(u + 0.5).long()
    row = torch.floor(v + 0.5).long()
    keep = front & (col + radius >= 0) & (col - radius < width) & (row + radius >= 0) & (row - radius < height)
    index = torch.nonzero(keep).squeeze(1)
    order = torch.argsort(z[index], stable=True)
    index = index[order]
    det = cov_xx[index] * cov_yy[index] - cov_xy[index] ** 2
    conic = torch.stack([cov_yy[index] / det, -cov_xy[index] / det, cov_xx[index] / det], 1)
    return ProjectedGaussians(
        index=index, depth=z[index], center_col=col[index], center_row=row[index],
        offset_u=u[index] - col[index], offset_v=v[index] - row[index],
        conic=conic, radius=radius[index],
    )

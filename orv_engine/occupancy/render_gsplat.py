"""Occ2GS through gsplat's CUDA rasterizer (optional; gsplat has no CPU rasterizer).

Same Gaussians as the CPU renderer (isotropic, opacity 1, sigma from the scale rule with
the same depth normalisation, 0.3 px^2 dilation via ``eps2d``); semantics are rendered as
one-hot colour channels and argmaxed, depth as gsplat's expected depth ("ED").
"""

from __future__ import annotations

import importlib.util

import torch

from orv_engine.occupancy.projection import SplatSettings, world_to_camera
from orv_engine.occupancy.render_occ2gs import BACKGROUND_LABEL, RenderedView, empty_view


def gsplat_available() -> bool:
    return importlib.util.find_spec("gsplat") is not None and torch.cuda.is_available()


def require_gsplat():
    if not gsplat_available():
        raise RuntimeError("backend 'gsplat' needs the gsplat package and a CUDA device; use backend='torch'")


def rasterize_gsplat(means: torch.Tensor, labels: torch.Tensor, K: torch.Tensor, cam_to_world: torch.Tensor,
                     height: int, width: int, voxel_size: float, settings: SplatSettings,
                     depth_range: tuple[float, float] | None) -> RenderedView:
    require_gsplat()
    import gsplat  # noqa: PLC0415 (optional, CUDA only)

    device = torch.device("cuda")
    if means.shape[0] == 0 or depth_range is None:
        return empty_view(height, width)
    view = world_to_camera(cam_to_world.double()).float().to(device)
    means = means.float().to(device)
    z = means @ view[2, :3] + view[2, 3]
    sigma = settings.scale_rule.sigma(z, depth_range, voxel_size)
    present, compact = torch.unique(labels.to(device), return_inverse=True)
    colors = torch.nn.functional.one_hot(compact, present.numel()).float()
    quats = torch.zeros(means.shape[0], 4, device=device)
    quats[:, 0] = 1.0
    rendered, alphas, _ = gsplat.rasterization(
        means, quats, sigma[:, None].expand(-1, 3).contiguous(),
        torch.full((means.shape[0],), settings.opacity, device=device), colors,
        view[None], K.float().to(device)[None], width, height,
        near_plane=settings.near, eps2d=settings.dilation, render_mode="RGB+ED",
    )
    rendered, alpha = rendered[0].cpu(), alphas[0, ..., 0].cpu()
    foreground = alpha >= settings.background_alpha
    semantics = torch.where(foreground, present.cpu()[rendered[..., :-1].argmax(-1)],
                            torch.full((height, width), BACKGROUND_LABEL, dtype=torch.long))
    depth = torch.where(foreground, rendered[..., -1], torch.zeros_like(alpha))
    return RenderedView(depth, semantics, alpha)

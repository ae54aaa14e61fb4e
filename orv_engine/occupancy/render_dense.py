"""Naive dense Occ2GS reference: every Gaussian against every pixel, front to back.

Used to check the fast renderer (same footprints and alpha rules from ``projection``, so
the two must agree to float precision) and as the baseline of the speed benchmark. It
walks Gaussians in depth-sorted chunks, keeping a per-pixel transmittance.
"""

from __future__ import annotations

import torch

from orv_engine.occupancy.projection import ProjectedGaussians, SplatSettings
from orv_engine.occupancy.render_occ2gs import BACKGROUND_LABEL, RenderedView, empty_view


def rasterize_dense(projected: ProjectedGaussians, labels: torch.Tensor, height: int, width: int,
                    settings: SplatSettings, chunk: int = 256) -> RenderedView:
    p = projected
    if p.index.numel() == 0:
        return empty_view(height, width)
    present, compact = torch.unique(labels[p.index], return_inverse=True)
    rows = torch.arange(height).view(-1, 1).expand(height, width).reshape(-1)
    cols = torch.arange(width).view(1, -1).expand(height, width).reshape(-1)
    transmittance = torch.ones(height * width)
    acc = torch.zeros(height * width)
    depth_sum = torch.zeros(height * width)
    votes = torch.zeros(present.numel(), height * width)
    for start in range(0, p.index.numel(), chunk):
        s = slice(start, start + chunk)
        dcol = cols.view(1, -1) - p.center_col[s].view(-1, 1)
        drow = rows.view(1, -1) - p.center_row[s].view(-1, 1)
        dx = dcol.float() - p.offset_u[s].view(-1, 1)
        dy = drow.float() - p.offset_v[s].view(-1, 1)
        a, b, c = (p.conic[s, i].view(-1, 1) for i in range(3))
        alpha = (settings.opacity * torch.exp(-0.5 * (a * dx * dx + c * dy * dy) - b * dx * dy))
        alpha = alpha.clamp(max=settings.alpha_max)
        radius = p.radius[s].view(-1, 1)
        inside = (dcol.abs() <= radius) & (drow.abs() <= radius) & (alpha >= settings.alpha_min)
        alpha = torch.where(inside, alpha, torch.zeros_like(alpha))
        # transmittance before each Gaussian of the chunk, in depth order
        before = torch.cumprod(torch.cat([torch.ones(1, height * width), 1 - alpha[:-1]]), 0)
        weight = alpha * before * transmittance
        transmittance = transmittance * torch.prod(1 - alpha, 0)
        acc += weight.sum(0)
        depth_sum += (weight * p.depth[s].view(-1, 1)).sum(0)
        votes.index_add_(0, compact[s], weight)
    foreground = acc >= settings.background_alpha
    depth = torch.where(foreground, depth_sum / acc.clamp(min=1e-12), torch.zeros_like(acc))
    semantics = torch.where(foreground, present[votes.argmax(0)], torch.full_like(rows, BACKGROUND_LABEL))
    return RenderedView(depth.view(height, width), semantics.view(height, width), acc.view(height, width))

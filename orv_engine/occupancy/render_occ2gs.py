"""Occ2GS on the CPU: front-to-back alpha compositing of one opacity-1 isotropic Gaussian
per occupied voxel, giving a depth map and a semantic map (supplementary Sec. 10.1.2).

No library rasterizes Gaussians on the CPU (gsplat and diff-gaussian-rasterization are CUDA
only), hence this hand-written torch version. It follows 3DGS's tile renderer with the tile
shrunk to one pixel, which suits torch: culled, depth-sorted Gaussians are expanded into
(pixel, alpha) fragments over their ``ceil(3 sigma)`` footprints, one radius bucket at a
time; fragments are laid out in global depth order (prefix sums, no sort), binned per
pixel with one stable integer sort, and composited for every pixel at once with a
segmented prefix sum of ``log(1 - alpha)`` (transmittance ``T_i = prod_{j<i}(1 - a_j)``).

Outputs: depth = sum(w z) / sum(w) (expected depth of the visible surface, normalised so
a partly covered pixel is not pulled towards 0), semantics = argmax_k sum(w [label = k])
(composited one-hot features), alpha = sum(w); where alpha < ``background_alpha`` the
pixel is background: depth 0, label ``BACKGROUND_LABEL``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from orv_engine.occupancy.projection import ProjectedGaussians, SplatSettings, project

BACKGROUND_LABEL = -1
MAX_WINDOW_CELLS = 16_000_000  # footprint pixels evaluated at once (~64 MB per float buffer)


@dataclass
class RenderedView:
    depth: torch.Tensor  # (H, W) float32, 0 on background
    semantics: torch.Tensor  # (H, W) int64 label ids, BACKGROUND_LABEL on background
    alpha: torch.Tensor  # (H, W) float32 accumulated opacity

    @property
    def valid(self) -> torch.Tensor:
        return self.semantics != BACKGROUND_LABEL


def empty_view(height: int, width: int) -> RenderedView:
    return RenderedView(
        torch.zeros(height, width), torch.full((height, width), BACKGROUND_LABEL, dtype=torch.long),
        torch.zeros(height, width),
    )


def _fragments(p: ProjectedGaussians, height: int, width: int, settings: SplatSettings):
    """(pixel id int32, alpha, gaussian rank) of every fragment, in front-to-back order."""
    num = p.index.numel()
    counts = torch.zeros(num, dtype=torch.long)
    buckets = []
    batches = []
    for r in torch.unique(p.radius).tolist():
        same = torch.nonzero(p.radius == r).squeeze(1)  # ascending = front to back
        per_batch = max(1, MAX_WINDOW_CELLS // (2 * r + 1) ** 2)  # bounds memory for huge footprints
        batches += [(r, same[i:i + per_batch]) for i in range(0, same.numel(), per_batch)]
    for r, sel in batches:
        steps = torch.arange(-r, r + 1, dtype=torch.float32)
        dx = steps.view(1, 1, -1) - p.offset_u[sel].view(-1, 1, 1)
        dy = steps.view(1, -1, 1) - p.offset_v[sel].view(-1, 1, 1)
        a, b, c = (p.conic[sel, i].view(-1, 1, 1) for i in range(3))
        power = (a * dx * dx + c * dy * dy).mul_(-0.5).sub_(b * dx * dy)
        alpha = power.exp_().mul_(settings.opacity).clamp_(max=settings.alpha_max)
        isteps = torch.arange(-r, r + 1)
        cols = p.center_col[sel].view(-1, 1) + isteps.view(1, -1)  # (g, w)
        rows = p.center_row[sel].view(-1, 1) + isteps.view(1, -1)
        keep = alpha >= settings.alpha_min
        keep &= ((cols >= 0) & (cols < width)).unsqueeze(1)
        keep &= ((rows >= 0) & (rows < height)).unsqueeze(2)
        flat_keep = keep.view(sel.numel(), -1)
        counts[sel] = flat_keep.sum(1)
        pixel = (rows.unsqueeze(2) * width + cols.unsqueeze(1)).view(sel.numel(), -1)
        buckets.append((sel, flat_keep, pixel, alpha.view(sel.numel(), -1)))
    offsets = torch.cumsum(counts, 0) - counts
    total = int(counts.sum())
    pixel_out = torch.empty(total, dtype=torch.int32)
    alpha_out = torch.empty(total, dtype=torch.float32)
    rank_out = torch.empty(total, dtype=torch.long)
    for sel, flat_keep, pixel, alpha in buckets:
        # destination of each kept fragment: its Gaussian's offset + its place in the window
        within = torch.cumsum(flat_keep, 1, dtype=torch.int32).sub_(1)
        dest = (within + offsets[sel].view(-1, 1)).view(-1)
        kept = torch.nonzero(flat_keep.view(-1)).squeeze(1)
        dest = dest[kept]
        pixel_out[dest] = pixel.view(-1)[kept].to(torch.int32)
        alpha_out[dest] = alpha.reshape(-1)[kept]
        rank_out[dest] = sel[torch.div(kept, flat_keep.shape[1], rounding_mode="floor")]
    return pixel_out, alpha_out, rank_out


def composite(pixel: torch.Tensor, alpha: torch.Tensor, depth: torch.Tensor, label: torch.Tensor,
              num_labels: int, height: int, width: int, settings: SplatSettings):
    """Front-to-back compositing of fragments given in depth order (any pixel order).

    ``label`` holds compact ids in ``[0, num_labels)``; returns the per-pixel accumulated
    alpha, normalised depth and winning compact label (-1 on background).
    """
    pixel, order = torch.sort(pixel, stable=True)  # stable: keeps depth order inside each pixel
    # one gather of packed rows instead of three random-access gathers
    packed = torch.stack([alpha, depth, label.to(torch.float32)], 1)[order]
    alpha, depth, label = packed[:, 0], packed[:, 1], packed[:, 2].long()
    log_t = torch.log1p(-alpha).double()
    inclusive = torch.cumsum(log_t, 0)
    exclusive = inclusive - log_t
    starts = torch.ones_like(pixel, dtype=torch.bool)
    starts[1:] = pixel[1:] != pixel[:-1]
    segment = torch.cumsum(starts, 0) - 1
    base = exclusive[starts][segment]
    weight = alpha * torch.exp(exclusive - base).float()
    num_segments = int(starts.sum())
    seg_pixel = pixel[starts].long()
    acc = torch.zeros(num_segments).index_add_(0, segment, weight)
    depth_sum = torch.zeros(num_segments).index_add_(0, segment, weight * depth)
    votes = torch.zeros(num_segments * num_labels).index_add_(0, segment * num_labels + label, weight)
    winner = votes.view(num_segments, num_labels).argmax(1)
    alpha_img = torch.zeros(height * width)
    depth_img = torch.zeros(height * width)
    label_img = torch.full((height * width,), BACKGROUND_LABEL, dtype=torch.long)
    foreground = acc >= settings.background_alpha
    alpha_img[seg_pixel] = acc
    depth_img[seg_pixel[foreground]] = depth_sum[foreground] / acc[foreground]
    label_img[seg_pixel[foreground]] = winner[foreground]
    return alpha_img.view(height, width), depth_img.view(height, width), label_img.view(height, width)


def rasterize(projected: ProjectedGaussians, labels: torch.Tensor, height: int, width: int,
              settings: SplatSettings) -> RenderedView:
    """Render the projected Gaussians; ``labels`` (N,) are the label ids of all input Gaussians."""
    if projected.index.numel() == 0:
        return empty_view(height, width)
    pixel, alpha, rank = _fragments(projected, height, width, settings)
    if pixel.numel() == 0:
        return empty_view(height, width)
    present, compact = torch.unique(labels[projected.index], return_inverse=True)
    alpha_img, depth_img, label_img = composite(
        pixel, alpha, projected.depth[rank], compact[rank], present.numel(), height, width, settings
    )
    semantics = torch.where(label_img >= 0, present[label_img.clamp(min=0)], label_img)
    return RenderedView(depth_img, semantics, alpha_img)


def render_torch(means: torch.Tensor, labels: torch.Tensor, K: torch.Tensor, cam_to_world: torch.Tensor, height: int,
                 width: int, voxel_size: float, settings: SplatSettings,
                 depth_range: tuple[float, float] | None = None) -> RenderedView:
    """Project and rasterize with torch (the whole per-frame pipeline of the ``torch`` backend)."""
    projected = project(means, K, cam_to_world, height, width, voxel_size, settings, depth_range)
    return rasterize(projected, labels, height, width, settings)

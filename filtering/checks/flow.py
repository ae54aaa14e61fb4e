"""Optical-flow smoothness with torchvision's RAFT (weights from a local state_dict).

RAFT estimates the flow between each consecutive pair; the flow's change from one pair to
the next is the motion's acceleration. Real arms accelerate smoothly; a generated clip
whose content teleports, wobbles or melts has large flow acceleration. The value is the
largest per-pair mean |acceleration| (pixels per frame^2, at ``size`` x ``size``).
The RAFT loader is :class:`orv_engine.occupancy.consistency.RaftConsistency`.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

from filtering.records import CheckResult
from orv_engine.occupancy.consistency import RaftConsistency


class FlowSmoothness:
    def __init__(self, weights_path, variant: str = "small", size: int = 128, device: str = "cpu",
                 num_flow_updates: int = 6):
        self.raft = RaftConsistency(weights_path, variant=variant, device=device, num_flow_updates=num_flow_updates)
        self.size = max(int(size), 128)  # RAFT's pyramid needs 128 px

    def flows(self, frames: np.ndarray, batch_size: int = 8) -> torch.Tensor:
        """``(T-1, 2, size, size)`` flows between consecutive frames."""
        x = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0
        x = F.interpolate(x, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False)
        out = []
        for start in range(0, x.shape[0] - 1, batch_size):
            first = x[start:start + batch_size]
            second = x[start + 1:start + 1 + batch_size]
            out.append(self.raft.flow(first[: second.shape[0]], second))
        return torch.cat(out) if out else torch.zeros(0, 2, self.size, self.size)

    def value(self, frames: np.ndarray) -> tuple[float, int]:
        flows = self.flows(frames)
        if flows.shape[0] < 2:
            return 0.0, -1
        accel = (flows[1:] - flows[:-1]).norm(dim=1).mean(dim=(1, 2))
        worst = int(accel.argmax())
        return float(accel[worst]), worst + 1

    def check(self, frames: np.ndarray, max_acceleration: float) -> CheckResult:
        start = time.perf_counter()
        value, where = self.value(frames)
        passed = value <= max_acceleration
        detail = (f"flow acceleration {value:.2f} px/frame^2 at frame {where} "
                  f"({'<=' if passed else '>'} {max_acceleration:g})")
        return CheckResult("flow_smoothness", value, passed, max_acceleration, detail, time.perf_counter() - start)

"""Run the configured cheap checks on one clip."""

from __future__ import annotations

import numpy as np

from filtering.checks.blur import blur_check
from filtering.checks.occupancy_agreement import occupancy_agreement_check
from filtering.checks.temporal import flicker_check, jump_check
from filtering.config import ChecksConfig
from filtering.records import CheckResult


def spread(frames: np.ndarray, count: int) -> np.ndarray:
    """At most ``count`` frames spread evenly over the clip (first and last included)."""
    if count <= 0 or len(frames) <= count:
        return frames
    return frames[np.round(np.linspace(0, len(frames) - 1, count)).astype(int)]


class CheckRunner:
    """Blur, flicker and jump always; RAFT flow smoothness when ``raft_weights`` is set;
    occupancy agreement for clips that come with condition maps. Blur and flow look at a
    few frames spread over the clip (``blur_max_frames``, ``flow_max_frames``); flicker,
    jumps and agreement need every consecutive pair."""

    def __init__(self, config: ChecksConfig | None = None):
        self.config = config or ChecksConfig()
        self._flow = None
        if self.config.enabled and self.config.raft_weights:
            # lazy: RAFT needs torchvision, which the vLLM venv (scripts/setup_vllm_venv.sh) lacks
            from filtering.checks.flow import FlowSmoothness  # noqa: PLC0415

            self._flow = FlowSmoothness(self.config.raft_weights, self.config.raft_variant, self.config.flow_size)

    def run(self, frames: np.ndarray, conditions: dict | None = None) -> list[CheckResult]:
        c = self.config
        if not c.enabled:
            return []
        results = [
            blur_check(spread(frames, c.blur_max_frames), c.blur_min),
            flicker_check(frames, c.flicker_max),
            jump_check(frames, c.jump_max),
        ]
        if self._flow is not None:
            results.append(self._flow.check(spread(frames, c.flow_max_frames), c.flow_smoothness_max))
        if conditions and any(conditions.get(k) is not None for k in ("depth", "semantics")):
            results.append(occupancy_agreement_check(frames, conditions, c.occupancy_min_agreement, c.occupancy_dilate))
        return results

"""Cheap checks that run before the VLM: each takes a clip's frames ``(T, H, W, 3) uint8``
and returns a :class:`~filtering.records.CheckResult`; :func:`run_checks` runs the
configured ones."""

from filtering.checks.blur import blur_check, laplacian_variance
from filtering.checks.occupancy_agreement import occupancy_agreement_check
from filtering.checks.runner import CheckRunner
from filtering.checks.temporal import flicker_check, jump_check

__all__ = [
    "CheckRunner", "blur_check", "flicker_check", "jump_check", "laplacian_variance",
    "occupancy_agreement_check",
]

"""Keep or drop every clip, with the reason.

- a clip that could not be read, or that a cheap check rejected: dropped, the failed
  checks named;
- an unscored clip (no parseable answer, backend failure): dropped unless
  ``keep_unscored``;
- scored clips: ``threshold`` keeps ``final_score >= min_score``; ``bottom_percent``
  ranks them by final score (ties: lower mean confidence first, then name) and drops the
  lowest ``drop_percent`` % of them (rounded to the nearest clip; the paper drops ~10%).
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from filtering.config import SelectionConfig
from filtering.records import ERROR, SCORED, SKIPPED, ClipVerdict


def select(verdicts: list[ClipVerdict], config: SelectionConfig | None = None) -> list[ClipVerdict]:
    config = config or SelectionConfig()
    scored = []
    for v in verdicts:
        if v.score_status == ERROR:
            v.keep, v.reason = False, v.error or "unreadable"
        elif v.score_status == SKIPPED:
            v.keep = False
            v.reason = "cheap check failed: " + "; ".join(f"{c.name}: {c.detail}" for c in v.failed_checks)
        elif v.score_status != SCORED or v.final_score is None:
            v.keep = bool(config.keep_unscored)
            v.reason = f"unscored ({'kept' if v.keep else 'dropped'}): {v.error or 'no score'}"
        else:
            scored.append(v)
    if config.mode == "threshold":
        for v in scored:
            v.keep = v.final_score >= config.min_score
            v.reason = f"final score {v.final_score:.2f} {'>=' if v.keep else '<'} threshold {config.min_score:g}"
        return verdicts
    count = len(scored)
    n_drop = int(np.floor(count * config.drop_percent / 100.0 + 0.5))
    ranked = sorted(scored, key=lambda v: (v.final_score, float(np.mean(list(v.confidences.values()) or [0])), v.clip))
    cutoff = ranked[n_drop].final_score if n_drop < count else None
    for rank, v in enumerate(ranked, start=1):
        v.keep = rank > n_drop
        where = f"rank {rank} of {count}"
        if v.keep:
            v.reason = f"final score {v.final_score:.2f} above the bottom {config.drop_percent:g}% ({where})"
        else:
            v.reason = (f"final score {v.final_score:.2f} in the bottom {config.drop_percent:g}% ({where}"
                        + (f", kept from {cutoff:.2f} up)" if cutoff is not None else ")"))
    return verdicts


def select_by_checks(verdicts: list[ClipVerdict]) -> list[ClipVerdict]:
    """Keep/drop by the cheap checks alone (no VLM scores): what ``--checks-only`` runs use."""
    for v in verdicts:
        v.keep = v.passed_checks and v.score_status != ERROR
        v.reason = "cheap checks passed" if v.keep else (v.error or "cheap check failed: " + "; ".join(
            f"{c.name}: {c.detail}" for c in v.failed_checks))
    return verdicts


def summarize(verdicts: list[ClipVerdict]) -> dict:
    status = Counter(v.score_status for v in verdicts)
    failed = Counter(c.name for v in verdicts for c in v.failed_checks)
    scores = [v.final_score for v in verdicts if v.final_score is not None]
    return {
        "clips": len(verdicts),
        "kept": sum(1 for v in verdicts if v.keep),
        "dropped": sum(1 for v in verdicts if v.keep is False),
        "status": dict(status),
        "failed_checks": dict(failed),
        "captioned": sum(1 for v in verdicts if v.caption),
        "mean_final_score": float(np.mean(scores)) if scores else None,
    }

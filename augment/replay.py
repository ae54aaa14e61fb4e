"""The ``replay`` variant: each source episode rolled out from its own real first frame.

Besides its painted variants (``KEY__v0``, ``KEY__v1``, ...), every source episode gets one
unit ``KEY__replay`` (``first_frames.replay``, default on): its first frame is the episode's
recorded frame 0 at the rollout size (:func:`augment.sources.ground_truth_frames`, written
to ``first_frames/KEY__replay.png`` by the ``first_frames`` stage without FLUX), rolled out
with the episode's actions and maps exactly like the painted ones. Its rollout can be
compared with what really happened: PSNR and SSIM against the recorded frames, resized the
same way (``rollout.json`` ``"replay"``, the verdict's ``replay_psnr``/``replay_ssim``
checks, and the report's ground truth | replay | variants comparison).

Replay rollouts are evaluation units: a synthetic copy of an appearance the real dataset
already has. They are scored (cheap checks, VLM) like any rollout but kept out of the
selection and the export unless ``export.replay`` is set.

Metrics: per frame on RGB uint8 (:mod:`orv_engine.evaluation.psnr_ssim`, scikit-image's
numbers), frame 0 left out (it is the given frame, as in the training validation), then
the mean over the clip (PSNR over its finite frames) and over clips.
"""

from __future__ import annotations

import math

import numpy as np

from orv_engine.evaluation.psnr_ssim import finite_mean, psnr_frames, ssim_frames

REPLAY = "replay"
SKIP_FIRST_FRAMES = 1  # frame 0 is the given first frame
CHECK_NAMES = ("replay_psnr", "replay_ssim")


def replay_unit_id(key: str) -> str:
    return f"{key}__{REPLAY}"


def is_replay(unit: dict) -> bool:
    return unit.get("variant") == REPLAY


def variant_label(unit: dict) -> str:
    """``replay`` or ``vK``: the unit's first-frame variant as provenance and the report name it."""
    return REPLAY if is_replay(unit) else f"v{unit['variant']}"


def variant_order(unit: dict) -> tuple[int, int]:
    """Sort key: the replay first, then the painted variants by index."""
    return (0, 0) if is_replay(unit) else (1, int(unit["variant"]))


def replay_metrics(frames: np.ndarray, ground_truth: np.ndarray | None) -> dict:
    """PSNR/SSIM of a replay rollout against the recorded frames (both (T, H, W, 3) uint8).

    Returns ``{"psnr", "ssim", "psnr_frames", "ssim_frames", "identical_frames", "frames_compared",
    "skip_first_frames"}``, or ``{"error": why}`` when there is nothing to compare with."""
    if ground_truth is None:
        return {"error": "the source has no recorded frames (written before the replay variant existed): rerun "
                         "the sources stage in a new run directory"}
    ground_truth = np.asarray(ground_truth)
    if ground_truth.shape != frames.shape:
        return {"error": f"ground truth {ground_truth.shape} and rollout {frames.shape} differ in shape"}
    gen, gt = frames[SKIP_FIRST_FRAMES:], ground_truth[SKIP_FIRST_FRAMES:]
    if not len(gen):
        return {"error": "no frame after the first to compare"}
    psnr = psnr_frames(gen, gt)
    ssim = ssim_frames(gen, gt)
    mean_psnr, identical = finite_mean(psnr)
    return {"psnr": _json_float(mean_psnr), "ssim": float(np.mean(ssim)),
            "psnr_frames": [_json_float(x) for x in psnr], "ssim_frames": [float(x) for x in ssim],
            "identical_frames": identical, "frames_compared": int(len(gen)), "skip_first_frames": SKIP_FIRST_FRAMES}


def mean_replay_metrics(records: list[dict]) -> dict:
    """Run-wide means over replay clips (PSNR: over clips with a finite PSNR, as Table 1 does)."""
    ok = [r for r in records if r and "error" not in r]
    if not ok:
        return {"clips": 0, "psnr": None, "ssim": None}
    psnr, identical_clips = finite_mean([math.inf if r["psnr"] is None else r["psnr"] for r in ok])
    return {"clips": len(ok), "psnr": _json_float(psnr), "ssim": float(np.mean([r["ssim"] for r in ok])),
            "identical_clips": identical_clips}


def _json_float(x) -> float | None:
    """JSON has no inf: identical frames (PSNR inf) are recorded as null."""
    x = float(x)
    return x if math.isfinite(x) else None

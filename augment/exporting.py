"""The ``export`` and ``merge`` stages: kept rollouts -> RLDS in BridgeV2's schema -> mixture.

Each kept unit's rollout folder is already an :class:`vla_finetune.clip_record.ExportClip`;
here it gets its caption (the VLM's imperative caption when one was scored, else the source
instruction, recorded as ``caption_source``) and its verdict scores, then
``vla_finetune.export.export_clips`` writes ``RUN/export/NAME/VERSION`` (atomically: a
killed export leaves nothing at the target). ``merge`` writes the mixture with BridgeV2
(shared statistics, weights; optionally one merged dataset) to ``RUN/mixture``.
"""

from __future__ import annotations

import math
from pathlib import Path

from augment.rollout import rollout_dir
from augment.score_stage import kept_units, load_verdict
from vla_finetune.clip_record import ExportClip
from vla_finetune.export import ExportConfig, export_clips
from vla_finetune.merge import merge_datasets
from vla_finetune.mixture import write_mixture


def kept_clips(run_dir):
    for unit_id in kept_units(run_dir):
        clip = ExportClip.load(rollout_dir(run_dir, unit_id))
        verdict = load_verdict(run_dir, unit_id)
        if verdict.caption and verdict.caption_status == "scored":
            clip.caption = verdict.caption
            clip.provenance.extra["caption_source"] = "vlm"
        score = verdict.final_score
        clip.provenance.verdict_score = None if score is None or (isinstance(score, float) and math.isnan(score)) else score
        clip.provenance.verdict_scores = {"scores": verdict.scores, "confidences": verdict.confidences,
                                          "checks": {c.name: c.value for c in verdict.checks}}
        yield clip


def export_kept(config, run_dir) -> dict:
    run_dir = Path(run_dir)
    if not config.export.enabled:
        return {"skipped": "export.enabled is false"}
    if not kept_units(run_dir):
        return {"episodes": 0, "path": None, "skipped": "no clips kept"}
    ex = config.export
    result = export_clips(kept_clips(run_dir), run_dir / "export",
                          ExportConfig(name=ex.name, version=ex.version, image_size=tuple(ex.image_size),
                                       val_fraction=ex.val_fraction, overwrite=True))
    return {"path": str(result.path), "episodes": result.episodes, "steps": result.steps, "bytes": result.bytes}


def merge_with_bridge(config, run_dir, export: dict) -> dict:
    if not export.get("path"):
        return {"skipped": "nothing exported"}
    out = Path(run_dir) / "mixture"
    m = config.merge
    result = {"mixture": str(out / "mixture.json")}
    write_mixture(m.bridge, export["path"], out, synthetic_fraction=m.synthetic_fraction)
    if m.physical:
        result["merged"] = merge_datasets(m.bridge, export["path"], out, name="bridge_orv_merged",
                                          synthetic_fraction=m.synthetic_fraction, overwrite=True)
    return result

"""The verdicts table: one row per clip with every score, check and reason (parquet), and
its JSON-lines twin that a run appends batch by batch (so a killed run loses nothing and
resumes where it stopped)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from filtering.prompts import CRITERIA
from filtering.records import CheckResult, ClipVerdict

CHECK_NAMES = ("blur", "flicker", "jump", "flow_smoothness", "occupancy_agreement")


def _row(v: ClipVerdict) -> dict:
    row = {
        "clip": v.clip, "path": v.path, "keep": v.keep, "reason": v.reason,
        "score_status": v.score_status, "caption_status": v.caption_status, "caption": v.caption,
        "final_score": v.final_score, "model_final_score": v.model_final_score, "summary": v.summary,
    }
    for name in CRITERIA:
        row[f"{name}_score"] = v.scores.get(name)
        row[f"{name}_confidence"] = v.confidences.get(name)
    checks = {c.name: c for c in v.checks}
    for name in CHECK_NAMES:
        row[f"check_{name}"] = checks[name].value if name in checks else None
        row[f"check_{name}_passed"] = checks[name].passed if name in checks else None
    row.update(
        checks_json=json.dumps([asdict(c) for c in v.checks]), attempts=v.attempts, num_frames=v.num_frames,
        raw_caption=v.raw_caption, raw_score=v.raw_score, error=v.error,
        seconds_checks=v.seconds_checks, seconds_vlm=v.seconds_vlm,
    )
    return row


def _schema() -> pa.Schema:
    fields = [
        ("clip", pa.string()), ("path", pa.string()), ("keep", pa.bool_()), ("reason", pa.string()),
        ("score_status", pa.string()), ("caption_status", pa.string()), ("caption", pa.string()),
        ("final_score", pa.float64()), ("model_final_score", pa.float64()), ("summary", pa.string()),
    ]
    for name in CRITERIA:
        fields += [(f"{name}_score", pa.int8()), (f"{name}_confidence", pa.float64())]
    for name in CHECK_NAMES:
        fields += [(f"check_{name}", pa.float64()), (f"check_{name}_passed", pa.bool_())]
    fields += [("checks_json", pa.string()), ("attempts", pa.int32()), ("num_frames", pa.int32()),
               ("raw_caption", pa.string()), ("raw_score", pa.string()), ("error", pa.string()),
               ("seconds_checks", pa.float64()), ("seconds_vlm", pa.float64())]
    return pa.schema(fields)


def write_verdicts(verdicts: list[ClipVerdict], path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([_row(v) for v in verdicts], schema=_schema())
    tmp = path.with_suffix(path.suffix + ".tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)  # atomic: a reader never sees half a table
    return path


def read_verdicts(path) -> list[ClipVerdict]:
    out = []
    for row in pq.read_table(path).to_pylist():
        v = ClipVerdict(clip=row["clip"], path=row["path"] or "", num_frames=row["num_frames"] or 0)
        v.keep, v.reason = row["keep"], row["reason"] or ""
        v.score_status, v.caption_status, v.caption = row["score_status"], row["caption_status"], row["caption"]
        v.final_score, v.model_final_score, v.summary = row["final_score"], row["model_final_score"], row["summary"]
        v.scores = {n: row[f"{n}_score"] for n in CRITERIA if row[f"{n}_score"] is not None}
        v.confidences = {n: row[f"{n}_confidence"] for n in CRITERIA if row[f"{n}_confidence"] is not None}
        v.checks = [CheckResult(**c) for c in json.loads(row["checks_json"] or "[]")]
        v.attempts, v.raw_caption, v.raw_score, v.error = row["attempts"], row["raw_caption"], row["raw_score"], row["error"]
        v.seconds_checks, v.seconds_vlm = row["seconds_checks"], row["seconds_vlm"]
        out.append(v)
    return out


def append_jsonl(verdicts: list[ClipVerdict], path) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        for v in verdicts:
            handle.write(json.dumps(v.to_dict()) + "\n")
        handle.flush()


def read_jsonl(path) -> list[ClipVerdict]:
    """Verdicts of a (possibly interrupted) run; a torn last line is ignored."""
    out = []
    path = Path(path)
    if not path.is_file():
        return out
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            data = json.loads(line)
        except json.JSONDecodeError:
            continue
        data["checks"] = [CheckResult(**c) for c in data.get("checks", [])]
        out.append(ClipVerdict(**data))
    return out

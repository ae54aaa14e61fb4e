"""Records of the filtering stage: what a cheap check found, what the VLM said, the verdict.

``ClipVerdict`` is the record that crosses the stage boundary (ARCHITECTURE.md): caption,
per-criterion scores and confidences, weighted final score, cheap-check results, keep/drop
and why. Every clip that went in has exactly one verdict, whatever happened to it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

# status of the VLM score of a clip
SCORED = "scored"  # the answer parsed and validated
UNSCORED = "unscored"  # every attempt failed to parse (raw text kept) or the backend failed
SKIPPED = "skipped"  # a cheap check rejected the clip before the VLM
ERROR = "error"  # the clip could not be read at all


@dataclass
class CheckResult:
    """One cheap check on one clip: its value, the threshold, pass/fail."""

    name: str  # "blur", "flicker", "jump", "flow_smoothness", "occupancy_agreement"
    value: float
    passed: bool
    threshold: float | None = None
    detail: str = ""  # e.g. "variance of Laplacian 12.3 < 40.0"
    seconds: float = 0.0


@dataclass
class CriterionScore:
    score: int  # 1..5
    confidence: float  # 0..1


@dataclass
class ScoreResult:
    """A parsed and validated answer to the scoring prompt (Listing 3)."""

    criteria: dict[str, CriterionScore]
    summary: str
    final_score: float  # weighted average recomputed here with the configured weights
    model_final_score: float | None = None  # what the model itself wrote, if anything


@dataclass
class ClipVerdict:
    clip: str  # clip name (file name without extension)
    path: str = ""
    num_frames: int = 0
    caption: str | None = None
    caption_status: str = UNSCORED  # "scored" when a usable imperative sentence came back
    score_status: str = UNSCORED  # scored | unscored | skipped | error
    scores: dict[str, int] = field(default_factory=dict)  # criterion -> 1..5
    confidences: dict[str, float] = field(default_factory=dict)  # criterion -> 0..1
    summary: str | None = None
    final_score: float | None = None
    model_final_score: float | None = None
    checks: list[CheckResult] = field(default_factory=list)
    attempts: int = 0  # VLM scoring attempts made
    raw_caption: str | None = None  # the model's text, always kept
    raw_score: str | None = None
    error: str | None = None  # why unscored / why the clip failed
    keep: bool | None = None  # decided by selection
    reason: str = ""  # why kept or dropped
    seconds_checks: float = 0.0
    seconds_vlm: float = 0.0

    @property
    def passed_checks(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed_checks(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict:
        return asdict(self)

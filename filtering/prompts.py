"""The caption and scoring prompts (paper supplementary Sec. 10.3.1, Listings 2 and 3) and
the JSON schema every scoring answer must follow.

Listing 2 is used verbatim. Listing 3 is printed only in part in the paper ("Part of text
instruction"): its ROLE / INPUT / TASK / CRITERIA sections are verbatim below; the WEIGHTS
and OUTPUT FORMAT sections that it refers to ("weights below", a JSON answer) are ours, and
are generated from the configured weights and the schema, so prompt, schema, parser and
weighted average always agree.
"""

from __future__ import annotations

import json

CRITERIA = ("clarity", "physical_realism", "overall_plausibility")
DEFAULT_WEIGHTS = {"clarity": 0.3, "physical_realism": 0.4, "overall_plausibility": 0.3}

# Listing 2, verbatim.
CAPTION_PROMPT = (
    "Output only one sentence that describes what the robot arm or gripper is doing. "
    "The sentence must strictly start with a verb, not with 'The robot arm' or any subject. "
    "Do not use 'is', 'I am', or 'The robot arm'. Only output the instruction in imperative form."
)

# Listing 3, the part the paper prints, verbatim.
SCORING_PROMPT_HEAD = """You are a strict, reliable, and accountable video quality evaluator specialized in robot-arm manipulation videos. Follow the rules exactly. If you break them, you will be penalized.

ROLE:
- You are an impartial human-like evaluator.
- Behave like a careful human reviewer: inspect frames, identify problems, and assign fair scores.
- Do NOT hallucinate or guess unseen details.

INPUT:
- A video of robot manipulation (assume frames and timestamps are accessible).

TASK:
1. Inspect the entire video. Pay attention to serious defects like geometry collapse, object deformation, or impossible motion.
2. Score the video on each criterion (1-5 scale).
3. For each criterion, only output:
- numeric score (1..5)
- confidence (0.00-1.00)
4. Do NOT output justification for every criterion (to save tokens).
5. Instead, provide ONE short "summary" (only 1 sentence) describing the main issues.
6. Compute "final_score" as weighted average (weights below).

CRITERIA (score each 1..5):
A. clarity - sharpness, focus, absence of blur, no ghosting_artifacts.
B. physical_realism - motion follows physics (no teleportation, unrealistic acceleration) and no interpenetration, no severe deformation or geometry collapses.
C. overall_plausibility - temporal/spatial consistency, lighting stability, no sudden jumps."""


def check_weights(weights: dict[str, float]) -> dict[str, float]:
    """Weights for exactly the three criteria, non-negative, normalised to sum 1."""
    unknown = set(weights) - set(CRITERIA)
    missing = set(CRITERIA) - set(weights)
    if unknown or missing:
        raise ValueError(f"weights must name exactly {', '.join(CRITERIA)}; unknown {sorted(unknown)}, missing {sorted(missing)}")
    if any(float(w) < 0 for w in weights.values()) or sum(float(w) for w in weights.values()) <= 0:
        raise ValueError(f"weights must be non-negative with a positive sum, got {weights}")
    total = sum(float(w) for w in weights.values())
    return {name: float(weights[name]) / total for name in CRITERIA}


def score_json_schema() -> dict:
    """The JSON schema of a scoring answer (guided decoding in vLLM, ``response_format``
    of an OpenAI-compatible server, and the validation of every answer)."""
    criterion = {
        "type": "object",
        "properties": {
            "score": {"type": "integer", "minimum": 1, "maximum": 5},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        },
        "required": ["score", "confidence"],
        "additionalProperties": False,
    }
    return {
        "title": "ClipScore",
        "type": "object",
        "properties": {
            **{name: criterion for name in CRITERIA},
            "summary": {"type": "string", "maxLength": 300},
            "final_score": {"type": "number", "minimum": 1, "maximum": 5},
        },
        "required": [*CRITERIA, "summary", "final_score"],
        "additionalProperties": False,
    }


def scoring_prompt(weights: dict[str, float] | None = None, head: str = SCORING_PROMPT_HEAD) -> str:
    """Listing 3 with its weights and output format filled in from ``weights``."""
    weights = check_weights(weights or DEFAULT_WEIGHTS)
    weight_lines = "\n".join(f"- {name}: {weights[name]:.2f}" for name in CRITERIA)
    example = {name: {"score": 4, "confidence": 0.8} for name in CRITERIA}
    example.update(summary="One sentence naming the main issue.", final_score=4.0)
    return (
        f"{head}\n\nWEIGHTS:\n{weight_lines}\n"
        "final_score = sum(weight * score), a number between 1 and 5.\n\n"
        "OUTPUT FORMAT:\nAnswer with one JSON object and nothing else, exactly of this shape:\n"
        f"{json.dumps(example)}"
    )

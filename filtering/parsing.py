"""Turn model text into a validated caption or :class:`ScoreResult`, or say precisely why not.

Nothing here raises on bad model output except :class:`ParseError`, which the scoring loop
catches, retries, and finally records (with the raw text) as an unscored clip.
"""

from __future__ import annotations

import json
import math
import re

from filtering.prompts import CRITERIA, check_weights
from filtering.records import CriterionScore, ScoreResult


class ParseError(ValueError):
    """The model's answer is not a valid caption / score; the message says what is wrong."""


_FENCE = re.compile(r"```(?:json)?\s*(.*?)```", re.DOTALL | re.IGNORECASE)


def _json_candidates(text: str):
    """The whole text, fenced blocks, then every balanced ``{...}`` span, in that order."""
    yield text.strip()
    for block in _FENCE.findall(text):
        yield block.strip()
    depth, start, in_string, escape = 0, None, False, False
    for i, ch in enumerate(text):
        if in_string:
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_string = False
            continue
        if ch == '"':
            in_string = True
        elif ch == "{":
            if depth == 0:
                start = i
            depth += 1
        elif ch == "}" and depth:
            depth -= 1
            if depth == 0 and start is not None:
                yield text[start:i + 1]


def extract_json_object(text: str) -> dict:
    if not isinstance(text, str) or not text.strip():
        raise ParseError("empty answer")
    for candidate in _json_candidates(text):
        try:
            value = json.loads(candidate)
        except (json.JSONDecodeError, ValueError):
            continue
        if isinstance(value, dict):
            return value
    raise ParseError("no JSON object in the answer")


def _number(value, what: str) -> float:
    if isinstance(value, bool):
        raise ParseError(f"{what}: expected a number, got {value!r}")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise ParseError(f"{what}: expected a number, got {value!r}") from None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ParseError(f"{what}: expected a finite number, got {value!r}")
    return float(value)


def parse_score(text: str, weights: dict[str, float]) -> ScoreResult:
    """Validate an answer against the scoring schema and recompute the weighted final score.

    Accepted: the schema's shape ``{"clarity": {"score": 4, "confidence": 0.9}, ...}``, also
    inside code fences or surrounded by prose. Scores must be integers 1..5 (``4.0`` counts),
    confidences in [0, 1]. The final score is always recomputed with ``weights``; the model's
    own arithmetic is kept for reference only.
    """
    weights = check_weights(weights)
    data = extract_json_object(text)
    criteria = {}
    for name in CRITERIA:
        entry = data.get(name)
        if not isinstance(entry, dict):
            raise ParseError(f"{name}: missing or not an object")
        score = _number(entry.get("score"), f"{name}.score")
        if score != int(score) or not 1 <= score <= 5:
            raise ParseError(f"{name}.score: expected an integer 1..5, got {entry.get('score')!r}")
        confidence = _number(entry.get("confidence"), f"{name}.confidence")
        if not 0.0 <= confidence <= 1.0:
            raise ParseError(f"{name}.confidence: expected 0..1, got {confidence}")
        criteria[name] = CriterionScore(int(score), confidence)
    summary = data.get("summary")
    if not isinstance(summary, str) or not summary.strip():
        raise ParseError("summary: missing or empty")
    model_final = data.get("final_score")
    try:
        model_final = None if model_final is None else _number(model_final, "final_score")
    except ParseError:
        model_final = None
    final = sum(weights[name] * criteria[name].score for name in CRITERIA)
    return ScoreResult(criteria, " ".join(summary.split()), round(final, 6), model_final)


_FORBIDDEN_STARTS = ("the robot", "robot ", "the gripper", "gripper ", "i am", "i ", "it ", "is ", "this ", "a robot")


def parse_caption(text: str, max_chars: int = 300) -> str:
    """One imperative sentence (Listing 2's rules) from the model's text.

    Fences, quotes and labels like ``Instruction:`` are stripped; the first sentence is
    kept. Rejected: no words, broken characters, a subject first ("The robot arm ...",
    "I am ..."), too long.
    """
    if not isinstance(text, str):
        raise ParseError("empty answer")
    text = _FENCE.sub(lambda m: m.group(1), text).strip()
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = re.sub(r"^(instruction|caption|answer)\s*:\s*", "", line, flags=re.IGNORECASE)
    line = line.strip(" \t\"'`*")
    sentence = re.split(r"(?<=[.!?])\s", line, maxsplit=1)[0].strip()
    if not re.search(r"[A-Za-z]{2,}", sentence):
        raise ParseError("caption: no words")
    if "\ufffd" in sentence or any(ord(ch) < 32 for ch in sentence):
        raise ParseError("caption: broken characters (undecodable bytes or control characters)")
    if not sentence[0].isalpha():
        raise ParseError(f"caption: does not start with a word: {sentence[:40]!r}")
    lowered = sentence.lower()
    if lowered.startswith(_FORBIDDEN_STARTS):
        raise ParseError(f"caption: starts with a subject, not a verb: {sentence[:40]!r}")
    if len(sentence) > max_chars:
        raise ParseError(f"caption: longer than {max_chars} characters")
    sentence = sentence[0].upper() + sentence[1:]
    return sentence if sentence.endswith((".", "!")) else sentence.rstrip("?") + "."

"""The filtering run: read each clip, cheap checks, then caption and score the survivors in
batches through a VLM backend, with retries; one :class:`ClipVerdict` per clip, always.

Retries: an answer that fails to parse (or a request that failed) is asked again, up to
``max_attempts`` in all. A first attempt follows the configured sampling (greedy by
default); a retry samples (temperature >= 0.7, a new seed), since asking a greedy
decoder the same question gives the same answer. After the last attempt the clip is
recorded "unscored" with the raw text and the reason, and the run goes on.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator

import numpy as np

from filtering.backends.base import VLMBackend, VLMRequest, VLMResponse
from filtering.checks.runner import CheckRunner
from filtering.clip_source import ClipInput, sample_frames
from filtering.config import FilterConfig
from filtering.parsing import ParseError, parse_caption, parse_score
from filtering.prompts import score_json_schema, scoring_prompt
from filtering.records import ERROR, SCORED, SKIPPED, UNSCORED, ClipVerdict

RETRY_TEMPERATURE = 0.7


class FilterPipeline:
    def __init__(self, config: FilterConfig, backend: VLMBackend | None = None, checks: CheckRunner | None = None):
        self.config = config
        self.backend = backend
        self.checks = checks if checks is not None else CheckRunner(config.checks)
        self.schema = score_json_schema()
        self.score_prompt = scoring_prompt(config.prompts.weights, config.prompts.scoring_head)

    # ---- stage 1: read + cheap checks -------------------------------------------------
    def prepare(self, clip: ClipInput) -> tuple[ClipVerdict, np.ndarray | None]:
        verdict = ClipVerdict(clip=clip.name, path=clip.path)
        start = time.perf_counter()
        try:
            frames = clip.load()
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
                raise ValueError(f"expected (T, H, W, 3) uint8 frames, got {frames.dtype} {frames.shape}")
        except Exception as error:  # noqa: BLE001
            verdict.score_status = ERROR
            verdict.caption_status = ERROR
            verdict.error = f"unreadable: {type(error).__name__}: {error}"
            return verdict, None
        verdict.num_frames = int(len(frames))
        try:
            verdict.checks = self.checks.run(frames, clip.conditions())
        except Exception as error:  # noqa: BLE001  (a broken check is reported, not fatal)
            verdict.error = f"cheap checks failed to run: {type(error).__name__}: {error}"
        verdict.seconds_checks = time.perf_counter() - start
        if self.config.checks.reject and not verdict.passed_checks:
            verdict.score_status = SKIPPED
            verdict.caption_status = SKIPPED
            return verdict, None
        c = self.config
        return verdict, sample_frames(frames, c.frames_per_clip, c.frame_height, c.frame_width)

    # ---- stage 2: the VLM ------------------------------------------------------------
    def _request(self, verdict: ClipVerdict, frames: np.ndarray, kind: str, attempt: int) -> VLMRequest:
        s = self.config.sampling
        temperature = s.temperature if attempt == 0 else max(s.temperature, RETRY_TEMPERATURE)
        send = frames if getattr(self.backend, "supports_video", True) else None
        if kind == "score":
            return VLMRequest(f"{verdict.clip}/score", self.score_prompt, send, self.schema, s.max_tokens_score,
                              temperature, s.top_p, s.seed + attempt, self.config.fps)
        return VLMRequest(f"{verdict.clip}/caption", self.config.prompts.caption, send, None, s.max_tokens_caption,
                          temperature, s.top_p, s.seed + attempt, self.config.fps)

    def _apply(self, verdict: ClipVerdict, kind: str, response: VLMResponse) -> bool:
        """Record one answer; True when it is final (parsed)."""
        if kind == "score":
            verdict.attempts += 1
            verdict.seconds_vlm += response.seconds
            if not response.ok:
                verdict.error = f"backend: {response.error}"
                return False
            verdict.raw_score = response.text
            try:
                result = parse_score(response.text, self.config.prompts.weights)
            except ParseError as error:
                cut = " (answer cut at the token limit)" if response.finish_reason == "length" else ""
                verdict.error = f"unparseable score: {error}{cut}"
                return False
            verdict.score_status = SCORED
            verdict.scores = {k: v.score for k, v in result.criteria.items()}
            verdict.confidences = {k: v.confidence for k, v in result.criteria.items()}
            verdict.summary, verdict.final_score = result.summary, result.final_score
            verdict.model_final_score = result.model_final_score
            verdict.error = None
            return True
        verdict.seconds_vlm += response.seconds
        if not response.ok:
            verdict.caption_status = UNSCORED
            return False
        verdict.raw_caption = response.text
        try:
            verdict.caption = parse_caption(response.text)
        except ParseError:
            verdict.caption_status = UNSCORED
            return False
        verdict.caption_status = SCORED
        return True

    def vlm_batch(self, batch: list[tuple[ClipVerdict, np.ndarray]]) -> None:
        if not (self.config.caption or self.config.score):  # cheap checks only
            return
        if self.backend is None:
            for verdict, _ in batch:
                verdict.error = verdict.error or "no VLM backend configured"
            return
        kinds = (["caption"] if self.config.caption else []) + (["score"] if self.config.score else [])
        pending = [(verdict, frames, kind) for verdict, frames in batch for kind in kinds]
        for attempt in range(self.config.max_attempts):
            if not pending:
                break
            requests = [self._request(v, f, kind, attempt) for v, f, kind in pending]
            responses = self.backend.generate(requests)
            pending = [(v, f, kind) for (v, f, kind), r in zip(pending, responses) if not self._apply(v, kind, r)]
        for verdict, _, kind in pending:
            if kind == "score":
                verdict.score_status = UNSCORED
                verdict.error = f"{verdict.error} (after {verdict.attempts} attempts)"

    # ---- the whole run ------------------------------------------------------------------
    def iter_verdicts(self, clips: Iterable[ClipInput]) -> Iterator[list[ClipVerdict]]:
        """Verdicts batch by batch, in input order within each batch (for incremental saving)."""
        batch: list[tuple[ClipVerdict, np.ndarray]] = []
        done: list[ClipVerdict] = []
        for clip in clips:
            verdict, frames = self.prepare(clip)
            done.append(verdict)
            if frames is not None:
                batch.append((verdict, frames))
            if len(batch) >= self.config.batch_size:
                self.vlm_batch(batch)
                yield done
                batch, done = [], []
        if batch:
            self.vlm_batch(batch)
        if done:
            yield done

    def run(self, clips: Iterable[ClipInput], on_batch: Callable[[list[ClipVerdict]], None] | None = None) -> list[ClipVerdict]:
        verdicts = []
        for chunk in self.iter_verdicts(clips):
            verdicts.extend(chunk)
            if on_batch is not None:
                on_batch(chunk)
        return verdicts

"""What every VLM backend takes and returns.

A backend answers a list of :class:`VLMRequest` with one :class:`VLMResponse` each, in
order. It never raises for one bad request: a failure (timeout, refused connection, a
server error, an exception in the model) becomes that response's ``error``, so the
scoring loop can retry it and finally record it, with nothing lost.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass

import numpy as np


@dataclass
class VLMRequest:
    key: str  # e.g. "clip_007/score"
    prompt: str
    frames: np.ndarray | None = None  # (T, H, W, 3) uint8, already sampled; None: text only
    json_schema: dict | None = None  # structured output, where the backend supports it
    max_tokens: int = 128
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0
    fps: float = 2.0


@dataclass
class VLMResponse:
    text: str | None
    error: str | None = None  # "TimeoutError: ..." etc.; None on success
    seconds: float = 0.0
    finish_reason: str | None = None  # "stop", "length", ...

    @property
    def ok(self) -> bool:
        return self.error is None and self.text is not None


def describe(error: BaseException) -> str:
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message[:500]}" if message else type(error).__name__


class VLMBackend(abc.ABC):
    name = "base"
    supports_video = True  # False: a text model; frames are not sent

    @abc.abstractmethod
    def _generate(self, requests: list[VLMRequest]) -> list[VLMResponse]:
        """Answer a batch; may raise (then every request of the batch gets the error)."""

    def generate(self, requests: list[VLMRequest]) -> list[VLMResponse]:
        if not requests:
            return []
        start = time.perf_counter()
        try:
            responses = self._generate(requests)
        except Exception as error:  # noqa: BLE001  (recorded per request, never lost)
            elapsed = (time.perf_counter() - start) / len(requests)
            return [VLMResponse(None, describe(error), elapsed) for _ in requests]
        if len(responses) != len(requests):
            return [VLMResponse(None, f"backend returned {len(responses)} answers for {len(requests)} requests")
                    for _ in requests]
        return responses

    def close(self) -> None:
        """Release the model / connections."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

"""Any OpenAI-compatible server (``vllm serve``, SGLang, a hosted endpoint) through the
``openai`` client, with bounded concurrency, per-request timeouts and retries.

- concurrency: at most ``OpenAIConfig.concurrency`` requests in flight (a thread pool);
- timeouts and retries: the client's own (``timeout`` seconds per request,
  ``max_retries`` on connection errors, 408/409/429 and 5xx, with exponential back-off);
  a request that still fails comes back as an error response, never an exception;
- frames: ``video_mode="video"`` sends one ``video_url`` whose data URL holds the JPEG
  frames (``data:video/jpeg;base64,<frame>,<frame>,...``, what vLLM's server reads),
  ``"images"`` one ``image_url`` per frame (any vision server), ``"none"`` no frames;
- structured output: ``response_format={"type": "json_schema", ...}`` with the scoring
  schema (vLLM guided decoding behind it);
- the server is checked once before any clip (:meth:`OpenAIServerBackend.check_server`,
  called by ``make_backend``): unreachable, misbehaving, or not serving the model is one
  :class:`VLMServerError` naming the address, not the same connection error clip by clip.
  A server that goes away mid-run still costs no clip: each gets an unscored verdict whose
  error names the address.
"""

from __future__ import annotations

import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai
from PIL import Image

from filtering.backends.base import VLMBackend, VLMRequest, VLMResponse, describe
from filtering.config import OpenAIConfig


def jpeg_base64(frame: np.ndarray, quality: int = 90) -> str:
    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(frame)).save(buffer, format="JPEG", quality=quality)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def frame_content(frames: np.ndarray | None, mode: str) -> list[dict]:
    if frames is None or mode == "none":
        return []
    encoded = [jpeg_base64(f) for f in frames]
    if mode == "images":
        return [{"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{e}"}} for e in encoded]
    return [{"type": "video_url", "video_url": {"url": "data:video/jpeg;base64," + ",".join(encoded)}}]


class VLMServerError(ConnectionError):
    """The VLM server cannot be used: unreachable, misbehaving, or not serving the model."""


class OpenAIServerBackend(VLMBackend):
    name = "openai"

    def __init__(self, model: str, config: OpenAIConfig | None = None):
        self.config = config or OpenAIConfig()
        self.model = self.config.served_model or model
        self.supports_video = self.config.video_mode != "none"
        self.client = openai.OpenAI(base_url=self.config.base_url, api_key=self.config.api_key,
                                    timeout=self.config.timeout, max_retries=self.config.max_retries)
        self.pool = ThreadPoolExecutor(max_workers=self.config.concurrency, thread_name_prefix="orv-filter-openai")

    def check_server(self, timeout: float = 10.0) -> None:
        """One ``GET /models`` without retries: the server answers and serves ``self.model``.

        A server without the endpoint (404) is taken as reachable (not every OpenAI-compatible
        server lists its models); anything else that fails is a :class:`VLMServerError`."""
        address = self.config.base_url
        client = self.client.with_options(timeout=min(timeout, self.config.timeout), max_retries=0)
        try:
            served = [model.id for model in client.models.list()]
        except openai.NotFoundError:
            return
        except Exception as error:  # noqa: BLE001  (refused, timed out, 5xx, not JSON)
            raise VLMServerError(
                f"the VLM server at {address} cannot be used ({describe(error)}); start it (e.g. `vllm serve "
                f"MODEL --port PORT`) or set openai.base_url to where it runs") from None
        if self.model not in served:
            raise VLMServerError(f"the VLM server at {address} does not serve {self.model!r}; it serves {served} "
                                 "(set openai.served_model, or model, to one of them)")

    def _one(self, request: VLMRequest) -> VLMResponse:
        start = time.perf_counter()
        try:
            content = frame_content(request.frames, self.config.video_mode) + [{"type": "text", "text": request.prompt}]
            kwargs = dict(model=self.model, messages=[{"role": "user", "content": content}],
                          max_tokens=request.max_tokens, temperature=request.temperature, top_p=request.top_p)
            if request.seed is not None:
                kwargs["seed"] = request.seed
            if request.json_schema is not None and self.config.guided_json:
                kwargs["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "clip_score", "schema": request.json_schema, "strict": True},
                }
            if request.frames is not None and self.config.video_mode == "video":
                kwargs["extra_body"] = {"mm_processor_kwargs": {"fps": request.fps}}
            completion = self.client.chat.completions.create(**kwargs)
            choice = completion.choices[0]
            return VLMResponse(choice.message.content, None, time.perf_counter() - start, choice.finish_reason)
        except Exception as error:  # noqa: BLE001  (timeouts, refused connections, 4xx/5xx)
            return VLMResponse(None, f"{self.config.base_url}: {describe(error)}", time.perf_counter() - start)

    def _generate(self, requests: list[VLMRequest]) -> list[VLMResponse]:
        return list(self.pool.map(self._one, requests))

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        self.client.close()

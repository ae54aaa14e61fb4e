"""VLM backends: vLLM offline (``vllm.LLM``), any OpenAI-compatible server (``openai``
client), transformers ``generate``. :func:`make_backend` builds the configured one."""

from __future__ import annotations

from filtering.backends.base import VLMBackend, VLMRequest, VLMResponse
from filtering.backends.openai_server import OpenAIServerBackend, VLMServerError
from filtering.backends.transformers_backend import TransformersBackend
from filtering.backends.vllm_offline import VLLMOfflineBackend
from filtering.config import FilterConfig


def make_backend(config: FilterConfig) -> VLMBackend:
    if config.backend == "vllm":
        return VLLMOfflineBackend(config.model, config.vllm, seed=config.sampling.seed)
    if config.backend == "openai":
        backend = OpenAIServerBackend(config.model, config.openai)
        try:
            backend.check_server()  # once, before any clip
        except VLMServerError:
            backend.close()
            raise
        return backend
    return TransformersBackend(config.model, config.transformers, batch_size=config.batch_size)


__all__ = ["VLMBackend", "VLMRequest", "VLMResponse", "VLMServerError", "make_backend"]

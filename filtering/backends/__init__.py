"""VLM backends: vLLM offline (``vllm.LLM``), any OpenAI-compatible server (``openai``
client), transformers ``generate``. :func:`make_backend` builds the configured one."""

from __future__ import annotations

from filtering.backends.base import VLMBackend, VLMRequest, VLMResponse
from filtering.config import FilterConfig


def make_backend(config: FilterConfig) -> VLMBackend:
    if config.backend == "vllm":
        from filtering.backends.vllm_offline import VLLMOfflineBackend  # noqa: PLC0415

        return VLLMOfflineBackend(config.model, config.vllm, seed=config.sampling.seed)
    if config.backend == "openai":
        from filtering.backends.openai_server import OpenAIServerBackend  # noqa: PLC0415

        return OpenAIServerBackend(config.model, config.openai)
    from filtering.backends.transformers_backend import TransformersBackend  # noqa: PLC0415

    return TransformersBackend(config.model, config.transformers, batch_size=config.batch_size)


__all__ = ["VLMBackend", "VLMRequest", "VLMResponse", "make_backend"]

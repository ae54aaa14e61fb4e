"""vLLM offline inference: ``vllm.LLM`` over a batch of requests at once.

Qwen2.5-VL takes each clip's sampled frames as one video (``multi_modal_data={"video":
frames}``, frames ``(T, H, W, 3) uint8``); the prompt is the model's own chat template
with a video placeholder. Every scoring request carries the JSON schema as structured
output (guided decoding), so every answer parses. Tensor parallelism, dtype, context
length and memory share are config values (``VLLMConfig``); any other ``vllm.LLM``
keyword goes through ``VLLMConfig.extra``.

vLLM lives in its own venv (``scripts/setup_vllm_venv.sh``); importing this module does
not import vllm, building the backend does (the ``from vllm ...`` imports below stay in
their functions for that reason).
"""

from __future__ import annotations

import importlib.util
import time

import numpy as np

from filtering.backends.base import VLMBackend, VLMRequest, VLMResponse, describe
from filtering.config import VLLMConfig


def is_vllm_available() -> bool:
    return importlib.util.find_spec("vllm") is not None


def structured_output_params(schema: dict):
    """The guided-decoding parameter of this vLLM version (``structured_outputs`` since
    v0.11, ``guided_decoding`` before)."""
    try:
        from vllm.sampling_params import StructuredOutputsParams  # noqa: PLC0415

        return {"structured_outputs": StructuredOutputsParams(json=schema)}
    except ImportError:  # older vLLM
        from vllm.sampling_params import GuidedDecodingParams  # noqa: PLC0415

        return {"guided_decoding": GuidedDecodingParams(json=schema)}


class VLLMOfflineBackend(VLMBackend):
    name = "vllm"

    def __init__(self, model: str, config: VLLMConfig | None = None, seed: int = 0):
        if not is_vllm_available():
            raise ImportError("backend 'vllm' needs vLLM, which lives in its own venv: bash scripts/setup_vllm_venv.sh, "
                              "then run .venv-vllm/bin/python -m filtering.cli (or use backend 'openai' or "
                              "'transformers')")
        from vllm import LLM  # noqa: PLC0415

        self.config = config or VLLMConfig()
        c = self.config
        kwargs = dict(
            model=str(model), tensor_parallel_size=c.tensor_parallel_size, dtype=c.dtype,
            gpu_memory_utilization=c.gpu_memory_utilization, enforce_eager=c.enforce_eager, seed=seed,
        )
        if c.max_model_len:
            kwargs["max_model_len"] = c.max_model_len
        if c.max_num_seqs:
            kwargs["max_num_seqs"] = c.max_num_seqs
        if c.compact_json:  # no free whitespace inside guided JSON: no runaway "\n\n\n..."
            kwargs["structured_outputs_config"] = {"backend": c.structured_backend, "disable_any_whitespace": True}
        kwargs.update(c.extra)
        self.llm = LLM(**kwargs)
        # a multimodal model (Qwen2.5-VL) gets the frames; a text model the prompt alone
        model_config = getattr(self.llm, "model_config", None) or self.llm.llm_engine.model_config
        self.supports_video = getattr(model_config, "multimodal_config", None) is not None
        self.tokenizer = self.llm.get_tokenizer()

    def _prompt(self, request: VLMRequest) -> dict:
        video = self.supports_video and request.frames is not None
        content = ([{"type": "video"}] if video else []) + [{"type": "text", "text": request.prompt}]
        text = self.tokenizer.apply_chat_template([{"role": "user", "content": content}],
                                                  tokenize=False, add_generation_prompt=True)
        prompt = {"prompt": text}
        if video:
            prompt["multi_modal_data"] = {"video": np.ascontiguousarray(request.frames)}
            prompt["mm_processor_kwargs"] = {"fps": request.fps}
        return prompt

    def _sampling(self, request: VLMRequest):
        from vllm import SamplingParams  # noqa: PLC0415

        kwargs = dict(max_tokens=request.max_tokens, temperature=request.temperature, top_p=request.top_p,
                      seed=request.seed)
        if request.json_schema is not None and self.config.guided_json:
            kwargs.update(structured_output_params(request.json_schema))
        return SamplingParams(**kwargs)

    def _generate(self, requests: list[VLMRequest]) -> list[VLMResponse]:
        start = time.perf_counter()
        prompts, params, index, responses = [], [], [], [None] * len(requests)
        for i, request in enumerate(requests):
            try:
                prompt, param = self._prompt(request), self._sampling(request)
            except Exception as error:  # noqa: BLE001  (one bad request does not sink the batch)
                responses[i] = VLMResponse(None, describe(error))
                continue
            prompts.append(prompt)
            params.append(param)
            index.append(i)
        outputs = self.llm.generate(prompts, params, use_tqdm=False) if prompts else []
        per_request = (time.perf_counter() - start) / max(len(requests), 1)
        for i, output in zip(index, outputs):
            completion = output.outputs[0]
            responses[i] = VLMResponse(completion.text, None, per_request, completion.finish_reason)
        return responses

    def close(self) -> None:
        self.llm = None

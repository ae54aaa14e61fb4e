"""transformers ``generate`` for machines without vLLM.

Qwen2.5-VL (``Qwen2_5_VLForConditionalGeneration`` + its ``AutoProcessor``) takes each
clip's sampled frames as one video; a text-only checkpoint (``AutoModelForCausalLM``) gets
the prompt alone. Requests are batched (left padding) by their token budget. No guided
decoding here: answers are validated by the parser and retried (see ``filtering.scoring``).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from transformers import (AutoConfig, AutoModelForCausalLM, AutoProcessor, AutoTokenizer,
                          Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration)

from filtering.backends.base import VLMBackend, VLMRequest, VLMResponse, describe
from filtering.config import TransformersConfig
from orv_engine.weight_files import check_weight_files

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


class TransformersBackend(VLMBackend):
    name = "transformers"

    def __init__(self, model: str, config: TransformersConfig | None = None, batch_size: int = 16):
        self.config = config or TransformersConfig()
        self.batch_size = batch_size
        check_weight_files(model)  # a damaged file named before transformers meets it
        hf_config = AutoConfig.from_pretrained(model)
        dtype = _DTYPES.get(self.config.dtype, "auto")
        kwargs = {"dtype": dtype}
        if self.config.attn_implementation:
            kwargs["attn_implementation"] = self.config.attn_implementation
        self.supports_video = hf_config.model_type in ("qwen2_5_vl", "qwen2_vl")
        if self.supports_video:
            cls = Qwen2_5_VLForConditionalGeneration if hf_config.model_type == "qwen2_5_vl" else Qwen2VLForConditionalGeneration
            self.model = cls.from_pretrained(model, **kwargs)
            self.processor = AutoProcessor.from_pretrained(model)
            self.tokenizer = self.processor.tokenizer
        else:
            self.model = AutoModelForCausalLM.from_pretrained(model, **kwargs)
            self.processor = None
            self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = self.model.to(self.config.device).eval()

    def _messages(self, request: VLMRequest, video: bool) -> list[dict]:
        content = ([{"type": "video"}] if video else []) + [{"type": "text", "text": request.prompt}]
        return [{"role": "user", "content": content}]

    @torch.no_grad()
    def _run(self, requests: list[VLMRequest]) -> list[VLMResponse]:
        start = time.perf_counter()
        video = self.supports_video and all(r.frames is not None for r in requests)
        template = self.processor if self.processor is not None else self.tokenizer
        texts = [template.apply_chat_template(self._messages(r, video), tokenize=False, add_generation_prompt=True)
                 for r in requests]
        if self.processor is not None:
            kwargs = {}
            if video:
                kwargs = dict(videos=[np.ascontiguousarray(r.frames) for r in requests],
                              fps=requests[0].fps, do_sample_frames=False)
            inputs = self.processor(text=texts, padding=True, return_tensors="pt", **kwargs)
        else:
            inputs = self.tokenizer(texts, padding=True, return_tensors="pt")
        inputs = inputs.to(self.config.device)
        first = requests[0]
        sample = first.temperature > 0
        gen_kwargs = dict(max_new_tokens=first.max_tokens, do_sample=sample,
                          pad_token_id=self.tokenizer.pad_token_id)
        if sample:
            gen_kwargs.update(temperature=first.temperature, top_p=first.top_p)
            if first.seed is not None:
                torch.manual_seed(first.seed)
        output = self.model.generate(**inputs, **gen_kwargs)
        new_tokens = output[:, inputs["input_ids"].shape[1]:]
        texts = self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
        eos = self.model.generation_config.eos_token_id
        eos = set(eos if isinstance(eos, (list, tuple)) else [eos])
        per_request = (time.perf_counter() - start) / len(requests)
        out = []
        for row, text in zip(new_tokens.tolist(), texts):
            finished = any(t in eos for t in row)
            out.append(VLMResponse(text, None, per_request, "stop" if finished else "length"))
        return out

    def _generate(self, requests: list[VLMRequest]) -> list[VLMResponse]:
        # one generate call per (token budget, sampling, has-frames) group, batch_size at a
        # time; a chunk that fails gets its error on each of its requests, the rest go on
        groups: dict[tuple, list[int]] = {}
        for i, r in enumerate(requests):
            groups.setdefault((r.max_tokens, r.temperature, r.top_p, r.frames is None, r.fps), []).append(i)
        responses: list[VLMResponse | None] = [None] * len(requests)
        for indices in groups.values():
            for s in range(0, len(indices), self.batch_size):
                chunk = indices[s:s + self.batch_size]
                start = time.perf_counter()
                try:
                    answers = self._run([requests[i] for i in chunk])
                except Exception as error:  # noqa: BLE001
                    seconds = (time.perf_counter() - start) / len(chunk)
                    answers = [VLMResponse(None, describe(error), seconds) for _ in chunk]
                for i, response in zip(chunk, answers):
                    responses[i] = response
        return responses

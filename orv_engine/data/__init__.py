"""Reading robot episodes (RLDS) and cutting them into model-ready clips.

    from orv_engine.data import RLDSReader, ClipDataset, PRESETS
"""

from orv_engine.data.clip_dataset import ClipDataset, clip_to_sample
from orv_engine.data.clips import PRESETS, Clip, ClipConfig, clip_config, cut_clips
from orv_engine.data.episode import Episode, EpisodeMeta
from orv_engine.data.errors import DatasetError, SkipReport
from orv_engine.data.rlds_reader import RLDSReader

__all__ = [
    "PRESETS", "Clip", "ClipConfig", "ClipDataset", "DatasetError", "Episode", "EpisodeMeta",
    "RLDSReader", "SkipReport", "clip_config", "clip_to_sample", "cut_clips",
]

"""RLDS mixtures -> windows (observation history, action chunks) -> torch batches."""

from vla_finetune.policy_data.dataset import PolicyWindowDataset, SourceSpec
from vla_finetune.policy_data.normalization import ActionNormalizer, StatisticsError
from vla_finetune.policy_data.windows import Window, episode_windows

__all__ = ["ActionNormalizer", "PolicyWindowDataset", "SourceSpec", "StatisticsError", "Window", "episode_windows"]

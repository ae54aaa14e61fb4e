"""ORV's models: the transformer (CogVideoX + actions + conditions [+ views]), its named configs,
the preprocessing record a checkpoint carries, and the official checkpoints' conversion."""

from orv_engine.models.action_encoder import ChunkedActionEncoder
from orv_engine.models.checkpoint_files import CheckpointError
from orv_engine.models.condition_fusion import ConditionFusion
from orv_engine.preprocessing import ORVPreprocessing
from orv_engine.models.configs import CONFIGS, stock_config, transformer_config
from orv_engine.models.transformer_orv import ORVTransformer3DModel

__all__ = [
    "CONFIGS",
    "CheckpointError",
    "ChunkedActionEncoder",
    "ConditionFusion",
    "ORVPreprocessing",
    "ORVTransformer3DModel",
    "stock_config",
    "transformer_config",
]

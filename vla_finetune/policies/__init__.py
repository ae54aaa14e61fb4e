"""The finetuned VLA policies (RoboVLM, SpatialVLA) and their one evaluation interface.

    from vla_finetune.policies.interface import load_policy
"""

from vla_finetune.policies.interface import (ActionChunkExecutor, ChunkPredictor, TemporalEnsembler, VLAPolicy,
                                             load_policy)

__all__ = ["ActionChunkExecutor", "ChunkPredictor", "TemporalEnsembler", "VLAPolicy", "load_policy"]

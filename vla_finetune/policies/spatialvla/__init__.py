from vla_finetune.policies.spatialvla.action_tokenizer import SpatialActionTokenizer
from vla_finetune.policies.spatialvla.configuration_spatialvla import SpatialVLAConfig
from vla_finetune.policies.spatialvla.modeling_spatialvla import SpatialVLAPolicy

__all__ = ["SpatialActionTokenizer", "SpatialVLAConfig", "SpatialVLAPolicy"]

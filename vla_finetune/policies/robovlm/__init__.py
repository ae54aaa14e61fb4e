from vla_finetune.policies.robovlm.configuration_robovlm import RoboVLMConfig
from vla_finetune.policies.robovlm.modeling_robovlm import RoboVLMPolicy

__all__ = ["RoboVLMConfig", "RoboVLMPolicy"]

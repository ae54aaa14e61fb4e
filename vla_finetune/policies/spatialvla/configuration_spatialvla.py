"""SpatialVLA configuration: PaliGemma backbone, spatial action tokens, LoRA.

Defaults are the paper's post-finetuning recipe (Sec. 10.3.2, Table 3): action chunk 4,
8194 spatial action tokens (translation 16x32x8, rotation 16x16x16, gripper 2, see
:mod:`vla_finetune.policies.spatialvla.action_tokenizer`), LoRA rank 32, alpha 32 on all
linear layers (peft's ``"all-linear"``: every ``nn.Linear`` but the LM head).
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

ACTION_TOKEN = "<ACTION_{:05d}>"


class SpatialVLAConfig(PreTrainedConfig):
    model_type = "spatialvla_orv"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="paligemma")}

    backbone_config: dict | PreTrainedConfig | None = None
    chunk_size: int = 4
    action_dim: int = 7
    action_vocab_size: int = 8194
    action_token_offset: int = -1  # id of <ACTION_00000> in the extended vocabulary
    prompt_template: str = "What action should the robot take to {instruction}?"
    lora_rank: int = 32
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: str = "all-linear"
    normalization: str = "bounds_q99"

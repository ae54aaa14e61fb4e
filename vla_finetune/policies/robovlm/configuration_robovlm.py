"""RoboVLM configuration: a Kosmos-2 backbone and an LSTM policy head over a frame history.

Defaults are the paper's (Sec. 10.3.2, Table 3) and RoboVLMs' Kosmos "policy head"
recipe: 16-frame history, LSTM hidden 1024, 10-step chunks of continuous 7-d actions,
arm regression (MSE) + gripper classification (BCE, weight 0.01 as RoboVLMs'
``arm_gripper_loss_ratio``).
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec


class RoboVLMConfig(PreTrainedConfig):
    model_type = "robovlm"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="kosmos-2")}

    backbone_config: dict | PreTrainedConfig | None = None
    history_len: int = 16  # observation frames the LSTM sees
    chunk_size: int = 10  # actions predicted per step
    action_dim: int = 7
    lstm_hidden_size: int = 1024
    lstm_num_layers: int = 4
    head_dropout: float = 0.0
    prompt_template: str = "<grounding>What action should the robot take to {instruction}?"
    arm_loss: str = "mse"  # "mse" or "huber"
    gripper_loss_weight: float = 0.01
    normalization: str = "bounds_q99"  # see vla_finetune.policy_data.normalization

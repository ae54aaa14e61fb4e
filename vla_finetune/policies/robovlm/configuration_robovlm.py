"""RoboVLM configuration: RoboVLMs' "Kosmos + policy head" (RoboKosMos, LSTMDecoder).

Defaults are the paper's (Sec. 10.3.2, Table 3) and those of RoboVLMs' released Kosmos
configs (``configs/oxe_training/finetune_kosmos_cont-lstm-post_..._oxe_pretrain.json`` and
``..._bridge_finetune.json`` in Robot-VLAs/RoboVLMs): a 16-frame window (``window_size``),
chunks of 10 actions (``fwd_pred_next_n``), a 4-layer LSTM of hidden size 1024
(``act_head.hidden_size``; 4 layers is ``LSTMDecoder``'s default), an arm MLP
``hidden -> 1024 -> 512 -> 256 -> 6K`` ending in tanh and a gripper MLP
``hidden -> 1024 -> 512 -> 256 -> K`` giving logits (``MLPTanhHead`` / ``MLPSigmoidHead``
in ``robovlms/model/policy_head/base_policy.py``), Huber arm loss + 0.01 x gripper BCE
(``BasePolicyHead.loss``, ``arm_gripper_loss_ratio``), the prompt of
``robovlms/data/data_utils.py`` (``get_text_function``, "kosmos"), and the action scaling
``norm_action`` with ``norm_min/norm_max = -0.65/0.65`` applied after OpenVLA's q01/q99
bounds. ``execute_steps = 1``: RoboVLMs' SimplerEnv wrapper (``eval/simpler/model_wrapper.py``
and ``eval/calvin/model_wrapper.py``, ``ensemble_action`` with ``max_len = 1``) predicts
every step and executes the first action of each chunk.

The config checks its own values (``__post_init__``), so a bad option fails when the policy
is built, not deep inside a forward pass.
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from vla_finetune.policy_data.normalization import MODES

ARM_LOSSES = ("mse", "huber")


class RoboVLMConfig(PreTrainedConfig):
    model_type = "robovlm"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="kosmos-2")}

    backbone_config: dict | PreTrainedConfig | None = None
    history_len: int = 16  # frames the LSTM sees (RoboVLMs' window_size)
    chunk_size: int = 10  # actions predicted per frame (fwd_pred_next_n)
    action_dim: int = 7
    lstm_hidden_size: int = 1024
    lstm_num_layers: int = 4
    lstm_dropout: float = 0.0  # LSTMDecoder's policy_rnn_dropout_p
    head_hidden_sizes: list[int] | tuple[int, ...] = (1024, 512, 256)  # hard-coded in RoboVLMs' MLP heads
    prompt_template: str = "<grounding>An image of a robot {instruction}"
    arm_loss: str = "huber"  # RoboVLMs' BasePolicyHead.loss (huber_loss, delta 1); "mse" is the option
    gripper_loss_weight: float = 0.01
    normalization: str = "bounds_q99"  # see vla_finetune.policy_data.normalization
    # RoboVLMs' norm_action: the q01/q99-normalised arm actions are clipped to [min, max] and
    # mapped to [-1, 1], the range of the tanh head; (-1, 1) switches the rescaling off
    action_norm_min: float = -0.65
    action_norm_max: float = 0.65
    # how load_policy runs the chunks (as SpatialVLAConfig): RoboVLMs' Simpler wrapper predicts
    # every step and executes the first action of each chunk
    execution: str = "chunk"  # "chunk" (ActionChunkExecutor) or "ensemble" (TemporalEnsembler)
    execute_steps: int = 1  # "chunk": actions of each chunk executed before predicting again
    # RoboVLMs' WidowX wrapper (late_close_gripper = 2) opens the gripper only after this many
    # consecutive "open" predictions and keeps it closed otherwise; 1 = each prediction as is
    gripper_open_after: int = 2

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        self.head_hidden_sizes = [int(s) for s in self.head_hidden_sizes]
        problems = []
        for name in ("history_len", "chunk_size", "lstm_hidden_size", "lstm_num_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                problems.append(f"{name} must be an integer >= 1, got {value!r}")
        if self.action_dim != 7:
            problems.append(f"action_dim must be 7 (6 arm values + gripper), got {self.action_dim!r}")
        if not 0.0 <= self.lstm_dropout < 1.0:
            problems.append(f"lstm_dropout must be in [0, 1), got {self.lstm_dropout!r}")
        if not self.head_hidden_sizes or any(s < 1 for s in self.head_hidden_sizes):
            problems.append(f"head_hidden_sizes must be positive sizes, got {self.head_hidden_sizes!r}")
        if "{instruction}" not in self.prompt_template:
            problems.append(f"prompt_template must contain '{{instruction}}', got {self.prompt_template!r}")
        if self.arm_loss not in ARM_LOSSES:
            problems.append(f"arm_loss must be one of {ARM_LOSSES}, got {self.arm_loss!r}")
        if self.gripper_loss_weight < 0:
            problems.append(f"gripper_loss_weight must be >= 0, got {self.gripper_loss_weight!r}")
        if self.normalization not in MODES:
            problems.append(f"normalization must be one of {MODES}, got {self.normalization!r}")
        if not -1.0 <= self.action_norm_min < self.action_norm_max <= 1.0:
            problems.append("action_norm_min < action_norm_max must lie in [-1, 1], got "
                            f"{self.action_norm_min!r}, {self.action_norm_max!r}")
        if self.execution not in ("chunk", "ensemble"):
            problems.append(f"execution must be 'chunk' or 'ensemble', got {self.execution!r}")
        if not isinstance(self.gripper_open_after, int) or self.gripper_open_after < 1:
            problems.append(f"gripper_open_after must be an integer >= 1, got {self.gripper_open_after!r}")
        if isinstance(self.chunk_size, int) and not 1 <= self.execute_steps <= self.chunk_size:
            problems.append(f"execute_steps must be in [1, chunk_size={self.chunk_size}], got {self.execute_steps!r}")
        if problems:
            raise ValueError("RoboVLMConfig: " + "; ".join(problems))

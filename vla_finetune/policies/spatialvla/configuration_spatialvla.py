"""SpatialVLA configuration: PaliGemma backbone, spatial action tokens, Ego3D, LoRA, execution.

Defaults are the paper's post-finetuning recipe (Sec. 10.3.2, Table 3) and the released
model's conventions (GitHub SpatialVLA/SpatialVLA: ``model/action_tokenizer.py``,
``data/dataset.py``; SimplerEnv's ``simpler_env/policies/spatialvla/spatialvla_model.py``):

- action chunk 4 (``processor_config.json`` ``action_chunk_size``), 8194 spatial action
  tokens named ``<ACTION00000>`` ... ``<ACTION08193>`` (translation 16x32x8, rotation
  16x16x16, gripper 2, see :mod:`vla_finetune.policies.spatialvla.action_tokenizer`);
- prompt: the lower-cased instruction itself (upstream trains on
  ``language_instruction.lower()`` with no template; PaliGemma's processor adds the image
  tokens, ``<bos>`` and the closing ``\\n``);
- execution: a chunk is predicted every step and the chunks covering the step are
  averaged with weights ``exp(-m * i)``, ``i = 0`` the oldest, ``m = -0.8`` (SimplerEnv's
  ``ActionEnsembler`` with ``action_ensemble_temp=-0.8``: newer predictions weigh more);
  ``execution``/``execute_steps``/``ensemble_weight_decay`` carry that to ``load_policy``;
- Ego3D position encoding (``use_ego3d``): ZoeDepth depth -> back-projection with the
  camera intrinsics ``intrinsic`` (3x3, already scaled to the model's image size) on
  ``ego3d_patch_reso``^2 points per SigLIP patch -> NeRF frequency encoding
  (``ego3d_n_freqs``) -> MLP, added to the SigLIP features. ``zoe_config`` is the
  ``ZoeDepthConfig`` as a dict; upstream feeds ZoeDepth a ``zoe_pad``-pixel reflect-padded
  image resized to ``zoe_input_size`` squared.
- LoRA rank 32, alpha 32 on all linear layers of the backbone (peft's ``"all-linear"``).
"""

from __future__ import annotations

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

# upstream's token names (model/action_tokenizer.py ACTION_TOKEN)
ACTION_TOKEN = "<ACTION{:05d}>"


class SpatialVLAConfig(PreTrainedConfig):
    model_type = "spatialvla_orv"
    sub_configs_defaults = {"backbone_config": SubConfigSpec(config_class=AutoConfig, model_type="paligemma")}

    backbone_config: dict | PreTrainedConfig | None = None
    chunk_size: int = 4
    action_dim: int = 7
    action_vocab_size: int = 8194
    action_token_offset: int = -1  # id of <ACTION00000> in the extended vocabulary
    prompt_template: str = "{instruction}"
    lora_rank: int = 32
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: str = "all-linear"
    normalization: str = "bounds_q99"
    # how load_policy executes the chunks (see vla_finetune.policies.interface)
    execution: str = "ensemble"  # "ensemble" (TemporalEnsembler) or "chunk" (ActionChunkExecutor)
    execute_steps: int = 1  # "chunk": actions of each chunk executed before predicting again
    ensemble_weight_decay: float = -0.8  # "ensemble": m in exp(-m * i), i = 0 the oldest chunk
    # Ego3D position encoding
    use_ego3d: bool = False
    ego3d_patch_reso: int = 2
    ego3d_n_freqs: int = 8
    zoe_config: dict | None = None
    intrinsic: list | None = None
    zoe_input_size: int = 384
    zoe_pad: int = 31

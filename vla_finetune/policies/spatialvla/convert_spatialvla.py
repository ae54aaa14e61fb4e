"""Convert the released SpatialVLA checkpoint into an ORV SpatialVLA policy folder.

``convert_spatialvla(SRC, DST)`` reads a folder in the layout of
``IPEC-COMMUNITY/spatialvla-4b-224-pt`` (no ``trust_remote_code``: its remote code is never
imported) and writes a folder that :class:`SpatialVLAPolicy` / ``load_policy`` open and
``orv-vla-train`` post-finetunes with LoRA.

What was learned from upstream (GitHub SpatialVLA/SpatialVLA ``model/modeling_spatialvla.py``,
``model/configuration_spatialvla.py``, ``model/processing_spatialvla.py``,
``model/action_tokenizer.py``, ``data/dataset.py``; SimplerEnv's SpatialVLA wrapper) and the
released ``config.json`` / ``processor_config.json``:

- weights: ``vision_tower.vision_model.*`` (SigLIP), ``multi_modal_projector.linear.*``,
  ``language_model.model.*`` + ``language_model.lm_head.weight`` (Gemma2, untied head:
  ``text_config.tie_word_embeddings`` false), ``vision_zoe_model.*`` (ZoeDepth),
  ``position_embedding_3d.position_embedding_head.{0,1,3}.*`` (the Ego3D MLP) and
  ``spatial_embed_tokens.weight`` (``spatial_token_num`` = 8194 rows). Upstream's
  ``from_pretrained`` copies ``spatial_embed_tokens`` into the last 8194 rows of the LM's
  input embeddings and its forward uses them for the ids ``[action_token_begin_idx,
  + spatial_token_num)``; here those rows of ``embed_tokens`` are replaced once, which is
  the same computation in a plain PaliGemma (the output head keeps its own rows);
- the model is PaliGemma (SigLIP -> linear projector -> Gemma2, image features scaled as
  PaliGemma does, bidirectional attention over image + prompt) plus Ego3D, so the backbone
  becomes a transformers ``PaliGemmaForConditionalGeneration`` and Ego3D the policy's
  :class:`Ego3DPositionEncoding` on transformers' ``ZoeDepthForDepthEstimation``;
- ``text_config`` lists only what differs from transformers' Gemma2 defaults of the time;
  the rest is filled with the Gemma 2 2B architecture (PaliGemma 2 3B's LM: 8 heads of
  256, query scale 256, soft-caps 50 / 30, sliding window 4096), checked against the
  weight shapes;
- ``processor_config.json``: ``statistics[dataset].action`` (``q01``/``q99``, ``mask``:
  the six arm values un-normalised as ``0.5 (a + 1) (q99 - q01) + q01``, the gripper left
  as is -- ORV's ``bounds_q99``), ``bin_policy`` + ``action_config.num_bins`` (the grid;
  bins decode to edge midpoints), ``intrinsic_config[dataset]`` (else ``default``; the 3x3
  matrix is scaled from its ``width`` x ``height`` to the image size as upstream's
  processor does), ``action_chunk_size`` (4), ``num_obs_steps`` (1);
- ``preprocessor_config.json`` has ``do_normalize`` false because upstream normalises
  (mean = std = 0.5) inside the model; the converted processor normalises instead (same
  values reach SigLIP, see :mod:`~vla_finetune.policies.spatialvla.modeling_spatialvla`);
- prompt: the lower-cased instruction (upstream trains on it without a template);
  execution: SimplerEnv's ensemble of the 4-step chunks with ``action_ensemble_temp`` -0.8.

Sub-models are loaded with their transformers classes from per-component temporary
folders, so transformers' own renaming of old checkpoint keys (e.g. ZoeDepth's BEiT) applies.
Hand-written because no library converts this layout.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file
from transformers import (Gemma2Config, Gemma2ForCausalLM, GemmaTokenizer, PaliGemmaConfig, PaliGemmaProcessor,
                          SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel, ZoeDepthConfig,
                          ZoeDepthForDepthEstimation)

from orv_engine.models.checkpoint_files import CheckpointError
from vla_finetune.policies.spatialvla.action_tokenizer import ActionTokenizerError, SpatialActionTokenizer
from vla_finetune.policies.spatialvla.configuration_spatialvla import ACTION_TOKEN, SpatialVLAConfig
from vla_finetune.policies.spatialvla.modeling_spatialvla import SpatialVLAPolicy
from vla_finetune.policy_data.normalization import StatisticsError

DEFAULT_DATASET = "bridge_orig/1.0.0"  # SimplerEnv's unnorm_key for WidowX/Bridge
# Gemma 2 2B, for the text_config keys the release leaves to transformers' defaults
GEMMA2_2B = dict(num_attention_heads=8, num_key_value_heads=4, head_dim=256, query_pre_attn_scalar=256,
                 sliding_window=4096, final_logit_softcapping=30.0, attn_logit_softcapping=50.0, rms_norm_eps=1e-6,
                 rope_theta=10000.0, max_position_embeddings=8192, hidden_activation="gelu_pytorch_tanh",
                 attention_bias=False)
SIGLIP_MEAN = SIGLIP_STD = [0.5, 0.5, 0.5]  # upstream modeling_spatialvla.py SIGLIP_MEAN / SIGLIP_STD
ARM_MASK = [True] * 6 + [False]
SAVING_RUN_KEYS = ("_attn_implementation_autoset", "architectures", "_name_or_path", "torch_dtype",
                   "transformers_version")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def convert_spatialvla(src: Path, dst: Path, *, dtype: str = "keep", dataset: str | None = None) -> Path:
    """Write an ORV SpatialVLA policy folder at ``dst`` from the released folder ``src``; returns ``dst``.

    ``dtype``: "keep" (the checkpoint's), "float32", "bfloat16" or "float16". ``dataset``:
    the ``processor_config.json`` entry whose statistics and camera intrinsics the policy
    uses (default ``bridge_orig/1.0.0``).
    """
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if not src.is_dir():
        raise CheckpointError(f"SpatialVLA folder {src} not found")
    if dtype != "keep" and dtype not in DTYPES:
        raise ValueError(f"dtype must be 'keep' or one of {sorted(DTYPES)}, not {dtype!r}")
    dataset = dataset or DEFAULT_DATASET
    config_path, processor_path = src / "config.json", src / "processor_config.json"
    config = _read_json(config_path)
    if config.get("model_type") != "spatialvla":
        raise CheckpointError(f"{config_path}: model_type {config.get('model_type')!r} is not 'spatialvla' (expected "
                              "the released IPEC-COMMUNITY/spatialvla-4b-224-pt layout)")
    pconfig = _read_json(processor_path)
    statistics = _statistics(pconfig, processor_path, dataset)
    grid = _grid(pconfig, processor_path)
    if pconfig.get("num_obs_steps", 1) != 1:
        raise CheckpointError(f"{processor_path}: num_obs_steps is {pconfig['num_obs_steps']}; only one frame per "
                              "step is supported")
    chunk = pconfig.get("action_chunk_size")
    if not isinstance(chunk, int) or chunk < 1:
        raise CheckpointError(f"{processor_path}: action_chunk_size must be a positive integer, got {chunk!r}")
    for key in ("text_config", "vision_config", "image_token_index", "projection_dim"):
        if key not in config:
            raise CheckpointError(f"{config_path}: no {key}")
    use_spatial = bool(config.get("use_spatial_token", False))
    use_zoe = bool(config.get("use_vision_zoe", True))
    begin, count = config.get("action_token_begin_idx"), config.get("spatial_token_num")
    if not isinstance(begin, int):
        raise CheckpointError(f"{config_path}: action_token_begin_idx must be the id of {ACTION_TOKEN.format(0)}, "
                              f"got {begin!r}")
    if use_spatial and count != grid.vocab_size:
        raise CheckpointError(f"{config_path}: spatial_token_num is {count} but the action grid of "
                              f"{processor_path.name} (bin_policy) has {grid.vocab_size} tokens")

    tokenizer = _tokenizer(src, begin, grid.vocab_size)
    image_processor = _image_processor(src)
    intrinsic = _intrinsic(pconfig, processor_path, dataset, image_processor.size)
    tensors = _read_weights(src)
    if dtype != "keep":
        tensors = {k: v.to(DTYPES[dtype]) if v.is_floating_point() else v for k, v in tensors.items()}
    torch_dtype = tensors[_require(tensors, "language_model.model.embed_tokens.weight", src)].dtype

    with tempfile.TemporaryDirectory(dir=dst.parent if dst.parent.is_dir() else None) as tmp:
        tmp = Path(tmp)
        language = _language_model(config, config_path, tensors, begin, count if use_spatial else 0, src, tmp,
                                   torch_dtype)
        vision = _component(SiglipVisionModel, SiglipVisionConfig(**_clean(config["vision_config"])),
                            _strip(tensors, "vision_tower."), tmp / "vision", torch_dtype, "vision_tower.", src)
        zoe = None
        if use_zoe:
            if not isinstance(config.get("vision_zoe_config"), dict):
                raise CheckpointError(f"{config_path}: use_vision_zoe is true but there is no vision_zoe_config")
            zoe_config = ZoeDepthConfig(**_clean(config["vision_zoe_config"]))
            zoe = _component(ZoeDepthForDepthEstimation, zoe_config, _strip(tensors, "vision_zoe_model."),
                             tmp / "zoe", torch_dtype, "vision_zoe_model.", src)

        backbone_config = PaliGemmaConfig(
            text_config=language.config.to_dict(), vision_config=vision.config.to_dict(),
            image_token_index=config["image_token_index"], projection_dim=config["projection_dim"],
            tie_word_embeddings=False)
        policy_config = SpatialVLAConfig(
            backbone_config=backbone_config.to_dict(), chunk_size=chunk, action_vocab_size=grid.vocab_size,
            action_token_offset=begin, prompt_template="{instruction}", use_ego3d=use_zoe,
            ego3d_patch_reso=config.get("ego3d_patch_reso", 4), ego3d_n_freqs=config.get("n_freqs", 8),
            zoe_config=zoe.config.to_dict() if zoe is not None else None,
            intrinsic=intrinsic.tolist() if use_zoe else None)
        with torch.device("meta"):  # no random init of a 4B model: every module is replaced below
            policy = SpatialVLAPolicy(policy_config)
        model = policy.backbone.model
        model.vision_tower = vision
        model.language_model = language.model
        policy.backbone.lm_head = language.lm_head
        _assign(model.multi_modal_projector, tensors, "multi_modal_projector.", src)
        if zoe is not None:
            policy.ego3d.depth_model = zoe.eval().requires_grad_(False)
            _assign(policy.ego3d.position_embedding_head, tensors, "position_embedding_3d.position_embedding_head.",
                    src)
        unset = [n for n, t in (*policy.named_parameters(), *policy.named_buffers()) if t.is_meta]
        if unset:
            raise CheckpointError(f"{src}: the checkpoint does not set {', '.join(unset[:5])}"
                                  + (f" and {len(unset) - 5} more" if len(unset) > 5 else ""))
        policy.config.dtype = torch_dtype
        size = len(tokenizer)
        processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
        if len(processor.tokenizer) != size:  # the processor added tokens the embeddings do not have
            raise CheckpointError(f"{src}: the tokenizer lacks PaliGemma's <image>/location/segmentation tokens")
        policy.attach(processor, statistics, policy_config.normalization)
        policy.action_tokenizer = grid
        dst.mkdir(parents=True, exist_ok=True)
        policy.save_pretrained(dst)
    return dst


# ---------------------------------------------------------------- files


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"{path} not found (expected the released SpatialVLA folder layout)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON: {err}") from None


def _read_weights(src: Path) -> dict[str, torch.Tensor]:
    index = src / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(_read_json(index).get("weight_map", {}).values()))
        missing = [f for f in files if not (src / f).is_file()]
        if missing:
            raise CheckpointError(f"{index}: weight_map names {', '.join(missing)}, not in {src}")
    else:
        files = [f.name for f in sorted(src.glob("*.safetensors"))]
    if not files:
        raise CheckpointError(f"{src}: no weights (model.safetensors or model.safetensors.index.json)")
    tensors = {}
    for name in files:
        with safe_open(str(src / name), "pt") as f:
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    return tensors


def _require(tensors: dict, key: str, src: Path) -> str:
    if key not in tensors:
        raise CheckpointError(f"{src}: weight {key} missing from the safetensors files")
    return key


def _strip(tensors: dict, prefix: str) -> dict:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def _clean(config: dict) -> dict:
    # keys that describe the saving run, not the architecture
    return {k: v for k, v in config.items() if k not in SAVING_RUN_KEYS}


# ---------------------------------------------------------------- processor side


def _statistics(pconfig: dict, path: Path, dataset: str) -> dict:
    stats = pconfig.get("statistics")
    if not isinstance(stats, dict) or not stats:
        raise StatisticsError(f"{path}: no 'statistics' (the per-dataset action statistics)")
    if dataset not in stats:
        raise StatisticsError(f"{path}: statistics has no entry {dataset!r} (has: {', '.join(sorted(stats))})")
    action = stats[dataset].get("action") if isinstance(stats[dataset], dict) else None
    field = f"statistics[{dataset!r}].action"
    if not isinstance(action, dict):
        raise StatisticsError(f"{path}: {field} missing")
    for key in ("q01", "q99"):
        values = action.get(key)
        if not isinstance(values, list) or len(values) != 7:
            raise StatisticsError(f"{path}: {field}.{key} must be 7 numbers, got {values!r}")
    mask = action.get("mask", ARM_MASK)
    if [bool(m) for m in mask] != ARM_MASK:
        raise StatisticsError(f"{path}: {field}.mask is {mask}; ORV un-normalises the six arm values and keeps the "
                              "gripper (mask [true x 6, false])")
    return {"action": dict(action)}


def _grid(pconfig: dict, path: Path) -> SpatialActionTokenizer:
    action_config = pconfig.get("action_config")
    if not isinstance(action_config, dict) or not isinstance(action_config.get("num_bins"), dict):
        raise CheckpointError(f"{path}: no action_config.num_bins")
    if action_config.get("use_spherical", True) is not True:
        raise CheckpointError(f"{path}: action_config.use_spherical must be true (spherical translation bins)")
    if "bin_policy" not in pconfig:
        raise CheckpointError(f"{path}: no bin_policy (the action grid)")
    try:
        return SpatialActionTokenizer.from_bin_policy(pconfig["bin_policy"], action_config["num_bins"],
                                                      where=f"{path}: bin_policy")
    except ActionTokenizerError as err:
        raise CheckpointError(str(err)) from None


def _intrinsic(pconfig: dict, path: Path, dataset: str, size: dict) -> np.ndarray:
    entries = pconfig.get("intrinsic_config")
    if not isinstance(entries, dict):
        raise CheckpointError(f"{path}: no intrinsic_config (camera intrinsics for Ego3D)")
    key = dataset if dataset in entries else "default"
    entry = entries.get(key)
    field = f"intrinsic_config[{key!r}]"
    if not isinstance(entry, dict):
        raise CheckpointError(f"{path}: {field} missing (neither {dataset!r} nor 'default')")
    try:
        k = np.asarray(entry["intrinsic"], np.float64).reshape(3, 3)
        width, height = float(entry["width"]), float(entry["height"])
    except (KeyError, ValueError, TypeError) as err:
        raise CheckpointError(f"{path}: {field} needs a 3x3 'intrinsic', 'width' and 'height' ({err})") from None
    k[0] *= size["width"] / width  # the matrix is given at width x height; the model sees the resized image
    k[1] *= size["height"] / height
    return k


def _tokenizer(src: Path, begin: int, count: int):
    config = src / "tokenizer_config.json"
    kind = _read_json(config).get("tokenizer_class")
    if kind not in ("GemmaTokenizer", "GemmaTokenizerFast"):
        raise CheckpointError(f"{config}: tokenizer_class is {kind!r}, expected PaliGemma's GemmaTokenizer")
    try:  # the class itself, not AutoTokenizer: that would follow config.json's auto_map to remote code
        tokenizer = GemmaTokenizer.from_pretrained(str(src), trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{src}: cannot load the tokenizer files: {err}") from err
    first, last = ACTION_TOKEN.format(0), ACTION_TOKEN.format(count - 1)
    ids = tokenizer.convert_tokens_to_ids([first, last])
    if ids != [begin, begin + count - 1]:
        raise CheckpointError(f"{src}: the tokenizer has {first}/{last} at ids {ids}, but config.json "
                              f"action_token_begin_idx is {begin} ({count} action tokens)")
    return tokenizer


def _image_processor(src: Path) -> SiglipImageProcessor:
    path = src / "preprocessor_config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} not found (the SigLIP image processor)")
    processor = SiglipImageProcessor.from_pretrained(str(src))
    # upstream normalises inside the model (mean = std = 0.5); the converted policy's processor does
    processor.do_normalize, processor.image_mean, processor.image_std = True, SIGLIP_MEAN, SIGLIP_STD
    if not getattr(processor, "image_seq_length", None):
        raise CheckpointError(f"{path}: no image_seq_length")
    return processor


# ---------------------------------------------------------------- weights


def _language_model(config: dict, config_path: Path, tensors: dict, begin: int, count: int, src: Path, tmp: Path,
                    torch_dtype) -> Gemma2ForCausalLM:
    text = {**GEMMA2_2B, **_clean(config["text_config"])}
    if text.get("model_type", "gemma2") != "gemma2":
        raise CheckpointError(f"{config_path}: text_config.model_type is {text['model_type']!r}, expected 'gemma2'")
    text.pop("hidden_act", None)  # Gemma2 reads hidden_activation
    lm = _strip(tensors, "language_model.")
    embed = lm.get(_require(tensors, "language_model.model.embed_tokens.weight", src)[len("language_model."):])
    rows, hidden = embed.shape
    if "lm_head.weight" not in lm:
        if text.get("tie_word_embeddings", True) is False:
            raise CheckpointError(f"{src}: weight language_model.lm_head.weight missing (text_config."
                                  "tie_word_embeddings is false)")
        lm["lm_head.weight"] = embed.clone()
    text.update(vocab_size=rows, hidden_size=hidden, tie_word_embeddings=False)
    q = lm.get("model.layers.0.self_attn.q_proj.weight")
    if q is not None and q.shape[0] != text["num_attention_heads"] * text["head_dim"]:
        raise CheckpointError(f"{config_path}: text_config num_attention_heads x head_dim = "
                              f"{text['num_attention_heads']} x {text['head_dim']} does not match q_proj "
                              f"{tuple(q.shape)}")
    if count:
        spatial = tensors[_require(tensors, "spatial_embed_tokens.weight", src)]
        if spatial.shape != (count, hidden) or begin + count > rows:
            raise CheckpointError(f"{src}: spatial_embed_tokens.weight is {tuple(spatial.shape)}, expected "
                                  f"({count}, {hidden}) for ids {begin}..{begin + count - 1} of {rows}")
        embed = embed.clone()
        embed[begin:begin + count] = spatial.to(embed.dtype)  # what upstream's from_pretrained/forward use
        lm["model.embed_tokens.weight"] = embed
    return _component(Gemma2ForCausalLM, Gemma2Config(**text), lm, tmp / "language", torch_dtype, "language_model.",
                      src)


def _component(cls, config, tensors: dict, folder: Path, torch_dtype, prefix: str, src: Path):
    """Load one sub-model with its transformers class (which maps old key names), strictly."""
    if not tensors:
        raise CheckpointError(f"{src}: no {prefix}* weights in the safetensors files")
    folder.mkdir(parents=True)
    config.save_pretrained(folder)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    model, info = cls.from_pretrained(str(folder), dtype=torch_dtype, output_loading_info=True)
    problems = [f"{kind} {', '.join(sorted(prefix + k for k in info[kind])[:5])}"
                for kind in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(kind)]
    if problems:
        raise CheckpointError(f"{src}: {cls.__name__} weights do not match its config: {'; '.join(problems)}")
    return model


def _assign(module: torch.nn.Module, tensors: dict, prefix: str, src: Path) -> None:
    state = _strip(tensors, prefix)
    expected = module.state_dict()
    missing = [prefix + k for k in expected if k not in state]
    if missing:
        raise CheckpointError(f"{src}: weight(s) {', '.join(missing)} missing from the safetensors files")
    wrong = [f"{prefix}{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if tuple(state[k].shape) != tuple(v.shape)]
    if wrong:
        raise CheckpointError(f"{src}: weight shape(s) {', '.join(wrong)}")
    module.load_state_dict({k: state[k] for k in expected}, assign=True)

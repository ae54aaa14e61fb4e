"""The two released policies at full size on this CPU, random weights: parameter counts
against the released layouts, peak memory and one ``act()``.

    python -m benchmarks.vla_real_size [--only robovlm|spatialvla] [--dtype bfloat16|float32]
                                       [--skip-act] [--json PATH]

**Counts.** The released layout of each checkpoint is counted independently of our policy
classes, component by component on the ``meta`` device (no memory), from the released
configurations and the upstream module layout (the key names our converters read):

- RoboVLMs ``kosmos_ph_oxe-pretrain``: ``model.backbone`` (Kosmos-2 at
  ``microsoft/kosmos-2-patch14-224``'s config = transformers' ``Kosmos2Config()``),
  ``model.action_token`` (2048), ``model.act_head.rnn`` (LSTM 2048 -> 1024, 4 layers),
  ``model.act_head.actions.mlp`` (1024 -> 1024 -> 512 -> 256 -> 6 x 10) and
  ``model.act_head.gripper.mlp`` (... -> 10). The backbone is also checked against the
  published size of ``microsoft/kosmos-2-patch14-224``'s fp32 ``model.safetensors``
  (6.66 GB on the Hub).
- SpatialVLA ``spatialvla-4b-224-pt``: ``language_model`` (Gemma 2 2B: hidden 2304, 26 layers,
  8 heads of 256, 4 KV heads, MLP 9216, vocabulary 265347 = Gemma's 256000 + PaliGemma's 1024
  location + 128 segmentation tokens + ``<image>`` + 8194 action tokens, untied ``lm_head``),
  ``vision_tower`` (SigLIP so400m/14 at 224), ``multi_modal_projector`` (1152 -> 2304),
  ``vision_zoe_model`` (ZoeDepth, transformers' default config: BEiT-L/16 at 384),
  ``position_embedding_3d.position_embedding_head`` (Linear 3 x 2^2 x (2 x 8 + 1) -> 1152,
  LayerNorm, Linear 1152 -> 1152) and ``spatial_embed_tokens`` (8194 x 2304). Our converter
  copies ``spatial_embed_tokens`` into the action rows of ``embed_tokens`` (what upstream does
  at every forward), so the converted policy has exactly those 8194 x 2304 fewer parameters:
  the figure says so, it is not hidden.

**act().** The policy class is built at full size with random weights in ``--dtype``
(default bfloat16, what SpatialVLA is released in; float32 doubles the memory), given the
released image size (224) but a small locally trained tokenizer (no Hub access: token ids
differ, sequence lengths are the same to within a few tokens), and runs one ``act()`` on a
480x640 image (Bridge's size) after a warm-up call: the first includes one-off set-up. Each
policy runs in its own process; "peak memory" is that process's max RSS (building the model
included). Nothing is asserted: the machine may be shared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import vla_finetune  # noqa: F401  (import order)
from benchmarks.figures import write_figures
from orv_engine.testing.released_robovlms import released_statistics
from orv_engine.testing.released_spatialvla import NUM_BINS, gaussian_bin_policy
from orv_engine.testing.tiny_vla import tiny_gemma_tokenizer, tiny_kosmos2_tokenizer
from vla_finetune.policies.robovlm import RoboVLMConfig, RoboVLMPolicy
from vla_finetune.policies.spatialvla import SpatialVLAConfig, SpatialVLAPolicy
from vla_finetune.policies.spatialvla.action_tokenizer import SpatialActionTokenizer

DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32}
KOSMOS2_PUBLISHED_FP32_BYTES = 6.66e9  # microsoft/kosmos-2-patch14-224 model.safetensors on the Hub
GEMMA2_2B = dict(hidden_size=2304, num_hidden_layers=26, num_attention_heads=8, num_key_value_heads=4, head_dim=256,
                 intermediate_size=9216, query_pre_attn_scalar=256, max_position_embeddings=8192,
                 tie_word_embeddings=False)
SIGLIP_SO400M_224 = dict(hidden_size=1152, intermediate_size=4304, num_hidden_layers=27, num_attention_heads=16,
                         image_size=224, patch_size=14)
SPATIALVLA_VOCAB, ACTION_TOKENS, ACTION_OFFSET = 265347, 8194, 257153
EGO3D_RESO, EGO3D_FREQS = 2, 8
PROMPTS = ["put the spoon on the towel", "put carrot on plate", "stack the green block on the yellow block",
           "put eggplant into yellow basket"]


@contextlib.contextmanager
def default_dtype(dtype: torch.dtype):
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


# ------------------------------------------------------------------ RoboVLMs

def robovlms_released() -> dict:
    """Parameters per top-level key of the released checkpoint, counted on meta."""
    from transformers import Kosmos2Config, Kosmos2ForConditionalGeneration

    config = Kosmos2Config()
    width, hidden, chunk = config.text_config.embed_dim, 1024, 10
    with torch.device("meta"):
        parts = {"model.backbone": count(Kosmos2ForConditionalGeneration(config)),
                 "model.action_token": width,
                 "model.act_head.rnn": count(nn.LSTM(width, hidden, num_layers=4)),
                 "model.act_head.actions.mlp": count(mlp([hidden, 1024, 512, 256, 6 * chunk])),
                 "model.act_head.gripper.mlp": count(mlp([hidden, 1024, 512, 256, chunk]))}
    return parts


def robovlm_policy(dtype: torch.dtype | None) -> RoboVLMPolicy:
    from transformers import CLIPImageProcessor, Kosmos2Config, Kosmos2Processor

    config = RoboVLMConfig(backbone_config=Kosmos2Config().to_dict())
    if dtype is None:
        with torch.device("meta"):
            return RoboVLMPolicy(config)
    with default_dtype(dtype):  # built in dtype: no float32 copy of 1.7B parameters first
        policy = RoboVLMPolicy(config).eval()
    image_processor = CLIPImageProcessor(size={"shortest_edge": 224}, crop_size={"height": 224, "width": 224})
    processor = Kosmos2Processor(image_processor, tiny_kosmos2_tokenizer(PROMPTS), num_patch_index_tokens=16)
    policy.attach(processor, released_statistics(), config.normalization)
    return policy


# ------------------------------------------------------------------ SpatialVLA

def spatialvla_configs():
    from transformers import PaliGemmaConfig, ZoeDepthConfig

    zoe = ZoeDepthConfig()
    backbone = PaliGemmaConfig(
        text_config=dict(model_type="gemma2", vocab_size=SPATIALVLA_VOCAB, **GEMMA2_2B),
        vision_config=dict(model_type="siglip_vision_model", vision_use_head=False, **SIGLIP_SO400M_224),
        projection_dim=GEMMA2_2B["hidden_size"], image_token_index=257152, tie_word_embeddings=False)
    return backbone, zoe


def spatialvla_released() -> dict:
    from transformers import Gemma2Config, Gemma2ForCausalLM, SiglipVisionConfig, SiglipVisionModel, ZoeDepthForDepthEstimation

    backbone, zoe = spatialvla_configs()
    vision, width = SIGLIP_SO400M_224["hidden_size"], GEMMA2_2B["hidden_size"]
    ego_in = 3 * EGO3D_RESO ** 2 * (2 * EGO3D_FREQS + 1)
    with torch.device("meta"):
        return {
            "language_model": count(Gemma2ForCausalLM(Gemma2Config(vocab_size=SPATIALVLA_VOCAB, **GEMMA2_2B))),
            "vision_tower": count(SiglipVisionModel(SiglipVisionConfig(vision_use_head=False, **SIGLIP_SO400M_224))),
            "multi_modal_projector": count(nn.Linear(vision, width)),
            "vision_zoe_model": count(ZoeDepthForDepthEstimation(zoe)),
            "position_embedding_3d": count(nn.Sequential(nn.Linear(ego_in, vision), nn.LayerNorm(vision), nn.ReLU(),
                                                         nn.Linear(vision, vision))),
            "spatial_embed_tokens": ACTION_TOKENS * width,
        }


def spatialvla_policy(dtype: torch.dtype | None) -> SpatialVLAPolicy:
    from transformers import PaliGemmaProcessor, SiglipImageProcessor

    backbone, zoe = spatialvla_configs()
    focal = 623.588 * 224 / 640  # the release's Bridge camera (640x480) at the model's 224x224
    intrinsic = [[focal, 0.0, 112.0], [0.0, 623.588 * 224 / 480, 112.0], [0.0, 0.0, 1.0]]
    kwargs = dict(action_token_offset=ACTION_OFFSET, action_vocab_size=ACTION_TOKENS, use_ego3d=True,
                  zoe_config=zoe.to_dict(), intrinsic=intrinsic)
    if dtype is None:
        with torch.device("meta"):
            return SpatialVLAPolicy(SpatialVLAConfig(backbone_config=backbone.to_dict(), **kwargs))
    tokenizer = tiny_gemma_tokenizer(PROMPTS)
    image_processor = SiglipImageProcessor(size={"height": 224, "width": 224}, image_seq_length=256)
    processor = PaliGemmaProcessor(image_processor=image_processor, tokenizer=tokenizer)
    backbone.image_token_index = processor.image_token_id  # the small tokenizer's <image> id
    backbone.text_config.pad_token_id = processor.tokenizer.pad_token_id
    config = SpatialVLAConfig(backbone_config=backbone.to_dict(), **kwargs)
    with default_dtype(dtype):  # built in dtype: no float32 copy of 4B parameters first
        policy = SpatialVLAPolicy(config).eval()
    policy.attach(processor, released_statistics(), config.normalization)
    policy.action_tokenizer = SpatialActionTokenizer.from_bin_policy(gaussian_bin_policy(), NUM_BINS)
    return policy


# ------------------------------------------------------------------ one policy, in its own process

POLICIES = {"robovlm": (robovlms_released, robovlm_policy), "spatialvla": (spatialvla_released, spatialvla_policy)}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def measure(name: str, dtype_name: str, act: bool) -> dict:
    released_fn, build = POLICIES[name]
    released = released_fn()
    ours = count(build(None))
    result = {"policy": name, "released_parameters": released, "released_total": sum(released.values()),
              "converted_parameters": ours}
    if name == "robovlm":
        result["backbone_fp32_bytes_vs_published"] = 4 * released["model.backbone"] / KOSMOS2_PUBLISHED_FP32_BYTES
        result["difference_explained"] = 0
    else:
        result["difference_explained"] = released["spatial_embed_tokens"]  # merged into embed_tokens rows
    result["counts_match"] = ours == result["released_total"] - result["difference_explained"]
    if not act:
        return result
    dtype = DTYPES[dtype_name]
    torch.manual_seed(0)
    start = time.perf_counter()
    policy = build(dtype)
    result["build_seconds"] = time.perf_counter() - start
    wrapped = load_policy_like(policy)
    image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    wrapped.reset(PROMPTS[0])
    start = time.perf_counter()
    first = wrapped.act(image)
    result["first_act_seconds"] = time.perf_counter() - start
    start = time.perf_counter()
    action = wrapped.act(image)
    result["act_seconds"] = time.perf_counter() - start
    result["action_finite"] = bool(np.isfinite(first).all() and np.isfinite(action).all())
    result["dtype"], result["peak_rss_mb"] = dtype_name, peak_rss_mb()
    return result


def load_policy_like(policy):
    """The wrapper ``load_policy`` would put around this policy (its config's execution convention)."""
    from vla_finetune.policies.interface import ActionChunkExecutor, TemporalEnsembler

    config = policy.config
    if getattr(config, "execution", "chunk") == "ensemble":
        return TemporalEnsembler(policy, config.ensemble_weight_decay)
    return ActionChunkExecutor(policy, getattr(config, "execute_steps", None))


# ------------------------------------------------------------------ report

def table(results: list[dict]) -> str:
    lines = ["policy      released params  converted params  match  build s  first act s  act s  peak RSS MB  dtype"]
    for r in results:
        lines.append(f"{r['policy']:<11} {r['released_total']:>15,}  {r['converted_parameters']:>16,}  "
                     f"{str(r['counts_match']):<5}  {r.get('build_seconds', float('nan')):>7.1f}  "
                     f"{r.get('first_act_seconds', float('nan')):>11.1f}  {r.get('act_seconds', float('nan')):>5.1f}  "
                     f"{r.get('peak_rss_mb', float('nan')):>11,.0f}  {r.get('dtype', '-')}")
        for key, value in r["released_parameters"].items():
            lines.append(f"    {key:<40} {value:>15,}")
        if r["difference_explained"]:
            lines.append(f"    converted = released - spatial_embed_tokens ({r['difference_explained']:,}: merged into "
                         "embed_tokens' action rows)")
        if "backbone_fp32_bytes_vs_published" in r:
            lines.append(f"    Kosmos-2 fp32 bytes / published 6.66 GB: {r['backbone_fp32_bytes_vs_published']:.4f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=sorted(POLICIES))
    p.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16")
    p.add_argument("--skip-act", action="store_true", help="counts only (meta device, seconds)")
    p.add_argument("--json", type=Path)
    p.add_argument("--child", choices=sorted(POLICIES), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.child, args.dtype, not args.skip_act)))
        return 0
    results = []
    for name in [args.only] if args.only else sorted(POLICIES):
        cmd = [sys.executable, "-m", "benchmarks.vla_real_size", "--child", name, "--dtype", args.dtype]
        if args.skip_act:
            cmd.append("--skip-act")
        print(f"{name}: running ...", file=sys.stderr, flush=True)
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(out.stderr[-3000:], file=sys.stderr)
            results.append({"policy": name, "error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"})
            continue
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ok = [r for r in results if "error" not in r]
    print(table(ok))
    for r in results:
        if "error" in r:
            print(f"{r['policy']}: FAILED: {r['error']}")
    report = {"results": results, "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                                              "torch": torch.__version__,
                                              "load_average": list(os.getloadavg())}}
    if args.json:
        write_figures(report, args.json, indent=1)
    return 0 if len(ok) == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())

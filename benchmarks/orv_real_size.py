"""The real-size ORV-2B transformer (official stage-2 config) on a CPU: parameters, tokens,
FLOPs per step against stock CogVideoX-2B, peak memory and the time of one forward.

Why: the other transformer benchmarks run 2B-*shaped* models with a few layers; this one
builds the whole 30-layer model the official stage-2 checkpoint describes, through the
same path an official folder takes, to give the figures the docs quote at real size:

1. an upstream-format ``config.json`` (``_class_name: CogVideoXTransformer3DModelTraj``,
   CogVideoX-2B's config with 32 input channels, Bridge's 320x480 / 17 frames, upstream's
   own keys: ``visual_guidance``, ``num_control_keys: 2``, ...) is written to a temporary
   folder, read back, converted by :func:`orv_engine.models.upstream_orv.convert_config`
   and built with random weights (float32, CPU; no weights are written anywhere);
2. parameter count next to stock CogVideoX-2B (built on the meta device), the difference
   split by module (action encoder, condition fusion, the 16 first-frame input channels of
   the patch embedding);
3. tokens at the Bridge preset, from the config: 17 frames -> 5 latent frames of 40x60
   latents, patch 2 -> 5 * 20 * 30 = 3000 vision tokens (the paper's figure), 226 text;
4. FLOPs of one denoising step (batch 1, the Bridge preset; ORV with actions (1, 20, 7)
   and depth + semantics condition latents (1, 5, 32, 40, 60)) against stock CogVideoX-2B
   on the same latents, with 16 input channels (text-to-video, as released) and with 32
   (the image-to-video layout ORV uses), counted by ``torch.utils.flop_counter`` on the
   meta device (no compute; the counter does count SDPA there, checked against 4*S^2*D),
   with ORV's extra FLOPs split into condition patch embeddings, fusion linear, action
   MLP, per-frame AdaLN and the first-frame input channels. The counter counts matmuls
   and convolutions only (elementwise work is not counted);
5. the peak resident memory (``ru_maxrss``, the process's high-water mark, Python and
   torch included) after the build and after one forward under ``torch.no_grad()``;
6. the wall time of that one forward (the first call, no warm-up: one 2B step is ~11 TFLOP,
   about two minutes on 2 CPU cores). ``--no-forward`` skips it (the figures of 1-4 and
   the memory after the build remain; the run then takes ~30 s).

    python -m benchmarks.orv_real_size                      # ~8 GiB peak, ~2.5 min on 2 cores
    python -m benchmarks.orv_real_size --no-forward --json /tmp/orv_real_size.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from diffusers import CogVideoXTransformer3DModel
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.figures import write_figures
from orv_engine.models import ORVTransformer3DModel
from orv_engine.models.configs import COGVIDEOX_2B, ORV_2B
from orv_engine.models.loading import read_transformer_config
from orv_engine.models.upstream_orv import convert_config

BATCH = 1
GIB = 1024**3


def upstream_stage2_config() -> dict:
    """The config.json upstream's ``save_pretrained`` writes for the stage-2 2B model on Bridge."""
    return {
        "_class_name": "CogVideoXTransformer3DModelTraj",
        "_diffusers_version": "0.32.1",
        **COGVIDEOX_2B,
        # stock arguments CogVideoX-2B's own config.json predates (upstream writes every one)
        "ofs_embed_dim": None,
        "patch_size_t": None,
        "use_learned_positional_embeddings": False,
        "patch_bias": True,
        # image-to-video (noisy + first-frame latents), Bridge 320x480, 17 frames
        "in_channels": 32,
        "sample_height": 40,
        "sample_width": 60,
        "sample_frames": 17,
        # upstream's own arguments (config/traj_image_condfull_2b_finetune.yaml)
        "modulate_encoder_hidden_states": True,
        "visual_guidance": True,
        "num_control_keys": 2,
        "multiview": False,
        "max_n_view": 3,
        "recon_action": False,
        "num_control_blocks": 12,
        "from_t2v": False,
        "loaded_pretrained_model_name_or_path": None,
    }


def converted_config(folder: Path) -> tuple[dict, dict]:
    """Write the upstream config.json into ``folder``, read it back and convert it.

    Cross-checks: the loader's own reader takes the folder as an upstream one and gives the
    same config; the architecture is the named ``ORV_2B`` config's.
    """
    (folder / "config.json").write_text(json.dumps(upstream_stage2_config(), indent=2))
    saved = json.loads((folder / "config.json").read_text())
    config = convert_config(saved, folder)
    via_loader, kind, _ = read_transformer_config(folder, ORVTransformer3DModel, {})
    assert kind == "upstream" and via_loader == config, (kind, via_loader, config)
    differing = {k: (config.get(k), v) for k, v in ORV_2B.items() if config.get(k) != v}
    assert not differing, f"converted config differs from ORV_2B: {differing}"
    return saved, config


def token_counts(config: dict) -> dict:
    latent_frames = (config["sample_frames"] - 1) // config["temporal_compression_ratio"] + 1
    h, w, p = config["sample_height"], config["sample_width"], config["patch_size"]
    vision = latent_frames * (h // p) * (w // p)
    return dict(latent_frames=latent_frames, latent_height=h, latent_width=w,
                vision_tokens=vision, text_tokens=config["max_text_seq_length"])


def _numel(module: torch.nn.Module | None) -> int:
    return 0 if module is None else sum(p.numel() for p in module.parameters())


def parameter_counts(orv: ORVTransformer3DModel, stock: CogVideoXTransformer3DModel) -> dict:
    total, base = _numel(orv), _numel(stock)
    split = {
        "action_encoder": _numel(orv.action_encoder),
        "condition_fusion": _numel(orv.condition_fusion),
        "patch_embed first-frame channels": orv.patch_embed.proj.weight.numel() - stock.patch_embed.proj.weight.numel(),
    }
    rest = total - base - sum(split.values())
    assert rest == 0, f"{rest} parameters of difference not attributed"
    return dict(orv=total, cogvideox_2b=base, difference=total - base, split=split)


def _inputs(config: dict, tokens: dict, in_channels: int, with_orv_inputs: bool, generator=None) -> dict:
    def randn(*shape):
        return torch.randn(*shape, generator=generator)

    frames, h, w = tokens["latent_frames"], tokens["latent_height"], tokens["latent_width"]
    x = dict(hidden_states=randn(BATCH, frames, in_channels, h, w),
             encoder_hidden_states=randn(BATCH, config["max_text_seq_length"], config["text_embed_dim"]),
             timestep=torch.full((BATCH,), 500))
    if with_orv_inputs:
        kinds = len(config["condition_kinds"])
        x["actions"] = randn(BATCH, config["action_chunk"] * frames, config["action_dim"])
        x["condition_latents"] = randn(BATCH, frames, config["out_channels"] * kinds, h, w)
    return x


def _flop_counts(model: torch.nn.Module, inputs: dict) -> dict[str, int]:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        model(**inputs)
    return {name: sum(ops.values()) for name, ops in counter.get_flop_counts().items()}


def _groups(counts: dict[str, int], root: str) -> dict[str, int]:
    """Per-step FLOPs by part of the model, from the counter's per-module table.

    ORV's blocks run the AdaLN functionally (``F.linear`` on the norms' weights, see
    :mod:`orv_engine.models.action_adaln`), so the counter books it on the model itself:
    what no module claims is added to the AdaLN row (and checked analytically by the caller).
    """
    def total(pattern: str) -> int:
        regex = re.compile(re.escape(root) + r"\." + pattern)
        return sum(v for k, v in counts.items() if regex.fullmatch(k))

    groups = {
        "patch_embed conv": total(r"patch_embed\.proj"),
        "patch_embed text proj": total(r"patch_embed\.text_proj"),
        "time embedding": total(r"time_embedding"),
        "action encoder": total(r"action_encoder"),
        "condition fusion": total(r"condition_fusion"),
        "attention q/k/v/out": total(r"transformer_blocks\.\d+\.attn1\.(to_q|to_k|to_v|to_out\.0)"),
        "attention scores (SDPA)": total(r"transformer_blocks\.\d+\.attn1")
        - total(r"transformer_blocks\.\d+\.attn1\.(to_q|to_k|to_v|to_out\.0)"),
        "feed-forward": total(r"transformer_blocks\.\d+\.ff"),
        "AdaLN linears": total(r"transformer_blocks\.\d+\.norm[12]\.linear") + total(r"norm_out\.linear"),
        "proj_out": total(r"proj_out"),
    }
    groups["unattributed"] = counts["Global"] - sum(groups.values())
    groups["total"] = counts["Global"]
    return groups


def flops(config: dict, tokens: dict) -> dict:
    """FLOPs of one step, ORV vs stock CogVideoX-2B (16 and 32 input channels), meta device."""
    stock_base = {**COGVIDEOX_2B, **{k: config[k] for k in ("sample_height", "sample_width", "sample_frames")}}
    with torch.device("meta"):
        orv = ORVTransformer3DModel.from_config(config).eval()
        stock16 = CogVideoXTransformer3DModel.from_config({**stock_base, "in_channels": 16}).eval()
        stock32 = CogVideoXTransformer3DModel.from_config({**stock_base, "in_channels": 32, "out_channels": 16}).eval()
        x_orv = _inputs(config, tokens, config["in_channels"], True)
        x16 = _inputs(config, tokens, 16, False)
        x32 = _inputs(config, tokens, 32, False)
    g = {
        "orv": _groups(_flop_counts(orv, x_orv), type(orv).__name__),
        "cogvideox_2b_16ch": _groups(_flop_counts(stock16, x16), type(stock16).__name__),
        "cogvideox_2b_32ch": _groups(_flop_counts(stock32, x32), type(stock32).__name__),
    }
    layers, dim = config["num_layers"], config["num_attention_heads"] * config["attention_head_dim"]
    t_dim, frames = config["time_embed_dim"], tokens["latent_frames"]
    seq = tokens["vision_tokens"] + tokens["text_tokens"]

    # Checks: SDPA is counted (QK^T and AV: 4 S^2 D per layer); nothing escapes the stock table;
    # ORV's unattributed remainder is exactly its block AdaLN (vision rows on L frame tokens,
    # text rows on one).
    for name, groups in g.items():
        assert groups["attention scores (SDPA)"] == BATCH * layers * 4 * seq**2 * dim, (name, groups)
    for name in ("cogvideox_2b_16ch", "cogvideox_2b_32ch"):
        assert g[name]["unattributed"] == 0, (name, g[name])
    expected_adaln = BATCH * layers * 2 * 2 * t_dim * 3 * dim * (frames + 1)
    assert g["orv"]["unattributed"] == expected_adaln, (g["orv"]["unattributed"], expected_adaln)
    g["orv"]["AdaLN linears"] += g["orv"].pop("unattributed")
    for name in ("cogvideox_2b_16ch", "cogvideox_2b_32ch"):
        g[name].pop("unattributed")

    # ORV's extra FLOPs over stock (16 channels), by cause. ORV's patch embedding runs 1 + k
    # times on 32 channels (the latents, then each condition kind, text projection included).
    kinds = len(config["condition_kinds"])
    orv, s16 = g["orv"], g["cogvideox_2b_16ch"]
    per_call = (orv["patch_embed conv"] + orv["patch_embed text proj"]) / (1 + kinds)
    conv_per_call = orv["patch_embed conv"] / (1 + kinds)
    extra = {
        "condition patch embeddings (conv + text proj)": round(kinds * per_call),
        "condition fusion linear": orv["condition fusion"],
        "action MLP": orv["action encoder"],
        "per-frame AdaLN": orv["AdaLN linears"] - s16["AdaLN linears"],
        "first-frame input channels (patch conv)": round(conv_per_call - s16["patch_embed conv"]),
    }
    extra["other"] = orv["total"] - s16["total"] - sum(extra.values())
    assert extra["other"] == 0, extra
    return dict(groups=g, orv_extra_over_16ch=extra,
                ratio_vs_16ch=orv["total"] / s16["total"],
                ratio_vs_32ch=orv["total"] / g["cogvideox_2b_32ch"]["total"])


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB  # KiB on Linux


def current_rss_gib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / GIB


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", metavar="PATH", help="write the figures to this JSON file")
    parser.add_argument("--no-forward", action="store_true", help="skip the real CPU forward (over a minute)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads for the forward (default 2)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    result: dict = dict(torch=torch.__version__, threads=torch.get_num_threads(), cpus=os.cpu_count(),
                        dtype="float32", device="cpu", peak_rss_gib={"after imports": peak_rss_gib()})
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, float32 on CPU")

    with tempfile.TemporaryDirectory() as tmp:
        saved, config = converted_config(Path(tmp))
    result["upstream_config"], result["config"] = saved, config
    print(f"\n== config: upstream {saved['_class_name']} config.json (stage 2, 2B, Bridge) -> convert_config: "
          f"{config['num_layers']} layers x {config['num_attention_heads']} heads x {config['attention_head_dim']}, "
          f"in_channels {config['in_channels']}, conditions {config['condition_kinds']}, "
          f"modulate_text_tokens {config['modulate_text_tokens']} (= the named ORV_2B config)")

    tokens = token_counts(config)
    assert tokens["vision_tokens"] == 3000, tokens
    result["tokens"] = tokens
    print(f"\n== tokens at the Bridge preset: {config['sample_frames']} frames -> {tokens['latent_frames']} latent "
          f"frames of {tokens['latent_height']}x{tokens['latent_width']} latents, patch {config['patch_size']} -> "
          f"{tokens['vision_tokens']} vision tokens + {tokens['text_tokens']} text tokens "
          f"= {tokens['vision_tokens'] + tokens['text_tokens']} in attention")

    with torch.device("meta"):
        orv_meta = ORVTransformer3DModel.from_config(config)
        stock_meta = CogVideoXTransformer3DModel.from_config(COGVIDEOX_2B)
    params = parameter_counts(orv_meta, stock_meta)
    del orv_meta, stock_meta
    result["parameters"] = params
    print("\n== parameters")
    print(f"  {'ORV-2B (stage 2)':44s} {params['orv']:>15,d}  ({params['orv'] / 1e9:.4f} B)")
    print(f"  {'CogVideoX-2B (stock, 16 input channels)':44s} {params['cogvideox_2b']:>15,d}  "
          f"({params['cogvideox_2b'] / 1e9:.4f} B)")
    print(f"  {'difference':44s} {params['difference']:>+15,d}  "
          f"({100 * params['difference'] / params['cogvideox_2b']:+.3f}%)")
    for name, n in params["split"].items():
        print(f"    {name:42s} {n:>+15,d}")

    f = flops(config, tokens)
    result["flops"] = f
    g = f["groups"]
    cols = ("cogvideox_2b_16ch", "cogvideox_2b_32ch", "orv")
    print(f"\n== FLOPs of one step (batch {BATCH}, {tokens['latent_frames']}x{tokens['latent_height']}x"
          f"{tokens['latent_width']} latents, {tokens['text_tokens']} text tokens; ORV with actions "
          f"(1, {config['action_chunk'] * tokens['latent_frames']}, {config['action_dim']}) and "
          f"{len(config['condition_kinds'])} condition latents; torch FlopCounterMode on the meta device; GFLOP)")
    print(f"  {'':28s} {'CogVideoX-2B 16ch':>18s} {'CogVideoX-2B 32ch':>18s} {'ORV-2B':>14s} {'ORV - 16ch':>12s}")
    for row in g["orv"]:
        values = [g[c].get(row, 0) for c in cols]
        print(f"  {row:28s} " + " ".join(f"{v / 1e9:>{w}.3f}" for v, w in zip(values, (18, 18, 14)))
              + f" {(values[2] - values[0]) / 1e9:>+12.3f}")
    print(f"  total TFLOP per step: CogVideoX-2B 16ch {g['cogvideox_2b_16ch']['total'] / 1e12:.4f}, "
          f"32ch {g['cogvideox_2b_32ch']['total'] / 1e12:.4f}, ORV-2B {g['orv']['total'] / 1e12:.4f}")
    print(f"  ratio ORV / CogVideoX-2B: {f['ratio_vs_16ch']:.5f} (16 input channels, text-to-video as released), "
          f"{f['ratio_vs_32ch']:.5f} (32 input channels, same layout as ORV)")
    print("  ORV's extra FLOPs over CogVideoX-2B (16ch), by cause:")
    extra_total = g["orv"]["total"] - g["cogvideox_2b_16ch"]["total"]
    for name, v in f["orv_extra_over_16ch"].items():
        if name != "other":
            print(f"    {name:46s} {v / 1e9:>10.3f} GFLOP  ({100 * v / extra_total:5.1f}% of the extra)")
    print(f"    {'total':46s} {extra_total / 1e9:>10.3f} GFLOP  "
          f"({100 * extra_total / g['cogvideox_2b_16ch']['total']:.3f}% of a CogVideoX-2B step)")

    torch.manual_seed(0)
    t0 = time.perf_counter()
    model = ORVTransformer3DModel.from_config(config).eval()
    build_s = time.perf_counter() - t0
    assert _numel(model) == params["orv"]
    result["build_s"] = build_s
    result["peak_rss_gib"]["after build"] = peak_rss_gib()
    result["rss_gib_after_build"] = current_rss_gib()
    weights_gib = params["orv"] * 4 / GIB
    print(f"\n== real model: built with random weights in {build_s:.1f} s; weights {weights_gib:.2f} GiB (float32); "
          f"peak RSS after imports {result['peak_rss_gib']['after imports']:.2f} GiB, "
          f"after build {result['peak_rss_gib']['after build']:.2f} GiB")

    if not args.no_forward:
        x = _inputs(config, tokens, config["in_channels"], True, torch.Generator().manual_seed(0))
        with torch.no_grad():
            t0 = time.perf_counter()
            out = model(**x).sample
            forward_s = time.perf_counter() - t0
        expected = (BATCH, tokens["latent_frames"], config["out_channels"], tokens["latent_height"],
                    tokens["latent_width"])
        assert tuple(out.shape) == expected and torch.isfinite(out).all(), (out.shape, expected)
        result["forward_s"] = forward_s
        result["peak_rss_gib"]["after forward"] = peak_rss_gib()
        achieved = g["orv"]["total"] / forward_s / 1e9
        result["forward_gflops_per_s"] = achieved
        print(f"\n== one forward (Bridge preset, batch {BATCH}, torch.no_grad, {torch.get_num_threads()} threads, "
              f"first call): {forward_s:.1f} s ({achieved:.0f} GFLOP/s counted); output {tuple(out.shape)}; "
              f"peak RSS {result['peak_rss_gib']['after forward']:.2f} GiB")
    else:
        print("\n== forward skipped (--no-forward)")

    result["wall_s"] = time.perf_counter() - start
    print(f"\nwall time {result['wall_s']:.1f} s")
    if args.json:
        write_figures(result, args.json)


if __name__ == "__main__":
    sys.exit(main())

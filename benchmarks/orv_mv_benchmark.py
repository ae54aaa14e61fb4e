"""Time per denoising step and per training step of ORV-MV vs the number of views (1, 2, 3).

What it shows: the cost of ``V`` views generated together (view attention + the single-view
blocks on ``V`` videos) against ``V`` independent single-view generations (the single-view
model on a batch of ``V``), and the exact matmul FLOPs of both (meta device, no compute).
The view attention adds, per block, one attention over ``V*H*W`` tokens per latent frame:
its cost grows as ``V^2`` per frame, the single-view blocks' as ``V``.

    python -m benchmarks.orv_mv_benchmark                       # small config, CPU, < 2 min
    python -m benchmarks.orv_mv_benchmark --config 2b --layers 2 --device cuda --dtype bf16

Timing: the minimum over interleaved repeats (the least disturbed on a shared machine),
one thread by default so it does not fight other work on the machine for cores.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from orv_engine.models import ORVTransformer3DModel, transformer_config
from orv_engine.models.transformer_orv_mv import ORVMultiViewTransformer3DModel

SMALL = dict(num_attention_heads=4, attention_head_dim=16, num_layers=2, text_embed_dim=64, time_embed_dim=64,
             action_embed_dim=64, action_hidden_dim=64, max_text_seq_length=16,
             sample_height=16, sample_width=16)


def _inputs(config, views: int, frames: int, size: int, device, dtype, generator):
    c = config["out_channels"]
    kinds = len(config["condition_kinds"])
    return dict(
        hidden_states=torch.randn(1, views, frames, 2 * c, size, size, generator=generator).to(device, dtype),
        encoder_hidden_states=torch.randn(1, config["max_text_seq_length"], config["text_embed_dim"],
                                          generator=generator).to(device, dtype),
        timestep=torch.tensor([500], device=device),
        actions=torch.randn(1, 4 * frames, 7, generator=generator).to(device, dtype),
        condition_latents=torch.randn(1, views, frames, c * kinds, size, size, generator=generator).to(device, dtype),
    )


def _single_view_call(single, x):
    v = x["hidden_states"].shape[1]
    return single(x["hidden_states"][0], x["encoder_hidden_states"].expand(v, -1, -1), x["timestep"].expand(v),
                  actions=x["actions"].expand(v, -1, -1), condition_latents=x["condition_latents"][0])


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - start)
    return out


def run(config_name: str, layers: int, frames: int, size: int, repeats: int, device, dtype) -> list[dict]:
    overrides = dict(SMALL) if config_name == "small" else {}
    config = transformer_config("tiny" if config_name == "small" else config_name, **overrides)
    if layers:
        config["num_layers"] = layers
    torch.manual_seed(0)
    single = torch.nn.Module.to(ORVTransformer3DModel.from_config(config), device, dtype).eval()
    multi = ORVMultiViewTransformer3DModel.from_single_view(single, num_views=3).eval()
    g = torch.Generator().manual_seed(0)
    rows = []
    for views in (1, 2, 3):
        x = _inputs(config, views, frames, size, device, dtype, g)
        with torch.no_grad():
            _single_view_call(single, x)
            multi(**x)  # warm-up
            sv, mv = [], []
            for _ in range(repeats):  # interleaved
                sv += _time(lambda: _single_view_call(single, x), device, 1)
                mv += _time(lambda: multi(**x), device, 1)
        # One training step: forward, backward, AdamW (fresh optimizer state per view count).
        model = ORVMultiViewTransformer3DModel.from_single_view(single, num_views=3).train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

        def train_step():
            loss = model(**x).sample.float().pow(2).mean()
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        train_step()
        train = _time(train_step, device, max(2, repeats // 2))
        rows.append(dict(views=views, sv=min(sv), mv=min(mv), train=min(train),
                         flops_sv=_flops(lambda: _single_view_call(single, x)) + _attention_flops(config, views, frames, size, False),
                         flops_mv=_flops(lambda: multi(**x)) + _attention_flops(config, views, frames, size, True)))
    print(f"\n== ORV-MV, config {config_name}: {config['num_layers']} layers, width "
          f"{config['num_attention_heads'] * config['attention_head_dim']}, latent {frames}x{size}x{size} per view, "
          f"{dtype}, {device}, {torch.get_num_threads()} thread(s), min of {repeats} interleaved steps")
    print(f"{'views':>5} {'denoise MV ms':>14} {'V x single ms':>14} {'MV/single':>10} {'MV per view':>12} "
          f"{'train MV ms':>12} {'FLOP MV/single':>15}")
    base = rows[0]["mv"]
    for r in rows:
        print(f"{r['views']:>5} {r['mv'] * 1e3:>14.2f} {r['sv'] * 1e3:>14.2f} {r['mv'] / r['sv']:>10.3f} "
              f"{r['mv'] / r['views'] / base:>12.3f} {r['train'] * 1e3:>12.2f} {r['flops_mv'] / r['flops_sv']:>15.3f}")
    print("  MV/single: one multi-view step over V independent single-view steps (same V videos);")
    print("  MV per view: MV step time per view relative to the 1-view MV step.")
    print("  FLOP: exact linear-layer FLOPs (torch counter) + analytic attention FLOPs.")
    return rows


def _attention_flops(config, views: int, frames: int, size: int, multiview: bool) -> int:
    """Softmax-attention matmul FLOPs (QK^T and AV), which torch's FLOP counter skips on CPU."""
    width = config["num_attention_heads"] * config["attention_head_dim"]
    patches = (size // config["patch_size"]) ** 2
    joint = config["max_text_seq_length"] + frames * patches  # text + video tokens of one view
    per_layer = views * 4 * joint**2 * width
    if multiview:
        per_layer += frames * 4 * (views * patches) ** 2 * width
    return config["num_layers"] * per_layer


def _flops(fn) -> int:
    """Linear/conv matmul FLOPs of one call (the torch counter; attention added separately)."""
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        fn()
    return counter.get_total_flops()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="small", help="small (default), tiny, 2b")
    parser.add_argument("--layers", type=int, default=0, help="override num_layers (0: the config's)")
    parser.add_argument("--frames", type=int, default=3, help="latent frames per view")
    parser.add_argument("--size", type=int, default=16, help="latent height = width")
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="fp32", choices=("fp32", "bf16"))
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1: a shared machine)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    run(args.config, args.layers, args.frames, args.size, args.repeats, torch.device(args.device), dtype)


if __name__ == "__main__":
    main()

"""Time per denoising step: ORV's transformer vs stock CogVideoX at the same config.

ORV adds a chunked action encoder, per-latent-frame AdaLN modulation and a token-space
condition fusion (the conditions' patch embeddings and one linear layer); the target is that one denoising step costs at most 3% more than CogVideoX's.
Both models share the same weights (ORV is built from the stock model), run on the same
inputs, and are timed interleaved (median of several steps) so machine drift hits both.

    python -m benchmarks.transformer_step_benchmark            # tiny + 2B-shaped, 1 layer
    python -m benchmarks.transformer_step_benchmark --layers 30 --device cuda --dtype bf16

The 2B-shaped case uses Table 8's width (30 heads x 64, time/action embedding 512, text
4096, 226 text tokens) at the Bridge latent size 40x60 with 5 latent frames (16 frames +
the placeholder); on a CPU only a few layers are run, which leaves ORV's per-model
overhead (action encoder, fusion) over-represented relative to a 30-layer model.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from diffusers import CogVideoXTransformer3DModel
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.figures import write_figures
from orv_engine.models import ORVTransformer3DModel, stock_config, transformer_config
from orv_engine.models.action_adaln import _per_frame, expert_adaln, final_adaln


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def bench(name: str, config: dict, latent: tuple[int, int, int], batch: int, steps: int, warmup: int,
          device: torch.device, dtype: torch.dtype) -> dict:
    frames, h, w = latent
    torch.manual_seed(0)
    stock = CogVideoXTransformer3DModel.from_config(stock_config(config)).eval()
    orv = ORVTransformer3DModel.from_cogvideox(
        stock, **{k: config[k] for k in ("action_dim", "action_hidden_dim", "condition_kinds")}
    ).eval()
    if device.type != "cpu" or dtype != torch.float32:
        stock.to(device, dtype)
        orv.to(device, dtype)
    g = torch.Generator().manual_seed(0)
    c = config["out_channels"]
    hidden = torch.randn(batch, frames, config["in_channels"], h, w, generator=g).to(device, dtype)
    text = torch.randn(batch, config["max_text_seq_length"], config["text_embed_dim"], generator=g).to(device, dtype)
    t = torch.full((batch,), 500, device=device)
    actions = torch.randn(batch, config["action_chunk"] * frames, config["action_dim"], generator=g).to(device, dtype)
    kinds = len(config["condition_kinds"])
    conds = torch.randn(batch, frames, c * kinds, h, w, generator=g).to(device, dtype) if kinds else None

    runs = {
        "cogvideox": lambda: stock(hidden, text, t),
        "orv (actions + conditions)": lambda: orv(hidden, text, t, actions=actions, condition_latents=conds),
        "orv (null actions)": lambda: orv(hidden, text, t),
    }
    for fn in runs.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in runs}
    for _ in range(steps):
        for k, fn in runs.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[k].append(time.perf_counter() - start)
    # min: the least disturbed step (robust on a shared machine); median for reference.
    best = {k: min(v) for k, v in times.items()}
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"\n== {name}: latent {frames}x{h}x{w}, batch {batch}, {config['num_layers']} layers, "
          f"width {config['num_attention_heads'] * config['attention_head_dim']}, {dtype}, {device}, "
          f"{steps} timed steps each, interleaved")
    for k in runs:
        print(f"  {k:28s} min {best[k] * 1000:10.2f} ms/step (ratio {best[k] / best['cogvideox']:.3f})   "
              f"median {med[k] * 1000:10.2f} ms/step (ratio {med[k] / med['cogvideox']:.3f})")
    return {"name": name, "min": best, "median": med}


@torch.no_grad()
def count_flops(config: dict, latent: tuple[int, int, int], batch: int = 1) -> None:
    """Matmul/conv FLOPs of one step, ORV vs stock, on the meta device (exact, no compute).

    Timing on a shared CPU is noisy; FLOPs are not. Elementwise work (the per-frame
    modulation, which has the stock element count) is not counted.
    """
    frames, h, w = latent
    with torch.device("meta"):
        stock = CogVideoXTransformer3DModel.from_config(stock_config(config))
        orv = ORVTransformer3DModel.from_config(config)
        hidden = torch.randn(batch, frames, config["in_channels"], h, w)
        text = torch.randn(batch, config["max_text_seq_length"], config["text_embed_dim"])
        t = torch.full((batch,), 500)
        actions = torch.randn(batch, config["action_chunk"] * frames, config["action_dim"])
        kinds = len(config["condition_kinds"])
        conds = torch.randn(batch, frames, config["out_channels"] * kinds, h, w) if kinds else None
    flops = {}
    for name, fn in {
        "cogvideox": lambda: stock(hidden, text, t),
        "orv (actions + conditions)": lambda: orv(hidden, text, t, actions=actions, condition_latents=conds),
    }.items():
        counter = FlopCounterMode(display=False)
        with counter:
            fn()
        flops[name] = counter.get_total_flops()
    base = flops["cogvideox"]
    print(f"\n== FLOPs per step (meta device, exact): {config['num_layers']} layers, latent {frames}x{h}x{w}")
    for k, v in flops.items():
        print(f"  {k:28s} {v / 1e12:10.3f} TFLOP   ratio {v / base:.5f}")
    return {k: {"flops": int(v), "ratio": v / base} for k, v in flops.items()}


def _paired_delta(stock_fn, orv_fn, reps: int) -> tuple[float, float, float]:
    """Median stock time, median ORV time and median of the paired differences (ORV - stock).

    Stock and ORV run back to back in each repeat, so load from other processes hits both.
    """
    stock_fn(), orv_fn()
    ts, to, deltas = [], [], []
    for i in range(reps):
        pair = []
        for fn in ((stock_fn, orv_fn) if i % 2 == 0 else (orv_fn, stock_fn)):
            start = time.perf_counter()
            fn()
            pair.append(time.perf_counter() - start)
        a, b = pair if i % 2 == 0 else pair[::-1]
        ts.append(a)
        to.append(b)
        deltas.append(b - a)
    return statistics.median(ts), statistics.median(to), statistics.median(deltas)


@torch.no_grad()
def overhead_breakdown(config: dict, latent: tuple[int, int, int], reps: int = 30) -> float:
    """ORV's extra work per step, op by op, at full size (each op is short: many repeats).

    Whole-step timings of a 2B-shaped model on a busy CPU drift by tens of percent between
    runs; the extra ops are timed here in isolation against their stock counterparts and
    summed for the full ``num_layers`` model. Returns the extra seconds per step.
    """
    frames, h, w = latent
    p = config["patch_size"]
    tokens = frames * (h // p) * (w // p)
    dim = config["num_attention_heads"] * config["attention_head_dim"]
    tdim = config["time_embed_dim"]
    torch.manual_seed(0)
    cfg1 = dict(config, num_layers=1)
    orv = ORVTransformer3DModel.from_config(cfg1).eval()
    norm, norm_out = orv.transformer_blocks[0].norm1, orv.norm_out
    x = torch.randn(1, tokens, dim)
    attn = torch.randn(1, tokens, dim)
    enc = torch.randn(1, config["max_text_seq_length"], dim)
    temb = torch.randn(1, tdim)
    act = torch.randn(1, frames, tdim)
    vision_cond, text_cond = torch.nn.functional.silu(temb[:, None] + act), torch.nn.functional.silu(temb)
    gate_stock = torch.randn(1, 1, dim)
    gate_orv = torch.randn(1, frames, 1, dim)
    actions = torch.randn(1, config["action_chunk"] * frames, config["action_dim"])
    kinds = len(config["condition_kinds"])
    conds = torch.randn(1, frames, config["out_channels"] * kinds, h, w) if kinds else None

    pairs = {
        "AdaLN (x2 per block)": (lambda: norm(x, enc, temb), lambda: expert_adaln(norm, x, enc, vision_cond, text_cond)),
        "gated residual (x2 per block)": (
            lambda: x + gate_stock * attn,
            lambda: (_per_frame(x, frames) + gate_orv * _per_frame(attn, frames)).flatten(1, 2),
        ),
        "final AdaLN (x1)": (lambda: norm_out(x, temb=temb), lambda: final_adaln(norm_out, x, vision_cond)),
    }
    extra_only = {
        "action encoder + silu (x1)": lambda: orv.action_encoder(actions, 1, frames),
    }
    if conds is not None:
        text = torch.randn(1, config["max_text_seq_length"], config["text_embed_dim"])
        extra_only["condition patch embeddings + fusion (x1)"] = lambda: orv.condition_fusion(
            x, orv._condition_tokens(text, conds))
    layers = config["num_layers"]
    total = 0.0
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small ops: thread hand-offs on a busy machine would dominate
    print(f"\n== ORV extra work per step, op by op ({layers} layers, {tokens} vision tokens, 1 thread, "
          f"median of {reps} paired runs)")
    for name, (stock_fn, orv_fn) in pairs.items():
        ts, to, delta = _paired_delta(stock_fn, orv_fn, reps)
        times = 2 * layers if "per block" in name else 1
        total += times * delta
        print(f"  {name:32s} stock {ts * 1e3:8.2f} ms  orv {to * 1e3:8.2f} ms  -> {times * delta * 1e3:+9.1f} ms/step")
    for name, fn in extra_only.items():
        _, t, _ = _paired_delta(lambda: None, fn, reps)
        total += t
        print(f"  {name:32s} {'':14s}  orv {t * 1e3:8.2f} ms  -> {t * 1e3:+9.1f} ms/step")
    torch.set_num_threads(threads)
    print(f"  total extra: {total * 1e3:+.1f} ms per step")
    return total


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--layers", type=int, default=1, help="layers of the 2B-shaped model (30 = the full model)")
    parser.add_argument("--steps", type=int, default=4, help="timed steps per model (2B-shaped)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--skip-2b", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for the 2B-shaped run")
    parser.add_argument("--json", metavar="PATH", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")

    figures = {"device": str(device), "dtype": args.dtype, "flops_2b": count_flops(transformer_config("2b"), (5, 40, 60))}
    # The tiny model is dominated by per-op overhead; one thread keeps thread hand-offs out of it.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    figures["tiny"] = bench("tiny", transformer_config("tiny"), (3, 8, 8), batch=2, steps=200, warmup=10,
                            device=device, dtype=dtype)
    torch.set_num_threads(threads)
    if not args.skip_2b:
        extra = overhead_breakdown(transformer_config("2b"), (5, 40, 60))
        cfg = transformer_config("2b", num_layers=args.layers)
        result = bench(f"2B-shaped ({args.layers} of 30 layers), Bridge", cfg, (5, 40, 60), batch=1, steps=args.steps,
              warmup=1, device=device, dtype=dtype)
        figures["2b_shaped"] = {**result, "layers": args.layers, "orv_extra_ms_op_by_op": extra * 1e3}
        if device.type == "cpu":
            per_layer = result["min"]["cogvideox"] / args.layers  # upper bound: includes embed/unpatchify
            full = per_layer * 30
            print(f"\n== estimate for the 30-layer 2B model on this CPU: stock ~{full:.1f} s/step, "
                  f"ORV extra {extra * 1e3:+.1f} ms -> ratio {(full + extra) / full:.4f}")
            figures["2b_estimated_ratio"] = (full + extra) / full
    if args.json:
        write_figures(figures, args.json)


if __name__ == "__main__":
    main()

"""Training speed of the tiny config on this machine: steps/s, peak memory, data-loading share.

    python -m benchmarks.training_benchmark                 # 300 steps, the full loss-curve proof
    python -m benchmarks.training_benchmark --steps 100 --online-steps 20

Three measurements, one run each, on the shared real Bridge episodes (64x64, 8+1 frames)
with a tiny random-weight pipeline written to a temporary folder:

1. pre-encoding the clips into VAE latents (clips/s);
2. training from the pre-encoded latents (configs/tiny.yaml as shipped): the loss curve
   (mean per 10 steps), steps/s, peak resident memory, and the share of step time spent
   waiting for the next batch;
3. training online (clips decoded from RLDS and VAE-encoded every step, the first frame
   included): the same figures; here "data" is the RLDS reader + JPEG decode.

Figures are printed, not asserted. The machine may be shared: wall times vary.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from orv_engine.testing.tiny_orv import save_tiny_pipeline
from orv_engine.training import latents
from orv_engine.training.components import load_components
from orv_engine.training.config import load_config
from orv_engine.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
BRIDGE = ROOT.parent / "shared" / "data" / "bridge_debug" / "bridge_dataset" / "1.0.0"


def _run(config, label: str) -> dict:
    start = time.perf_counter()
    summary = Trainer(config, log=lambda m: None).train()
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (Path(config.output_dir) / "train_log.jsonl").read_text().splitlines()]
    records = [r for r in records if "loss" in r]
    # skip the first logged window (warm-up: first calls, allocator) for the rates
    steady = records[1:] if len(records) > 1 else records
    step_time = float(np.mean([r["step_time"] for r in steady]))
    data_time = float(np.mean([r["data_time"] for r in steady]))
    losses = np.array(summary["losses"])
    print(f"\n== {label}: {len(losses)} steps, batch {config.train.batch_size}")
    print(f"   steps/s (steady) {1 / step_time:.2f}   ({step_time * 1000:.0f} ms/step; run incl. set-up {wall:.0f} s)")
    print(f"   data loading share of step time: {100 * data_time / step_time:.1f}%  ({data_time * 1000:.1f} ms/step)")
    print(f"   peak memory (max RSS of this process) {summary['peak_memory_mb']:.0f} MB")
    return {"losses": losses, "step_time": step_time, "data_time": data_time}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="steps from pre-encoded latents")
    parser.add_argument("--online-steps", type=int, default=30, help="steps with online VAE encoding (0: skip)")
    parser.add_argument("--online-workers", type=int, default=0, help="DataLoader workers of the online run")
    parser.add_argument("--data", default=str(BRIDGE), help="the Bridge RLDS folder")
    parser.add_argument("--workdir", default=None, help="where to write (default: a temporary folder)")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="orv-train-bench-"))
    model = save_tiny_pipeline(work / "tiny-orv-random")
    base = [f"model.pretrained_path={model}", f"data.path={args.data}", "tracker=none", "validation.every=0",
            "train.checkpoint_every=100000"]
    config = load_config(ROOT / "configs" / "tiny.yaml", base + [
        f"data.latents_dir={work / 'latents'}", f"output_dir={work / 'run-latents'}", f"train.max_steps={args.steps}"])

    vae = load_components(model, None, []).vae
    start = time.perf_counter()
    n = latents.pre_encode(config, vae, log=lambda m: None)
    latents.write_index(config)
    took = time.perf_counter() - start
    print(f"== pre-encoding: {n} clips in {took:.1f} s ({n / took:.1f} clips/s, incl. reader start-up "
          f"and {config.validation.num_clips} held-out clips), {config.data.first_frame_variants} first-frame variants")

    result = _run(config, "training from pre-encoded latents (configs/tiny.yaml)")
    losses = result["losses"]
    print("   loss, mean per 10 steps:")
    means = [losses[i : i + 10].mean() for i in range(0, len(losses), 10)]
    for i in range(0, len(means), 6):
        print("     " + "  ".join(f"{10 * (i + j) + 10:>4}: {m:.4f}" for j, m in enumerate(means[i : i + 6])))
    print(f"   first 10 steps {losses[:10].mean():.4f} -> last 10 steps {losses[-10:].mean():.4f} "
          f"(ratio {losses[-10:].mean() / losses[:10].mean():.2f})")

    if args.online_steps:
        online = load_config(ROOT / "configs" / "tiny.yaml", base + [
            "data.latents_dir=null", "data.first_frame_variants=0", f"output_dir={work / 'run-online'}",
            f"train.max_steps={args.online_steps}", f"data.num_workers={args.online_workers}"])
        _run(online, f"training online (RLDS reader + VAE encoding every step, {args.online_workers} loader workers)")
    print(f"\n(work folder: {work})")


if __name__ == "__main__":
    main()

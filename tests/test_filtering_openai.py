"""The OpenAI-compatible backend and the scoring loop against real HTTP on 127.0.0.1:
scripted answers (garbage, then valid), timeouts, an unreachable server, bounded
concurrency. Every clip gets a verdict; nothing is lost."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

import filtering  # noqa: F401  (import order)
from filtering.backends.openai_server import OpenAIServerBackend, VLMServerError
from filtering.clip_source import clips_from_arrays
from filtering.config import FilterConfig
from filtering.records import SCORED, UNSCORED
from filtering.scoring import FilterPipeline
from filtering.selection import select
from filtering_helpers import ChatServer, free_port

GOOD = json.dumps({"clarity": {"score": 4, "confidence": 0.9}, "physical_realism": {"score": 2, "confidence": 0.7},
                   "overall_plausibility": {"score": 3, "confidence": 0.8}, "summary": "The cube deforms.",
                   "final_score": 2.9})


def clips(n=3, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (1, 64, 64, 3), dtype=np.uint8)
    # textured, gently moving: passes the cheap checks
    return clips_from_arrays([(f"clip{i}", np.roll(np.repeat(base, 9, axis=0), i, axis=2)) for i in range(n)])


def config(url, **kw) -> FilterConfig:
    c = FilterConfig(backend="openai", model="qwen-vl", frames_per_clip=4, batch_size=8, max_attempts=2)
    c.openai.base_url, c.openai.max_retries, c.openai.timeout = url, 0, 5.0
    c.checks.enabled = False
    for key, value in kw.items():
        setattr(c.openai, key, value)
    return c


def run(cfg, clips_):
    from filtering.backends import make_backend

    with make_backend(cfg) as backend:
        return select(FilterPipeline(cfg, backend).run(clips_), cfg.selection)


def test_garbage_then_valid_answer_is_retried_and_scored():
    # per clip: caption, score (attempt 1: garbage score), then score again (attempt 2)
    answers = {"caption": ["Pick up the cube."], "score": ["Sure, the video looks fine!", "{oops", "{}", GOOD]}
    with ChatServer(answers) as server:
        verdicts = run(config(server.url), clips(3))
    assert [v.clip for v in verdicts] == ["clip0", "clip1", "clip2"]
    assert all(v.score_status == SCORED and v.attempts == 2 for v in verdicts)
    assert verdicts[0].scores == {"clarity": 4, "physical_realism": 2, "overall_plausibility": 3}
    assert verdicts[0].final_score == pytest.approx(0.3 * 4 + 0.4 * 2 + 0.3 * 3)
    assert verdicts[0].caption == "Pick up the cube."
    # the request carried the frames as one video, the schema as structured output, and
    # the retry sampled (temperature 0.7) where the first attempt was greedy
    scoring = [b for b in server.bodies if "response_format" in b]
    first, retry = scoring[0], scoring[-1]
    video = first["messages"][0]["content"][0]
    assert video["type"] == "video_url" and video["video_url"]["url"].startswith("data:video/jpeg;base64,")
    assert video["video_url"]["url"].count(",") == 4  # 4 JPEG frames
    assert first["response_format"]["json_schema"]["schema"]["required"][0] == "clarity"
    assert first["temperature"] == 0.0 and retry["temperature"] == 0.7


def test_garbage_forever_is_recorded_unscored_with_the_raw_text():
    answers = {"caption": ["The robot arm is moving."], "score": ["I cannot score this video."]}
    with ChatServer(answers) as server:
        verdicts = run(config(server.url, video_mode="images"), clips(2))
    assert len(verdicts) == 2
    for v in verdicts:
        assert v.score_status == UNSCORED and v.attempts == 2 and not v.keep
        assert v.raw_score == "I cannot score this video." and "no JSON object" in v.error
        assert v.caption is None and v.raw_caption == "The robot arm is moving."
    assert server.bodies[0]["messages"][0]["content"][0]["type"] == "image_url"


def test_timeouts_are_recorded():
    with ChatServer({"score": [GOOD]}, delay=2.0) as server:
        cfg = config(server.url, timeout=0.4, concurrency=4)
        cfg.caption = False
        start = time.perf_counter()
        verdicts = run(cfg, clips(4))
        elapsed = time.perf_counter() - start
    assert [v.score_status for v in verdicts] == [UNSCORED] * 4
    assert all("Timeout" in v.error and v.attempts == 2 for v in verdicts)
    assert elapsed < 3.5  # 2 rounds of 4 concurrent requests, each cut at 0.4 s (not 2 x 2 s waits)


def test_concurrency_is_bounded():
    with ChatServer({"score": [GOOD]}, delay=0.3) as server:
        cfg = config(server.url, concurrency=2)
        cfg.caption = False
        verdicts = run(cfg, clips(6))
    assert [v.score_status for v in verdicts] == [SCORED] * 6
    assert server.count == 6 and server.max_in_flight == 2


def test_unreachable_server_is_named_once_before_any_clip():
    url = f"http://127.0.0.1:{free_port()}/v1"
    start = time.perf_counter()
    with pytest.raises(VLMServerError, match=f"the VLM server at {url} cannot be used .*APIConnectionError"):
        run(config(url), clips(3))
    assert time.perf_counter() - start < 10


def test_a_server_that_does_not_serve_the_model_or_misbehaves_is_named():
    with ChatServer({"score": [GOOD]}, models=["other-model"]) as server:
        with pytest.raises(VLMServerError, match=f"{server.url} does not serve 'qwen-vl'.*other-model"):
            run(config(server.url), clips(1))
        assert server.count == 0  # not one clip was sent
    with ChatServer({"score": [GOOD]}, models=["qwen-vl"]) as server:
        cfg = config(server.url)
        cfg.caption = False
        assert [v.score_status for v in run(cfg, clips(2))] == [SCORED] * 2


def test_a_server_that_goes_away_mid_run_loses_nothing():
    from filtering.backends import make_backend

    with ChatServer({"score": [GOOD]}) as server:
        cfg = config(server.url)
        backend = make_backend(cfg)  # checked while it runs
    with backend:
        verdicts = select(FilterPipeline(cfg, backend).run(clips(3)), cfg.selection)
    assert [v.clip for v in verdicts] == ["clip0", "clip1", "clip2"]
    for v in verdicts:
        assert v.score_status == UNSCORED and v.keep is False and "unscored" in v.reason
        assert f"{server.url}: APIConnectionError" in v.error  # the address, clip by clip


def test_backend_never_raises_per_request():
    backend = OpenAIServerBackend("m", config(f"http://127.0.0.1:{free_port()}/v1").openai)
    from filtering.backends.base import VLMRequest

    out = backend.generate([VLMRequest("a", "hi"), VLMRequest("b", "hi", frames=np.zeros((2, 8, 8, 3), np.uint8))])
    backend.close()
    assert [r.ok for r in out] == [False, False] and all("Connection" in r.error for r in out)

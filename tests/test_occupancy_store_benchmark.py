"""benchmarks/occupancy_projection.py: the FLOP counters on small configs and the projection's
arithmetic; benchmarks/occupancy_store.py: the report. The full run (tiny models through ``OccupancyJob`` on the real
Bridge episodes, about 40 s of CPU time but several minutes of wall time beside a training
job) is the last test; it runs only with ``ORV_BENCHMARK_TESTS=1``."""

from __future__ import annotations

import json
import math
import os

import pytest

from benchmarks import occupancy_projection as projection
from benchmarks import occupancy_store as bench


def _positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def test_raft_flops_are_counted_and_grow_with_the_frame():
    small = projection.raft_flops("small", 128, 128, updates=2)
    bigger = projection.raft_flops("small", 128, 171, updates=2)  # padded to 128x176
    assert isinstance(small, int) and small > 0 and bigger > small
    assert projection.raft_flops("small", 128, 128, updates=4) > small  # more updates, more work


def test_depth_pro_flops_on_a_tiny_config():
    from transformers import DepthProConfig

    vit = {"model_type": "dinov2", "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
           "intermediate_size": 32, "patch_size": 8, "image_size": 16}
    config = DepthProConfig(fusion_hidden_size=16, patch_size=16, intermediate_hook_ids=[1, 0],
                            intermediate_feature_dims=[8, 8], scaled_images_ratios=[0.25, 0.5, 1.0],
                            scaled_images_overlap_ratios=[0.0, 0.5, 0.25], scaled_images_feature_dims=[16, 16, 8],
                            merge_padding_value=3, use_fov_model=True, num_fov_head_layers=2,
                            image_model_config=dict(vit), patch_model_config=dict(vit), fov_model_config=dict(vit))
    assert projection.depth_pro_flops(config) > 0  # the input size comes from the config: 16 / 0.25 = 64


def test_qwen_counts_on_a_tiny_config():
    vision = dict(projection.QWEN_VISION, depth=4, hidden_size=32, intermediate_size=64, num_heads=2, out_hidden_size=64,
                  fullatt_block_indexes=[1, 3])
    grid = projection.qwen_grid(112, 168)
    assert grid == (8, 12)
    assert projection.qwen_grid(480, 640) == (34, 46)  # 476 x 644 pixels: 391 visual tokens
    four = projection.qwen_vision_flops(vision, grid)
    two = projection.qwen_vision_flops(dict(vision, depth=2, fullatt_block_indexes=[1]), grid)
    assert four > two > 0
    # head_dim 128: what the default mrope sections (16, 24, 24) split
    text = dict(hidden_size=256, num_hidden_layers=2, intermediate_size=512, vocab_size=1000, num_attention_heads=2,
                num_key_value_heads=1)
    assert projection.qwen_text_flops(text, 20, 4) > projection.qwen_text_flops(text, 10, 4) > 0


def test_the_projection_records_a_failed_count_as_its_error(monkeypatch):
    monkeypatch.setattr(projection, "depth_pro_flops", lambda: 10**12)
    monkeypatch.setattr(projection, "sam3_vision_flops", lambda: 2 * 10**12)
    monkeypatch.setattr(projection, "raft_flops", lambda variant, h, w: 10**10)
    monkeypatch.setattr(projection, "qwen_vision_flops", lambda vision, grid: 10**12)

    def broken(*args):
        raise RuntimeError("no meta kernel")

    monkeypatch.setattr(projection, "qwen_text_flops", broken)
    proj = projection.project_h100(0.5)
    rate = 0.5 * projection.H100_BF16_DENSE
    assert proj["seconds_per_episode"]["depth"] == pytest.approx(38 * 10**12 / rate)
    assert proj["seconds_per_episode"]["consistency"] == pytest.approx(15 * 10**10 / rate)
    assert "listing" not in proj["seconds_per_episode"] and proj["total_seconds_per_episode"] is None
    failed = [v for v in proj["flops_per_frame"].values() if isinstance(v, str)]
    assert failed == ["RuntimeError: no meta kernel"] and any("failed" in n for n in proj["notes"])


@pytest.mark.skipif(not os.environ.get("ORV_BENCHMARK_TESTS"),
                    reason="minutes of wall time on a shared CPU; set ORV_BENCHMARK_TESTS=1")
def test_main_writes_the_figures(bridge_debug, tmp_path):
    out = tmp_path / "figures.json"
    assert bench.main(["--episodes", "1", "--skip-real-flops", "--data", str(bridge_debug), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    cpu = result["cpu_tiny"]
    assert cpu["episodes"] == 1 and set(cpu["seconds_per_episode"]) == set(bench.STAGES)
    assert all(_positive(v) for v in cpu["seconds_per_episode"].values())
    for key in ("total_seconds_per_episode", "store_bytes_per_episode", "store_bytes_per_frame"):
        assert _positive(cpu[key]), key
    assert cpu["vlm_listing_seconds_per_episode"] is None or _positive(cpu["vlm_listing_seconds_per_episode"])
    assert "projection_h100" not in result and result["machine"]["cpu_count"] >= 1

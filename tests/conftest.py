"""Shared fixtures: the real Bridge episodes in ../shared/data, and small RLDS datasets the
tests write themselves with tfds."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import orv_engine  # noqa: F401  (fixes the torch/triton-before-TensorFlow import order)

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("ORV_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))
# ManiSkill reads MS_ASSET_DIR once, at import: the shared WidowX asset must be set first.
if (SHARED_DATA / "maniskill" / "data").is_dir():
    os.environ.setdefault("MS_ASSET_DIR", str(SHARED_DATA / "maniskill"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared test data not found at {SHARED_DATA} (set ORV_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def bridge_debug(shared_data) -> Path:
    path = shared_data / "bridge_debug" / "bridge_dataset" / "1.0.0"
    if not (path / "dataset_info.json").is_file():
        pytest.skip(f"real Bridge debug episodes not found at {path}")
    return path


@pytest.fixture(scope="session")
def tiny_bridge(tmp_path_factory) -> Path:
    """6 Bridge-schema episodes (lengths 20, 12, 9, 5, 16, 11) in 3 shard files."""
    from rlds_fixtures import bridge_episode, write_bridge

    lengths = [20, 12, 9, 5, 16, 11]
    episodes = [bridge_episode(n, seed=i) for i, n in enumerate(lengths)]
    return write_bridge(tmp_path_factory.mktemp("tiny_bridge"), {"train": episodes, "val": episodes[:3]}, num_shards=3)

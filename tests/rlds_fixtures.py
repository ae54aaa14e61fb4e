"""Builders of small, known RLDS episodes for tests (written with tfds, read back for real)."""

from __future__ import annotations

import numpy as np

from orv_engine.data.rlds_writer import bridge_features, write_rlds


def frame_for_step(step: int, size=(32, 32)) -> np.ndarray:
    """A frame whose pixels encode its step (value 10 + 8 * step survives JPEG within +-3)."""
    return np.full((*size, 3), 10 + 8 * step, dtype=np.uint8)


def bridge_episode(num_steps: int, seed: int = 0, size=(32, 32), instruction="put the carrot on the plate",
                   absent=(1, 2, 3)) -> dict:
    rng = np.random.default_rng(seed)
    states = np.cumsum(rng.normal(0, 0.01, size=(num_steps + 1, 7)), axis=0).astype(np.float32)
    actions = np.diff(states, axis=0).astype(np.float32)
    actions[:, 6] = (rng.random(num_steps) > 0.5)
    steps = []
    for t in range(num_steps):
        obs = {f"image_{k}": (np.zeros((*size, 3), np.uint8) if k in absent else frame_for_step(t, size))
               for k in range(4)}
        obs["state"] = states[t]
        steps.append({
            "observation": obs, "action": actions[t], "discount": 1.0, "reward": float(t == num_steps - 1),
            "is_first": t == 0, "is_last": t == num_steps - 1, "is_terminal": t == num_steps - 1,
            "language_instruction": instruction, "language_embedding": np.zeros(512, np.float32),
        })
    meta = {"file_path": f"synthetic/{seed}", "episode_id": seed, "has_language": True,
            **{f"has_image_{k}": k not in absent for k in range(4)}}
    return {"steps": steps, "episode_metadata": meta}


def write_bridge(data_dir, splits, size=(32, 32), num_shards=None, name="bridge_dataset"):
    return write_rlds(data_dir, name, bridge_features(size), splits, num_shards=num_shards)

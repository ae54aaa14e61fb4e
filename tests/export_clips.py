"""Small, known ExportClip records for the export tests and benchmark."""

from __future__ import annotations

import numpy as np

from vla_finetune.clip_record import ExportClip, Provenance


def make_clip(num_steps: int = 9, seed: int = 0, size=(32, 32), caption="put the carrot on the plate") -> ExportClip:
    """States follow the commanded actions (plus noise), like a real Bridge episode window."""
    rng = np.random.default_rng(seed)
    actions = rng.normal(0, 0.01, size=(num_steps, 7)).astype(np.float32)
    actions[:, 6] = (rng.random(num_steps) > 0.3).astype(np.float32)
    states = np.zeros((num_steps, 7), np.float32)
    states[0, :6] = rng.normal(0, 0.1, 6)
    for t in range(1, num_steps):
        states[t, :6] = states[t - 1, :6] + actions[t - 1, :6] + rng.normal(0, 0.002, 6)
    states[:, 6] = actions[:, 6]
    frames = np.stack([np.full((*size, 3), 10 + 8 * t, np.uint8) for t in range(num_steps)])
    frames[:, : size[0] // 2, :, 0] = 200  # some structure, so JPEG has work to do
    provenance = Provenance(
        source_dataset="bridge_dataset", source_episode=f"train/{seed}", source_start_step=seed % 5,
        first_frame_variant=f"v{seed % 3}", seed=1000 + seed,
        models={"world_model": {"name": "orv-cogvideox-2b", "sha256": "ab" * 32},
                "vlm": {"name": "Qwen2.5-VL-7B", "sha256": "cd" * 32}},
        verdict_score=0.5 + 0.01 * seed, verdict_scores={"physics": 0.9, "task": 0.8, "consistency": 0.7},
        extra={"run": "test"},
    )
    return ExportClip(frames=frames, actions=actions, states=states, caption=caption, provenance=provenance)


def make_clips(count: int, num_steps: int = 9, size=(32, 32)) -> list[ExportClip]:
    return [make_clip(num_steps + (i % 3), seed=i, size=size) for i in range(count)]

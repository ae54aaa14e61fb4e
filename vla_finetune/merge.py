"""One physically merged RLDS dataset: BridgeV2 episodes + synthetic episodes.

For trainers that take a single dataset (no mixture support). The merged dataset has the
exported schema (Bridge + provenance); BridgeV2 episodes get ``synthetic=False`` and their
origin in ``source_dataset``/``source_episode``. Images keep BridgeV2's size; JPEG bytes
are copied unchanged where the sizes agree and re-encoded otherwise.

Without sampling weights, the synthetic share of frames is set by repeating synthetic
episodes (``synthetic_repeat``; by default the integer that comes closest to
``synthetic_fraction`` without going under one copy). tfds shuffles examples by key when
writing, so the two sources are interleaved across the shards. Statistics of the merged
dataset (= of the union, when nothing is repeated) are written beside it.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image

from vla_finetune.bridge_schema import bridge_export_features
from vla_finetune.clip_record import ExportError
from vla_finetune.export import write_dataset_atomically
from vla_finetune.mixture import DEFAULT_SYNTHETIC_FRACTION
from vla_finetune.rlds_source import RLDSSource
from vla_finetune.statistics import StatisticsAccumulator, write_json

STEP_FIELDS = ("action", "discount", "reward", "is_first", "is_last", "is_terminal", "language_instruction",
               "language_embedding")


def _recode(data: bytes, size: tuple[int, int], quality: int = 95) -> bytes:
    with Image.open(io.BytesIO(data)) as img:
        img = img.convert("RGB")
        if img.size != (size[1], size[0]):
            img = img.resize((size[1], size[0]), Image.BICUBIC)
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def _text(value) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _convert(source: RLDSSource, split: str, episode: dict, size, episode_id: int) -> dict:
    steps = episode["steps"]
    n = len(steps["action"])
    same = tuple(source.image_size) == tuple(size)
    images = {}
    for k in range(4):
        key = f"image_{k}"
        column = steps["observation"].get(key)
        if column is None:
            blank = _recode(_blank_jpeg(), size)
            images[key] = [blank] * n
        else:
            images[key] = [bytes(b) if same else _recode(bytes(b), size) for b in column]
    out_steps = []
    for t in range(n):
        step = {f: steps[f][t] for f in STEP_FIELDS}
        step["language_instruction"] = _text(step["language_instruction"])
        step["observation"] = {**{k: v[t] for k, v in images.items()}, "state": steps["observation"]["state"][t]}
        out_steps.append(step)
    meta = {k: (_text(v) if isinstance(v, bytes) else v) for k, v in episode.get("episode_metadata", {}).items()}
    base = {
        "file_path": str(meta.get("file_path", "")),
        "episode_id": int(episode_id),
        **{f"has_image_{k}": bool(meta.get(f"has_image_{k}", k == 0)) for k in range(4)},
        "has_language": bool(meta.get("has_language", True)),
    }
    if "synthetic" in meta:  # an export: keep its provenance as is
        provenance = {k: meta[k] for k in ("synthetic", "source_dataset", "source_episode", "source_start_step",
                                           "first_frame_variant", "seed", "models", "verdict_score",
                                           "verdict_scores", "provenance")}
    else:
        origin = f"{split}/{meta.get('file_path', '')}#{meta.get('episode_id', '')}"
        provenance = {"synthetic": False, "source_dataset": source.name, "source_episode": origin,
                      "source_start_step": 0, "first_frame_variant": "", "seed": 0, "models": "{}",
                      "verdict_score": float("nan"), "verdict_scores": "{}",
                      "provenance": json.dumps({"synthetic": False, "source_dataset": source.name,
                                                "source_episode": origin})}
    return {"steps": out_steps, "episode_metadata": {**base, **provenance}}


def _blank_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def merge_datasets(bridge: str | Path, synthetic: str | Path, out_dir: str | Path, *,
                   name: str = "bridge_orv_merged", version: str = "1.0.0",
                   synthetic_fraction: float | None = DEFAULT_SYNTHETIC_FRACTION, synthetic_repeat: int | None = None,
                   num_shards: int | None = None, overwrite: bool = False) -> dict:
    """Write ``out_dir/name/version`` holding both datasets' episodes; return a summary."""
    sources = {"bridge": RLDSSource(bridge), "synthetic": RLDSSource(synthetic)}
    size = sources["bridge"].image_size
    transitions = {k: sum(len(a) for _, a in s.trajectories()) for k, s in sources.items()}
    if synthetic_repeat is None:
        if synthetic_fraction is None:
            synthetic_repeat = 1
        else:
            target = synthetic_fraction / (1 - synthetic_fraction) * transitions["bridge"] / max(transitions["synthetic"], 1)
            synthetic_repeat = max(1, int(round(target)))
    if synthetic_repeat < 1:
        raise ExportError(f"synthetic_repeat must be >= 1, got {synthetic_repeat}")
    splits = sorted(set(sources["bridge"].splits) | set(sources["synthetic"].splits))
    accs = {fw: StatisticsAccumulator(fw) for fw in ("octo", "openvla")}
    counts = {split: {"bridge": 0, "synthetic": 0} for split in splits}
    next_id = [0]

    def episodes(split: str) -> Iterator[dict]:
        for kind, source in sources.items():
            if split not in source.splits:
                continue
            repeats = synthetic_repeat if kind == "synthetic" else 1
            for _, episode in source.episodes([split]):
                for _ in range(repeats):
                    converted = _convert(source, split, episode, size, next_id[0])
                    next_id[0] += 1
                    counts[split][kind] += 1
                    states = np.asarray(episode["steps"]["observation"]["state"], np.float32)
                    actions = np.asarray(episode["steps"]["action"], np.float32)
                    for acc in accs.values():
                        acc.add(states, actions)
                    yield converted

    synthetic_frames = transitions["synthetic"] * synthetic_repeat
    summary = {
        "episodes": counts,
        "synthetic_repeat": synthetic_repeat,
        "synthetic_frame_share": synthetic_frames / (synthetic_frames + transitions["bridge"]),
        "image_size": list(size),
        "sources": {k: str(s.path) for k, s in sources.items()},
    }

    def finalize(folder: Path) -> None:
        for framework, acc in accs.items():
            write_json(folder / f"dataset_statistics_{framework}.json", acc.result())
        write_json(folder / "merge.json", summary)

    path = write_dataset_atomically(
        out_dir, name, version, bridge_export_features(size), {split: (lambda s=split: episodes(s)) for split in splits},
        num_shards=num_shards, overwrite=overwrite, finalize=finalize,
        description="BridgeV2 and ORV-generated episodes merged into one dataset (vla_finetune.merge).")
    return {"path": str(path), **summary}

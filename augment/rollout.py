"""The ``rollouts`` stage: a painted first frame rolled out under its source episode.

The whole episode is generated as chained chunks (``orv_engine.pipelines.rollout``) with
the source's per-step actions and its occupancy condition maps, both prepared the way the
world model's checkpoint records (``transformer.preprocessing``: the action convention,
e.g. the official weights' end-effector-frame deltas recomputed from the states; the
condition encoding, ``orv_engine.occupancy.condition_images``; the prompt). Each unit's folder
``RUN/rollouts/UNIT/`` holds:

- ``video.mp4``: the generated clip;
- ``clip.npz`` + ``clip.json``: frames, the actions and states it was conditioned on, the
  caption (the source instruction until the scoring stage captions it) and provenance, in
  the export's :class:`vla_finetune.clip_record.ExportClip` format;
- ``rollout.json``: the ``Rollout`` record: source episode, first-frame variant, prompt,
  seed, references to the condition maps and first frame, model ids, seconds; for the
  ``replay`` unit also ``"replay"``: PSNR/SSIM against the recorded frames
  (:func:`augment.replay.replay_metrics`).

The folder is written under a temporary name and renamed into place, so it is complete or
absent.

Presets and batching (issue [fast-rollouts], docs/fast_rollouts.md): ``rollout.preset`` picks the
sampler (``paper``: the checkpoint's 50 DPM steps; ``fast``: fewer steps, measured); units of one
episode (its painted variants and its replay) share actions, maps and size, so
:meth:`RolloutGenerator.generate_batch` rolls several out in one batch per transformer forward,
each with its own seed's generator (the same noise as alone, so the frames equal one-by-one
rollouts up to the float rounding of batched kernels).
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch

from augment.replay import is_replay, replay_metrics, variant_label
from augment.sources import SourceEpisode, source_dir
from orv_engine.atomic_files import atomic_write_text
from orv_engine.data.action_conventions import episode_actions
from orv_engine.models.loading import read_transformer_config
from orv_engine.models.transformer_orv_mv import ORVMultiViewTransformer3DModel
from orv_engine.occupancy.condition_images import encoded_condition_images
from orv_engine.pipelines import ORVPipeline, rollout, save_mp4
from vla_finetune.clip_record import ExportClip, Provenance


def resolve_dtype(dtype: str, device) -> torch.dtype:
    """The config's dtype on GPU; CPU kernels for bf16 convolutions are slow or missing, so float32."""
    return torch.float32 if torch.device(device).type == "cpu" else getattr(torch, dtype)


class RolloutGenerator:
    """Holds the ORV pipeline; :meth:`generate` makes one rollout (frames uint8)."""

    def __init__(self, model_path, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 chunk_frames: int = 16, num_inference_steps: int | None = None,
                 guidance_scale: float | None = None, action_guidance_scale: float = 1.0,
                 transformer_path=None, preset: str = "paper"):
        extra = {} if transformer_path is None else {"transformer": Path(transformer_path)}
        self.pipe = ORVPipeline.from_pretrained(Path(model_path), dtype=dtype, **extra)
        self.pipe.to(device)
        self.pipe.set_progress_bar_config(disable=True)
        self.preset = self.pipe.apply_preset(preset).name
        self.condition_kinds = tuple(self.pipe.transformer.config.condition_kinds or ())
        self.model_id = str(model_path) if transformer_path is None else f"{model_path} + {transformer_path}"
        self.kwargs = dict(num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                           action_guidance_scale=action_guidance_scale)
        self.chunk_frames = chunk_frames

    def apply_preset(self, preset: str) -> None:
        """Switch the pipeline to a rollout preset (``paper`` | ``fast``)."""
        self.preset = self.pipe.apply_preset(preset).name

    def _inputs(self, source: SourceEpisode):
        """The source's actions and encoded condition images, as the checkpoint takes them."""
        missing = [k for k in self.condition_kinds if k not in source.conditions]
        if missing:
            raise ValueError(f"source {source.key} has no {', '.join(missing)} maps, which the world model needs")
        pre = self.pipe.transformer.preprocessing
        conditions = (encoded_condition_images(source.conditions, self.condition_kinds, pre.condition_encoding)
                      if self.condition_kinds else None)
        try:
            actions = episode_actions(source.states, source.actions, pre.action_convention, pre.action_scale)
        except ValueError as error:
            raise ValueError(f"source {source.key}: {error}") from None
        return np.asarray(actions, dtype=np.float32), conditions

    def generate(self, source: SourceEpisode, first_frame: np.ndarray, seed: int) -> np.ndarray:
        """(T, H, W, 3) uint8 for the source's T steps, starting from ``first_frame``."""
        actions, conditions = self._inputs(source)
        pre = self.pipe.transformer.preprocessing
        generator = torch.Generator("cpu").manual_seed(int(seed))
        video = rollout(self.pipe, first_frame, actions, conditions, chunk_frames=self.chunk_frames,
                        generator=generator, prompt=pre.prompt_for(source.instruction), **self.kwargs)[0]
        return (np.clip(video, 0, 1) * 255).round().astype(np.uint8)

    def generate_batch(self, sources: list[SourceEpisode], first_frames: list[np.ndarray],
                       seeds: list[int]) -> list[np.ndarray]:
        """:meth:`generate` for several units in one batch per forward; their actions, condition
        images and first frames must agree in shape (units of one episode do)."""
        if not (len(sources) == len(first_frames) == len(seeds)) or not sources:
            raise ValueError(f"{len(sources)} sources, {len(first_frames)} first frames, {len(seeds)} seeds")
        if len(sources) == 1:
            return [self.generate(sources[0], first_frames[0], seeds[0])]
        inputs = [self._inputs(source) for source in sources]
        shapes = {(a.shape, tuple((k, c.shape) for k, c in sorted((conds or {}).items())), f.shape)
                  for (a, conds), f in zip(inputs, first_frames)}
        if len(shapes) > 1:
            raise ValueError(f"units to batch differ in shape: {sorted(map(str, shapes))}")
        pre = self.pipe.transformer.preprocessing
        conditions = None
        if self.condition_kinds:
            conditions = {k: np.stack([conds[k] for _, conds in inputs]) for k in self.condition_kinds}
        generators = [torch.Generator("cpu").manual_seed(int(seed)) for seed in seeds]
        video = rollout(self.pipe, np.stack(first_frames), np.stack([a for a, _ in inputs]), conditions,
                        chunk_frames=self.chunk_frames, generator=generators,
                        prompt=[pre.prompt_for(source.instruction) for source in sources], **self.kwargs)
        return [(np.clip(v, 0, 1) * 255).round().astype(np.uint8) for v in video]


def world_model_condition_kinds(rollout_config) -> list[str]:
    """The condition kinds of the configured world model, read from its config file alone
    (no weights): the pipeline's transformer or ``rollout.transformer``, in any folder kind
    the ORV loader takes (the official checkpoints name them their own way)."""
    folder = Path(rollout_config.transformer or Path(rollout_config.model) / "transformer")
    if not (folder / "config.json").is_file():
        return []
    config, _, _ = read_transformer_config(folder, ORVMultiViewTransformer3DModel, {})
    return list(config.get("condition_kinds") or [])


def rollout_dir(run_dir, unit_id: str) -> Path:
    return Path(run_dir) / "rollouts" / unit_id


def write_rollout(run_dir, unit_id: str, unit: dict, source: SourceEpisode, frames: np.ndarray,
                  model_ids: dict, seconds: float, fps: int) -> Path:
    """Write the unit's rollout folder atomically (temporary folder, then rename)."""
    final = rollout_dir(run_dir, unit_id)
    tmp = final.parent / f".{unit_id}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_mp4(frames, tmp / "video.mp4", fps=fps)
    provenance = Provenance(source_dataset=source.dataset, source_episode=source.episode_id, source_start_step=0,
                            first_frame_variant=variant_label(unit), seed=int(unit["seed"]),
                            models={k: {"name": v} for k, v in model_ids.items()},
                            extra={"unit": unit_id, "prompt": unit["prompt"], "caption_source": "source_instruction"})
    ExportClip(frames=frames, actions=source.actions, states=source.states, caption=source.instruction,
               provenance=provenance).save(tmp)
    record = {
        "unit": unit_id, "source_episode": source.episode_id, "source_key": source.key,
        "source_dataset": source.dataset, "instruction": source.instruction, "variant": unit["variant"],
        "prompt": unit["prompt"], "seed": unit["seed"], "num_frames": int(frames.shape[0]),
        "size": list(frames.shape[1:3]),
        "conditions": str(source_dir(run_dir, source.key).relative_to(run_dir) / "source.npz"),
        "condition_kinds": sorted(source.conditions),
        "first_frame": str(Path("first_frames") / f"{unit_id}.png"), "models": model_ids,
        "seconds": round(seconds, 3), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    if is_replay(unit):
        record["replay"] = replay_metrics(frames, source.frames)
    atomic_write_text(tmp / "rollout.json", json.dumps(record, indent=1))
    if final.exists():  # a previous attempt finished writing but was killed before the manifest knew
        shutil.rmtree(final)
    tmp.rename(final)
    return final

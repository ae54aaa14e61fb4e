"""Score the small ORV's ablation variants on held-out clips: PSNR / SSIM against ground truth.

Why here: the benchmark (``benchmarks.small_ablation``, the paper's Sec. 4.4 / Table 7 in
miniature) and the CI test score the same way; this is that one way.

For each clip the variant's pipeline gets the clip's first frame and its per-frame actions
(:class:`~orv_engine.small.heldout.HeldoutClip`): variant (a) ``no_actions`` runs with the
null-action token in place of every action (as it was trained), the others with the actions;
conditioned variants get the maps of a condition source (their own by default; the swap test
gives (c) the fine maps and (d) the coarse ones) turned into the images of the checkpoint's
condition encoding by :func:`orv_engine.occupancy.condition_images.encoded_condition_images`.
Prompt, sampler, steps and encoding come from the checkpoint's ``preprocessing`` record.

Scored frames: every generated real frame, i.e. frames 1 .. R-1 of a clip of ``R`` real frames
(frame 0 is the given one): 1..16 for the small runs' 17-frame clips. ``ORVPipeline`` returns
``F`` frames for ``F`` per-frame actions and drops the frame after the last action, which is
a placeholder copy for checkpoints trained with one but a real, predicted frame for these
(trained on 17 real frames, ``placeholder_frame: false``); so the pipeline is asked for its
latents and all ``4(L-1)+1`` frames are decoded with its own ``decode_latents`` and video
processor. PSNR / SSIM (``orv_engine.evaluation.psnr_ssim``, scikit-image's numbers) are
averaged per clip, then over clips, as the training validation and ``orv-eval`` do. Clips are
batched per pipeline call with one CPU generator per clip seeded ``seed + clip index``, so
results do not depend on the batch size (up to float rounding of batched kernels).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from orv_engine.data.contact_sheet import contact_sheet
from orv_engine.device import resolve_device
from orv_engine.evaluation.psnr_ssim import finite_mean, psnr_frames, ssim_frames
from orv_engine.models import ORVTransformer3DModel
from orv_engine.occupancy.condition_images import encoded_condition_images
from orv_engine.pipelines import ORVPipeline
from orv_engine.small import SMALL_ORV_DIR, VARIANTS, Variant
from orv_engine.small.heldout import SOURCES, HeldoutClip


@dataclass
class ClipScore:
    episode_id: str
    start: int
    psnr: float  # mean over the clip's generated frames (inf if every one is identical)
    ssim: float


@dataclass
class VariantResult:
    """Scores of one variant on one set of clips with one condition source."""

    variant: str
    condition_source: str | None
    psnr: float  # mean over clips (finite clips; inf if none)
    ssim: float
    clips: list[ClipScore]
    num_inference_steps: int
    seed: int
    scored_frames: tuple[int, int]  # first and last frame index scored (inclusive)
    videos: list[np.ndarray] | None = field(default=None, repr=False)  # (R, H, W, 3) uint8 per clip

    def to_dict(self) -> dict:
        return {
            "variant": self.variant, "condition_source": self.condition_source, "psnr": self.psnr,
            "ssim": self.ssim, "num_inference_steps": self.num_inference_steps, "seed": self.seed,
            "scored_frames": list(self.scored_frames),
            "clips": [vars(c) for c in self.clips],
        }


def variant(name: str) -> Variant:
    if name not in VARIANTS:
        raise KeyError(f"unknown small ORV variant {name!r}; known: {', '.join(VARIANTS)}")
    return VARIANTS[name]


def load_variant_pipeline(pipeline_root: str | Path = SMALL_ORV_DIR, variant_name: str = "actions_occupancy",
                          device: str | torch.device = "auto", dtype: str | torch.dtype = "auto") -> ORVPipeline:
    """The pipeline folder's parts with the variant's transformer, loaded by the project's loaders
    (``ORVTransformer3DModel.from_pretrained``, ``ORVPipeline.from_pretrained``). ``dtype``
    "auto": bfloat16 on a GPU, float32 on a CPU."""
    v = variant(variant_name)
    root = Path(pipeline_root)
    folder = v.transformer_path(root)
    if not (root / "model_index.json").is_file():
        raise FileNotFoundError(f"{root} is not an ORVPipeline folder (no model_index.json)")
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"variant {v.name!r}: no transformer folder at {folder} (no config.json)")
    dev = resolve_device(device)
    if dtype == "auto":
        dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        dtype = getattr(torch, dtype)
    transformer = ORVTransformer3DModel.from_pretrained(folder, torch_dtype=dtype)
    kinds = transformer.condition_kinds
    if bool(kinds) != (v.conditions is not None):
        raise ValueError(f"variant {v.name!r} at {folder}: condition_kinds {kinds} do not fit the variant "
                         f"({'maps from ' + v.conditions if v.conditions else 'no maps'})")
    pipe = ORVPipeline.from_pretrained(str(root), transformer=transformer, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(dev)


@contextlib.contextmanager
def null_actions(transformer):
    """Inside the block every transformer call uses the null-action token for every sample."""

    def force_null(module, args, kwargs):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        kwargs["null_action_mask"] = torch.ones(hidden.shape[0], dtype=torch.bool, device=hidden.device)
        return args, kwargs

    handle = transformer.register_forward_pre_hook(force_null, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def check_clips_fit(pipe: ORVPipeline, clips: Sequence[HeldoutClip], where: str) -> None:
    """The clips are prepared as the checkpoint was trained, when its config records how."""
    if not pipe.transformer.config.preprocessing:
        return
    pre = pipe.transformer.preprocessing
    config = clips[0].config
    got = {"num_frames": config.total_frames, "placeholder_frame": config.placeholder_frame,
           "height": config.height, "width": config.width, "action_convention": config.action_convention}
    want = {k: getattr(pre, k) for k in got}
    diff = {k: (got[k], want[k]) for k in got if got[k] != want[k]}
    if diff:
        detail = ", ".join(f"{k}: clips {a!r} vs checkpoint {b!r}" for k, (a, b) in diff.items())
        raise ValueError(f"{where}: the held-out clips were cut with other settings than the checkpoint was "
                         f"trained on ({detail}); extract them with matching clip settings")


@torch.no_grad()
def evaluate_pipeline(pipe: ORVPipeline, clips: Sequence[HeldoutClip], *, uses_actions: bool = True,
                      condition_source: str | None = None, num_inference_steps: int | None = None, seed: int = 0,
                      batch_size: int = 8, keep_videos: bool = False, name: str = "") -> VariantResult:
    """Roll every clip out with ``pipe`` and score it (module docstring)."""
    if not clips:
        raise ValueError("no clips to evaluate")
    where = name or "the pipeline"
    kinds = pipe.transformer.condition_kinds
    if kinds and condition_source is None:
        raise ValueError(f"{where} takes condition maps {kinds}: give a condition source ({sorted(SOURCES)})")
    if not kinds and condition_source is not None:
        raise ValueError(f"{where} takes no condition maps; condition source {condition_source!r} cannot be used")
    if condition_source is not None and condition_source not in SOURCES:
        raise ValueError(f"condition source must be one of {sorted(SOURCES)}, got {condition_source!r}")
    check_clips_fit(pipe, clips, where)
    pre = pipe.transformer.preprocessing
    steps = pre.num_inference_steps if num_inference_steps is None else int(num_inference_steps)
    height, width = clips[0].frames.shape[1:3]
    scores: list[ClipScore] = []
    videos: list[np.ndarray] = []
    context = contextlib.nullcontext() if uses_actions else null_actions(pipe.transformer)
    with context:
        for begin in range(0, len(clips), max(1, batch_size)):
            batch = clips[begin: begin + max(1, batch_size)]
            conditions = None
            if kinds:
                images = [encoded_condition_images(c.maps(condition_source), kinds, pre.condition_encoding)
                          for c in batch]
                conditions = {k: np.stack([m[k] for m in images]) for k in kinds}
            latents = pipe(
                image=np.stack([c.frames[0] for c in batch]),
                actions=np.stack([c.actions for c in batch]),
                conditions=conditions,
                prompt=[pre.prompt_for(c.instruction) for c in batch],
                height=height, width=width, num_inference_steps=steps,
                generator=[torch.Generator("cpu").manual_seed(seed + begin + i) for i in range(len(batch))],
                output_type="latent",
            ).frames
            for clip, generated in zip(batch, _decoded_frames(pipe, latents, batch)):
                scores.append(score_clip(generated, clip))
                if keep_videos:
                    videos.append(generated)
    return _result(name, condition_source, scores, clips, steps, seed, videos if keep_videos else None)


def score_clip(generated: np.ndarray, clip: HeldoutClip) -> ClipScore:
    """PSNR / SSIM of a clip's generated frames 1 .. R-1 against its ground truth (uint8 (R, H, W, 3))."""
    psnr, _ = finite_mean(psnr_frames(generated[1:], clip.frames[1:len(generated)]))
    ssim = float(np.mean(ssim_frames(generated[1:], clip.frames[1:len(generated)])))
    return ClipScore(clip.episode_id, clip.start, psnr, ssim)


def _decoded_frames(pipe: ORVPipeline, latents: torch.Tensor, batch: Sequence[HeldoutClip]) -> list[np.ndarray]:
    """Latents -> each clip's real frames as uint8, through the pipeline's VAE and video processor."""
    decoded = pipe.decode_latents(latents)  # every frame, the one after the last action included
    result = pipe.video_processor.postprocess_video(video=decoded.float(), output_type="np")
    return [np.clip(np.rint(video[:clip.num_real_frames] * 255.0), 0, 255).astype(np.uint8)
            for clip, video in zip(batch, np.asarray(result))]


def _result(name, condition_source, scores, clips, steps, seed, videos) -> VariantResult:
    psnr, _ = finite_mean([s.psnr for s in scores])
    return VariantResult(
        variant=name, condition_source=condition_source, psnr=psnr, ssim=float(np.mean([s.ssim for s in scores])),
        clips=scores, num_inference_steps=steps, seed=seed, scored_frames=(1, clips[0].num_real_frames - 1),
        videos=videos,
    )


def copy_first_frame(clips: Sequence[HeldoutClip]) -> VariantResult:
    """The trivial predictor, scored like a variant: every frame is the first one (a rollout that
    does not beat it has learnt nothing about motion)."""
    scores = [score_clip(np.repeat(c.frames[:1], c.num_real_frames, axis=0), c) for c in clips]
    return _result("copy_first_frame", None, scores, clips, 0, 0, None)


@torch.no_grad()
def vae_reconstruction(pipe: ORVPipeline, clips: Sequence[HeldoutClip], batch_size: int = 8) -> VariantResult:
    """The clips through the pipeline's VAE alone (posterior mode), scored like a variant: the
    ceiling of any rollout decoded by this VAE."""
    scores = []
    for begin in range(0, len(clips), max(1, batch_size)):
        batch = clips[begin: begin + max(1, batch_size)]
        video = torch.from_numpy(np.stack([c.frames for c in batch])).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0
        latents = pipe.encode_video(video.to(pipe.vae.device), sample=False)
        scores += [score_clip(g, c) for c, g in zip(batch, _decoded_frames(pipe, latents, batch))]
    return _result("vae_reconstruction", None, scores, clips, 0, 0, None)


def evaluate_variant(pipeline_root: str | Path, variant_name: str, clips: Sequence[HeldoutClip],
                     condition_source: str | None = None, *, num_inference_steps: int | None = None, seed: int = 0,
                     batch_size: int = 8, device: str | torch.device = "auto", dtype: str | torch.dtype = "auto",
                     keep_videos: bool = False, pipeline: ORVPipeline | None = None) -> VariantResult:
    """PSNR / SSIM of one variant of the small ORV folder at ``pipeline_root`` on ``clips``.

    ``condition_source``: None = the variant's own ("occupancy" coarse maps for (c),
    "episode" fine maps for (d), none for (a) and (b)); the other source for a swap.
    ``num_inference_steps``: None = the checkpoint's. ``pipeline``: an already loaded
    pipeline of this variant (:func:`load_variant_pipeline`), to evaluate several sources
    without loading twice."""
    v = variant(variant_name)
    source = v.conditions if condition_source is None else condition_source
    if v.conditions is None and condition_source is not None:
        raise ValueError(f"variant {v.name!r} takes no condition maps; condition_source must be None")
    pipe = pipeline if pipeline is not None else load_variant_pipeline(pipeline_root, v.name, device, dtype)
    return evaluate_pipeline(pipe, clips, uses_actions=v.uses_actions, condition_source=source,
                             num_inference_steps=num_inference_steps, seed=seed, batch_size=batch_size,
                             keep_videos=keep_videos, name=v.name)


def write_contact_sheet(result: VariantResult, clips: Sequence[HeldoutClip], path: str | Path, *,
                        max_clips: int = 4, frames_per_row: int = 8, tile: int = 96) -> Path:
    """A PNG per variant: for each of the first ``max_clips`` clips, the ground truth row, the
    rollout row and (conditioned variants) the depth and semantics rows of the maps it got
    (:func:`orv_engine.data.contact_sheet.contact_sheet`). ``result`` must keep its videos."""
    if result.videos is None:
        raise ValueError("the result has no videos: evaluate with keep_videos=True")
    rows = []
    for clip, video, score in list(zip(clips, result.videos, result.clips))[:max_clips]:
        maps = f", maps: {result.condition_source}" if result.condition_source else ""
        rows.append(clip.to_clip(frames=clip.frames[: len(video)], label="ground truth"))
        rows.append(clip.to_clip(frames=video, source=result.condition_source,
                                 label=f"{result.variant}{maps}, PSNR {score.psnr:.1f} SSIM {score.ssim:.3f}"))
    return contact_sheet(rows, path, frames_per_row=frames_per_row, tile=tile)

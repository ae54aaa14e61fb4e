"""Validation during training: roll held-out clips out with ORVPipeline, score and save them.

Each held-out clip gives its first frame, its per-frame actions and (stage 2) its condition
images to :class:`~orv_engine.pipelines.ORVPipeline`, with a fixed generator per clip, so
numbers are comparable across steps. PSNR/SSIM are computed over the generated frames
(1 .. F-1; frame 0 is the given one) against the ground truth with the project's metric
code (``orv_engine.evaluation.psnr_ssim``, the numbers of scikit-image), then averaged per
clip and over clips. Videos go to ``<output_dir>/validation/step-<n>/<i>.mp4`` with ground
truth on the left and the rollout on the right.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import CogVideoXDPMScheduler

from orv_engine.evaluation.psnr_ssim import finite_mean, psnr_frames, ssim_frames
from orv_engine.pipelines import ORVPipeline, save_mp4


def _per_frame_actions(chunk_aligned: np.ndarray, action_chunk: int) -> np.ndarray:
    """Chunk-aligned (r*L, 7) -> per-frame (F, 7): the reference chunk's zero rows dropped."""
    return np.asarray(chunk_aligned)[action_chunk:]


@torch.no_grad()
def run_validation(components, transformer, clips: list[dict], config, step: int, device) -> dict:
    if not clips:
        return {}
    was_training = transformer.training
    transformer.eval()
    pipe = ORVPipeline(
        tokenizer=components.tokenizer, text_encoder=components.text_encoder, vae=components.vae,
        transformer=transformer, scheduler=CogVideoXDPMScheduler.from_config(components.scheduler.config),
    )
    pipe.set_progress_bar_config(disable=True)
    out_dir = Path(config.output_dir) / "validation" / f"step-{step:07d}"
    psnrs, ssims = [], []
    kinds = list(transformer.config.condition_kinds or [])
    r = transformer.config.action_chunk
    for i, clip in enumerate(clips):
        num_frames = clip["num_real_frames"]
        truth = np.asarray(clip["frames"])[:num_frames]
        conditions = {k: np.asarray(clip["conditions"][k]) for k in kinds} if kinds else None
        prompt = clip["instruction"] if config.text.use_instruction else config.text.prompt
        video = pipe(
            image=truth[0],
            actions=_per_frame_actions(clip["actions"], r),
            conditions=conditions,
            prompt=prompt,
            num_inference_steps=config.validation.num_inference_steps,
            generator=torch.Generator("cpu").manual_seed(config.validation.seed + i),
            output_type="np",
        ).frames[0]
        generated = (np.clip(video, 0, 1) * 255).round().astype(np.uint8)
        truth = truth[: len(generated)]  # a clip of 4k+1 real frames: the frame after the last action is not returned
        psnrs.append(finite_mean(psnr_frames(generated[1:], truth[1:]))[0])
        ssims.append(float(np.mean(ssim_frames(generated[1:], truth[1:]))))
        if config.validation.save_videos:
            save_mp4(np.concatenate([truth, generated], axis=2), out_dir / f"{i:02d}.mp4", fps=config.validation.fps)
    if was_training:
        transformer.train()
    psnr, _ = finite_mean(psnrs)
    return {"val/psnr": psnr, "val/ssim": float(np.mean(ssims)), "val/clips": len(clips)}

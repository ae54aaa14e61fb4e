"""ORV inference: first frame + per-frame actions (+ condition maps) -> robot video.

Why a ``DiffusionPipeline``: the components are CogVideoX's (T5, 3D VAE, CogVideoX
schedulers) plus the ORV transformer, so saving, loading, offloading and device moves come
from diffusers. The latent layout follows ``CogVideoXImageToVideoPipeline``: the first
frame's latents are padded with zeros to every latent frame and concatenated to the noisy
latents on channels (16 + 16 = 32).

Frames: ``F = 8N`` actions give ``F`` frames (the first is the given frame). The VAE takes
``F + 1`` frames, so a placeholder frame is added to the conditions and dropped from the
decoded video. Actions are chunk-aligned with the data side's own function.

Guidance: ``action_guidance_scale`` (null-action token) and ``guidance_scale`` (negative
prompt) combine as ``cond + (s_a - 1)(cond - no_action) + (s_t - 1)(cond - no_text)``; a
scale of 1.0 switches its branch off (no extra transformer pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXDPMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor
from transformers import T5EncoderModel, T5Tokenizer

from orv_engine.models.transformer_orv import ORVTransformer3DModel
from orv_engine.pipelines.inputs import (
    actions_to_tensor,
    chunk_actions,
    conditions_to_videos,
    images_to_tensor,
)


@dataclass
class ORVPipelineOutput(BaseOutput):
    """frames: (B, F, H, W, 3) float np in [0, 1], a list of lists of PIL images, a
    (B, F, 3, H, W) tensor, or latents (B, L, C, h, w), by ``output_type``."""

    frames: object


class ORVPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->transformer->vae"

    def __init__(
        self,
        tokenizer: T5Tokenizer,
        text_encoder: T5EncoderModel,
        vae: AutoencoderKLCogVideoX,
        transformer: ORVTransformer3DModel,
        scheduler: CogVideoXDPMScheduler | CogVideoXDDIMScheduler,
    ):
        super().__init__()
        if not isinstance(transformer, ORVTransformer3DModel):
            raise TypeError(
                f"transformer must be an ORVTransformer3DModel, got {type(transformer).__name__}; convert a "
                "CogVideoX folder with ORVTransformer3DModel.from_pretrained(folder, subfolder='transformer')"
            )
        if transformer.config.use_rotary_positional_embeddings:
            raise NotImplementedError(
                "this pipeline follows CogVideoX-2B (sin-cos positional embeddings); transformers with rotary "
                "embeddings (CogVideoX-5B) are not supported yet"
            )
        self.register_modules(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
        )
        self.vae_scale_factor_spatial = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.vae_scale_factor_temporal = self.vae.config.temporal_compression_ratio
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)

    # ------------------------------------------------------------------ encoders

    def encode_prompt(self, prompts: list[str], device, dtype) -> torch.Tensor:
        max_length = self.transformer.config.max_text_seq_length
        ids = self.tokenizer(
            prompts, padding="max_length", max_length=max_length, truncation=True,
            add_special_tokens=True, return_tensors="pt",
        ).input_ids
        return self.text_encoder(ids.to(device))[0].to(device=device, dtype=dtype)

    def _scale(self, latents: torch.Tensor) -> torch.Tensor:
        factor = self.vae.config.scaling_factor
        return latents / factor if self.vae.config.invert_scale_latents else latents * factor

    def encode_video(self, video: torch.Tensor, generator=None, sample: bool = True) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1] -> scaled latents (B, L, C, h, w), one sample at a time."""
        vae_dtype = self.vae.dtype
        latents = []
        for i in range(video.shape[0]):
            dist = self.vae.encode(video[i : i + 1].to(self.vae.device, vae_dtype)).latent_dist
            if sample:
                g = generator[i] if isinstance(generator, list) else generator
                latents.append(dist.sample(g))
            else:
                latents.append(dist.mode())
        return self._scale(torch.cat(latents)).permute(0, 2, 1, 3, 4)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        latents = latents.permute(0, 2, 1, 3, 4) / self.vae.config.scaling_factor
        return self.vae.decode(latents.to(self.vae.dtype)).sample  # (B, 3, F+1, H, W)

    # ------------------------------------------------------------------ call

    @torch.no_grad()
    def __call__(
        self,
        image,
        actions,
        conditions: dict | None = None,
        prompt: str | list[str] = "",
        negative_prompt: str | list[str] = "",
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 1.0,
        action_guidance_scale: float = 1.0,
        eta: float = 0.0,
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str = "np",
        return_dict: bool = True,
    ) -> ORVPipelineOutput | tuple:
        """Generate one video per first frame.

        Args:
            image: first frame(s): PIL, (H, W, 3) / (B, H, W, 3) numpy, a list of them, or a
                (B, 3, H, W) tensor in [-1, 1].
            actions: per-frame actions (F, D) or (B, F, D); ``F = 8N`` frames are generated.
            conditions: {kind: maps} for each of ``transformer.config.condition_kinds``,
                (F or F+1, H, W[, 3]) per sample (see :func:`.inputs.conditions_to_videos`).
            guidance_scale / action_guidance_scale: text / action classifier-free guidance
                (1.0 = off).
            generator: one ``torch.Generator`` per sample (a list) or one for the batch.
            output_type: "np", "pil", "pt" or "latent".
        """
        device = self._execution_device
        dtype = self.transformer.dtype
        cfg = self.transformer.config

        image = images_to_tensor(image, height, width)
        batch_size, _, height, width = image.shape
        if height % (self.vae_scale_factor_spatial * cfg.patch_size) or width % (
            self.vae_scale_factor_spatial * cfg.patch_size
        ):
            m = self.vae_scale_factor_spatial * cfg.patch_size
            raise ValueError(f"height and width must be multiples of {m}, got {height}x{width}")
        if isinstance(generator, list) and len(generator) != batch_size:
            raise ValueError(f"{len(generator)} generators for {batch_size} samples: pass one per sample")
        frame_actions = actions_to_tensor(actions, batch_size, cfg.action_dim)
        num_frames = frame_actions.shape[1]
        num_latent_frames = num_frames // self.vae_scale_factor_temporal + 1
        condition_videos = conditions_to_videos(
            conditions, self.transformer.condition_kinds, batch_size, num_frames, height, width
        )
        prompts = [prompt] * batch_size if isinstance(prompt, str) else list(prompt)
        negatives = [negative_prompt] * batch_size if isinstance(negative_prompt, str) else list(negative_prompt)
        if len(prompts) != batch_size or len(negatives) != batch_size:
            raise ValueError(f"{len(prompts)} prompts / {len(negatives)} negative prompts for {batch_size} samples")

        # Encode text, first frame, conditions; chunk-align the actions.
        prompt_embeds = self.encode_prompt(prompts, device, dtype)
        image_latents = self.encode_video(image[:, :, None], generator).to(device, dtype)  # (B, 1, C, h, w)
        c, h, w = image_latents.shape[2:]
        image_latents = torch.cat(
            [image_latents, image_latents.new_zeros(batch_size, num_latent_frames - 1, c, h, w)], dim=1
        )
        chunked = chunk_actions(frame_actions, num_latent_frames, cfg.action_chunk).to(device, dtype)
        condition_latents = None
        if condition_videos is not None:
            condition_latents = torch.cat(
                [self.encode_video(condition_videos[k], sample=False) for k in self.transformer.condition_kinds],
                dim=2,
            ).to(device, dtype)

        # Guidance branches, stacked on the batch: cond, no-action, no-text.
        use_action_cfg, use_text_cfg = action_guidance_scale != 1.0, guidance_scale != 1.0
        branch_text = [prompt_embeds]
        branch_null = [torch.zeros(batch_size, dtype=torch.bool)]
        if use_action_cfg:
            branch_text.append(prompt_embeds)
            branch_null.append(torch.ones(batch_size, dtype=torch.bool))
        if use_text_cfg:
            branch_text.append(self.encode_prompt(negatives, device, dtype))
            branch_null.append(torch.zeros(batch_size, dtype=torch.bool))
        n = len(branch_text)
        text_in = torch.cat(branch_text)
        null_in = torch.cat(branch_null).to(device)
        image_in = image_latents.repeat(n, 1, 1, 1, 1)
        actions_in = chunked.repeat(n, 1, 1)
        conditions_in = None if condition_latents is None else condition_latents.repeat(n, 1, 1, 1, 1)

        # Noise and the loop (same scheduler handling as diffusers' CogVideoX pipelines).
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (batch_size, num_latent_frames, cfg.out_channels, h, w)
        latents = self._initial_latents(latents, shape, generator, device, dtype)
        latents = self._denoise(
            latents, n, image_in, channel_dim=2,
            model_inputs=dict(encoder_hidden_states=text_in, actions=actions_in, condition_latents=conditions_in,
                              null_action_mask=null_in),
            guidance=(action_guidance_scale if use_action_cfg else None, guidance_scale if use_text_cfg else None),
            eta=eta, generator=generator, dtype=dtype)

        if output_type == "latent":
            video = latents
        else:
            decoded = self.decode_latents(latents)[:, :, :num_frames]  # drop the placeholder frame
            video = self.video_processor.postprocess_video(video=decoded.float(), output_type=output_type)
        self.maybe_free_model_hooks()
        if not return_dict:
            return (video,)
        return ORVPipelineOutput(frames=video)

    def _initial_latents(self, latents, shape, generator, device, dtype) -> torch.Tensor:
        """Fresh noise of ``shape`` (or the given latents, checked), scaled for the scheduler."""
        if latents is None:
            latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        elif tuple(latents.shape) != tuple(shape):
            raise ValueError(f"latents must have shape {tuple(shape)}, got {tuple(latents.shape)}")
        return latents.to(device, dtype) * self.scheduler.init_noise_sigma

    def _denoise(self, latents, branches: int, image_in, channel_dim: int, model_inputs: dict, guidance,
                 eta: float, generator, dtype) -> torch.Tensor:
        """The sampling loop over ``self.scheduler.timesteps``.

        The model runs on ``branches`` stacked copies of ``latents`` (conditional first, then
        the null-action branch and the negative-prompt branch when their guidance scale is
        not None), each concatenated with ``image_in`` along ``channel_dim``; ``guidance`` is
        (action scale, text scale)."""
        action_scale, text_scale = guidance
        timesteps = self.scheduler.timesteps
        old_pred_original_sample = None
        for i, t in enumerate(self.progress_bar(timesteps)):
            scaled = self.scheduler.scale_model_input(latents, t)
            model_in = torch.cat([scaled.repeat(branches, *[1] * (scaled.dim() - 1)), image_in], dim=channel_dim)
            noise_pred = self.transformer(hidden_states=model_in, timestep=t.expand(model_in.shape[0]),
                                          return_dict=False, **model_inputs)[0].float()
            preds = noise_pred.chunk(branches)
            pred, k = preds[0], 1
            if action_scale is not None:
                pred = pred + (action_scale - 1) * (preds[0] - preds[k])
                k += 1
            if text_scale is not None:
                pred = pred + (text_scale - 1) * (preds[0] - preds[k])
            if isinstance(self.scheduler, CogVideoXDPMScheduler):
                latents, old_pred_original_sample = self.scheduler.step(
                    pred, old_pred_original_sample, t, timesteps[i - 1] if i > 0 else None, latents,
                    eta=eta, generator=generator, return_dict=False,
                )
            else:
                latents = self.scheduler.step(pred, t, latents, eta=eta, generator=generator, return_dict=False)[0]
            latents = latents.to(dtype)
        return latents

    def rollout(self, image, actions, conditions: dict | None = None, chunk_frames: int = 16, **kwargs):
        """An episode of any length by chained chunks; see :func:`.long_horizon.rollout`."""
        from orv_engine.pipelines.long_horizon import rollout

        return rollout(self, image, actions, conditions, chunk_frames=chunk_frames, **kwargs)

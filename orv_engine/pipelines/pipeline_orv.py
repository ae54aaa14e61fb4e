"""ORV inference: first frame + per-frame actions (+ condition maps) -> robot video.

Why a ``DiffusionPipeline``: the components are CogVideoX's (T5, 3D VAE, CogVideoX
schedulers) plus the ORV transformer, so saving, loading, offloading and device moves come
from diffusers. The latent layout follows ``CogVideoXImageToVideoPipeline``: the first
frame's latents are padded with zeros to every latent frame and concatenated to the noisy
latents on channels (16 + 16 = 32).

Frames: ``F = 4k`` per-frame actions (action ``t`` moves frame ``t`` to ``t + 1``) give ``F``
frames, the first being the given one, aligned with the actions. The VAE takes ``F + 1``
frames: the frame after the last action is generated and dropped (for this project's own
checkpoints it is a placeholder copy in training; for the official ones a real frame).
Actions are chunk-aligned with the data side's own function.

Checkpoint conventions: the transformer's ``preprocessing`` record decides the sampler
defaults (steps, guidance, prompt; :meth:`ORVPipeline.from_pretrained` also sets the
scheduler it names), the condition images' value range and whether their latents are the
posterior mode or a sample. Actions must be given in its action convention (the episode
code does that: :func:`orv_engine.data.action_conventions.episode_actions`). Inference is
deterministic: unlike the official code, no action is dropped at random.

Guidance: ``action_guidance_scale`` (null-action token) and ``guidance_scale`` (negative
prompt) combine as ``cond + (s_a - 1)(cond - no_action) + (s_t - 1)(cond - no_text)``; a
scale of 1.0 switches its branch off (no extra transformer pass).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXDPMScheduler, DiffusionPipeline
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from diffusers.video_processor import VideoProcessor
from transformers import T5EncoderModel, T5Tokenizer

from orv_engine.weight_files import check_weight_files
from orv_engine.models.transformer_orv import ORVTransformer3DModel
from orv_engine.pipelines import long_horizon
from orv_engine.pipelines.inputs import (
    actions_to_tensor,
    chunk_actions,
    conditions_to_videos,
    images_to_tensor,
)
from orv_engine.pipelines.presets import RolloutPreset, apply_rollout_preset


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
        self.register_modules(
            tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer, scheduler=scheduler
        )
        self.vae_scale_factor_spatial = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.vae_scale_factor_temporal = self.vae.config.temporal_compression_ratio
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor_spatial)

    transformer_class = ORVTransformer3DModel

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """diffusers' loader, then the sampler the transformer's checkpoint records
        (``preprocessing.scheduler`` and ``timestep_spacing``) unless a scheduler is passed.

        ``transformer`` may be a model or a transformer *folder* of any kind the ORV loader
        knows, e.g. the official ORV weights next to a CogVideoX-2B folder for the rest:
        ``ORVPipeline.from_pretrained("CogVideoX-2b", transformer="orv-gen-model/transformer")``.
        """
        preset = kwargs.pop("preset", None)  # "paper" | "fast" | a RolloutPreset (orv_engine.pipelines.presets)
        transformer = kwargs.get("transformer")
        if Path(str(pretrained_model_name_or_path)).expanduser().is_dir():
            check_weight_files(pretrained_model_name_or_path)  # a damaged file named before diffusers meets it
        if isinstance(transformer, (str, Path)):
            check_weight_files(transformer)
            dtype = kwargs.get("torch_dtype", kwargs.get("dtype"))
            kwargs["transformer"] = cls.transformer_class.from_pretrained(transformer, torch_dtype=dtype)
        pipe = super().from_pretrained(pretrained_model_name_or_path, **kwargs)
        if not isinstance(pipe.transformer, cls.transformer_class):
            raise TypeError(f"{pretrained_model_name_or_path}: its transformer is a {type(pipe.transformer).__name__}; "
                            f"pass transformer=<an ORV transformer folder>")
        if "scheduler" not in kwargs:
            pipe.use_checkpoint_scheduler()
        if preset is not None:
            pipe.apply_preset(preset)
        return pipe

    def apply_preset(self, preset: str | RolloutPreset) -> RolloutPreset:
        """Switch to a rollout preset ("paper": the checkpoint's sampler; "fast": 12 DPM steps,
        measured in docs/fast_rollouts.md; :mod:`.presets`); returns it."""
        return apply_rollout_preset(self, preset)

    def use_checkpoint_scheduler(self) -> None:
        """Set the scheduler class and timestep spacing the transformer's checkpoint was sampled
        with, when its config records them (the official weights: CogVideoX DPM, trailing)."""
        if not self.transformer.config.preprocessing:
            return
        pre = self.transformer.preprocessing
        scheduler_class = {"CogVideoXDPMScheduler": CogVideoXDPMScheduler,
                           "CogVideoXDDIMScheduler": CogVideoXDDIMScheduler}[pre.scheduler]
        if isinstance(self.scheduler, scheduler_class) and self.scheduler.config.timestep_spacing == pre.timestep_spacing:
            return
        self.scheduler = scheduler_class.from_config(self.scheduler.config, timestep_spacing=pre.timestep_spacing)

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
        """(B, L, C, h, w) -> (B, 3, 4(L-1)+1, H, W). CogVideoX's decoder gives 4L frames for an
        even number of latent frames (the reference latent is not decoded to one frame alone
        then); its first 3 frames belong to the reference latent and are dropped."""
        latents = latents.permute(0, 2, 1, 3, 4) / self.vae.config.scaling_factor
        video = self.vae.decode(latents.to(self.vae.dtype)).sample
        expected = 4 * (latents.shape[2] - 1) + 1
        return video[:, :, video.shape[2] - expected:]

    # ------------------------------------------------------------------ call

    @torch.no_grad()
    def __call__(
        self,
        image,
        actions,
        conditions: dict | None = None,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] = "",
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
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
            actions: per-frame actions (F, D) or (B, F, D) in the checkpoint's action
                convention (``transformer.preprocessing``); ``F = 4k`` frames are generated.
            conditions: {kind: images} for each of ``transformer.config.condition_kinds``,
                (F or F+1, H, W[, 3]) per sample in [0, 1] or uint8, made with the
                checkpoint's condition encoding (see :func:`.inputs.conditions_to_videos`).
            prompt, num_inference_steps, guidance_scale: ``None`` takes the checkpoint's
                defaults (``transformer.preprocessing``: empty prompt, 50 steps, 1.0 for
                the official weights); guidance_scale / action_guidance_scale are text /
                action classifier-free guidance (1.0 = off).
            generator: one ``torch.Generator`` per sample (a list) or one for the batch.
            output_type: "np", "pil", "pt" or "latent".
        """
        video = self._generate(
            [image], actions, None if conditions is None else [conditions], None, prompt, negative_prompt, height,
            width, num_inference_steps, guidance_scale, action_guidance_scale, eta, generator, latents, output_type,
        )
        video = video if output_type == "pil" else video[:, 0]  # the views axis of one view
        if output_type == "pil":
            video = [views[0] for views in video]
        if not return_dict:
            return (video,)
        return ORVPipelineOutput(frames=video)

    def _view_inputs(self, images, conditions, height, width) -> torch.Tensor:
        """A list with one first frame (or batch of them) per view -> (B, V, 3, H, W) in [-1, 1]."""
        if not isinstance(images, (list, tuple)) or len(images) == 0:
            raise ValueError("images must be a non-empty list with one first frame (or batch of them) per view")
        num_views = len(images)
        views = self.transformer.config.num_views or 1
        if num_views > views:
            raise ValueError(f"{num_views} views given, the transformer takes at most num_views={views}")
        tensors = [images_to_tensor(image, height, width) for image in images]
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) > 1:
            raise ValueError(f"the views' first frames differ in batch size or image size: {sorted(shapes)}")
        if conditions is not None:
            if not isinstance(conditions, (list, tuple)) or len(conditions) != num_views:
                got = len(conditions) if isinstance(conditions, (list, tuple)) else type(conditions).__name__
                raise ValueError(f"conditions must be a list with one dict per view ({num_views} views), got {got}")
        return torch.stack(tensors, dim=1)

    def _encode_conditions(self, conditions, batch_size, num_frames, height, width, generator) -> torch.Tensor | None:
        """One {kind: images} per view -> (B, V, L, k*C, h, w) latents, as the checkpoint was trained:
        posterior mode ("engine") or a posterior sample ("orv-official")."""
        if conditions is None:
            return None
        kinds, encoding = self.transformer.condition_kinds, self.transformer.preprocessing.condition_encoding
        per_view = []
        for v, view_conditions in enumerate(conditions):
            try:
                videos = conditions_to_videos(view_conditions, kinds, batch_size, num_frames, height, width, encoding)
            except ValueError as e:
                raise ValueError(f"conditions of view {v}: {e}" if len(conditions) > 1 else str(e)) from None
            if videos is None:
                raise ValueError(f"conditions of view {v} are empty; give every view its maps or pass None")
            sample = encoding == "orv-official"
            per_view.append(torch.cat([self.encode_video(videos[k], generator, sample=sample) for k in kinds], dim=2))
        return torch.stack(per_view, dim=1)

    def _generate(self, images, actions, conditions, view_ids, prompt, negative_prompt, height, width,
                  num_inference_steps, guidance_scale, action_guidance_scale, eta, generator, latents, output_type):
        """The generation of both pipelines, with a views axis (one view for :class:`ORVPipeline`).

        Returns (B, V, F, H, W, 3) for "np", (B, V, F, 3, H, W) for "pt", latents (B, V, L, C, h, w)
        for "latent", a list (samples) of lists (views) of PIL lists for "pil"."""
        device = self._execution_device
        dtype = self.transformer.dtype
        cfg = self.transformer.config
        defaults = self.transformer.preprocessing
        prompt = (defaults.prompt or "") if prompt is None else prompt
        preset_steps = getattr(self, "_preset_steps", None)  # set by apply_preset; None: the checkpoint's
        if num_inference_steps is None:
            num_inference_steps = defaults.num_inference_steps if preset_steps is None else preset_steps
        guidance_scale = defaults.guidance_scale if guidance_scale is None else guidance_scale
        multi_view = cfg.num_views is not None

        # 1. Inputs: every view's first frame, per-frame actions, prompts; checked.
        pixels = self._view_inputs(images, conditions, height, width)
        batch_size, num_views, _, height, width = pixels.shape
        m = self.vae_scale_factor_spatial * cfg.patch_size
        if height % m or width % m:
            raise ValueError(f"height and width must be multiples of {m}, got {height}x{width}")
        if isinstance(generator, list) and (multi_view or len(generator) != batch_size):
            raise ValueError(f"{len(generator)} generators for {batch_size} samples: pass one per sample"
                             if not multi_view else "pass one torch.Generator for the batch (views share the draw order)")
        frame_actions = actions_to_tensor(actions, batch_size, cfg.action_dim)
        num_frames = frame_actions.shape[1]
        num_latent_frames = num_frames // self.vae_scale_factor_temporal + 1
        if view_ids is not None:
            view_ids = torch.as_tensor(view_ids, dtype=torch.long)
            view_ids = view_ids.expand(batch_size, -1) if view_ids.ndim == 1 else view_ids
            if tuple(view_ids.shape) != (batch_size, num_views):
                raise ValueError(f"view_ids must be ({num_views},) or ({batch_size}, {num_views}), got "
                                 f"{tuple(view_ids.shape)}")
            view_ids = view_ids.to(device)
        prompts = [prompt] * batch_size if isinstance(prompt, str) else list(prompt)
        negatives = [negative_prompt] * batch_size if isinstance(negative_prompt, str) else list(negative_prompt)
        if len(prompts) != batch_size or len(negatives) != batch_size:
            raise ValueError(f"{len(prompts)} prompts / {len(negatives)} negative prompts for {batch_size} samples")

        # 2. Encode text, first frames (views of a sample adjacent), conditions; chunk-align the actions.
        prompt_embeds = self.encode_prompt(prompts, device, dtype)
        first = pixels.flatten(0, 1)[:, :, None]
        image_latents = self.encode_video(first, generator).to(device, dtype)
        c, h, w = image_latents.shape[2:]
        image_latents = torch.cat(
            [image_latents, image_latents.new_zeros(batch_size * num_views, num_latent_frames - 1, c, h, w)], dim=1
        ).reshape(batch_size, num_views, num_latent_frames, c, h, w)
        chunked = chunk_actions(frame_actions, num_latent_frames, cfg.action_chunk).to(device, dtype)
        condition_latents = self._encode_conditions(conditions, batch_size, num_frames, height, width, generator)
        if condition_latents is not None:
            condition_latents = condition_latents.to(device, dtype)

        # 3. Guidance branches, stacked on the batch: cond, no-action, no-text.
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

        def views_axis(x):  # the multi-view transformer takes (B, V, ...); the single-view one (B, ...)
            return x if multi_view or x is None else x[:, 0]

        model_inputs = dict(
            encoder_hidden_states=torch.cat(branch_text), actions=chunked.repeat(n, 1, 1),
            condition_latents=None if condition_latents is None else views_axis(condition_latents).repeat(
                n, *[1] * (condition_latents.dim() - (1 if multi_view else 2))),
            null_action_mask=torch.cat(branch_null).to(device),
        )
        if multi_view:
            model_inputs["view_ids"] = None if view_ids is None else view_ids.repeat(n, 1)
        image_in = views_axis(image_latents)
        image_in = image_in.repeat(n, *[1] * (image_in.dim() - 1))

        # 4. Noise and the sampling loop (same scheduler handling as diffusers' CogVideoX pipelines).
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (batch_size, num_views, num_latent_frames, cfg.out_channels, h, w)
        latents = self._initial_latents(latents, shape if multi_view else (shape[0], *shape[2:]), generator,
                                        device, dtype)
        latents = self._denoise(
            latents, n, image_in, channel_dim=3 if multi_view else 2, model_inputs=model_inputs,
            guidance=(action_guidance_scale if use_action_cfg else None, guidance_scale if use_text_cfg else None),
            eta=eta, generator=generator, dtype=dtype)
        latents = latents if multi_view else latents[:, None]

        # 5. Decode every view; frames aligned with the actions.
        if output_type == "latent":
            video = latents
        else:
            decoded = self.decode_latents(latents.flatten(0, 1))[:, :, :num_frames]
            video = self.video_processor.postprocess_video(video=decoded.float(), output_type=output_type)
            if output_type == "pil":
                video = [video[b * num_views : (b + 1) * num_views] for b in range(batch_size)]
            else:
                video = video.reshape(batch_size, num_views, *video.shape[1:])
        self.maybe_free_model_hooks()
        return video

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
        # diffusers' other schedulers (UniPC, DPM-Solver++) take no eta (UniPC no generator): pass what step() has
        accepted = inspect.signature(self.scheduler.step).parameters
        step_kwargs = {k: v for k, v in (("eta", eta), ("generator", generator)) if k in accepted}
        for i, t in enumerate(self.progress_bar(timesteps)):
            self._current_timestep = t  # read by diffusers' cache hooks (PAB, FasterCache) via current_timestep
            scaled = self.scheduler.scale_model_input(latents, t)
            model_in = torch.cat([scaled.repeat(branches, *[1] * (scaled.dim() - 1)), image_in], dim=channel_dim)
            # a cache context as diffusers' CogVideoX pipelines set it: the stateful cache hooks need one
            with self.transformer.cache_context("cond_uncond", step_index=i, num_inference_steps=len(timesteps),
                                                timestep=t):
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
                latents = self.scheduler.step(pred, t, latents, return_dict=False, **step_kwargs)[0]
            latents = latents.to(dtype)
        self._current_timestep = None
        return latents

    @property
    def current_timestep(self):
        """The timestep being denoised (None outside the loop): the cache hooks' clock."""
        return getattr(self, "_current_timestep", None)

    def rollout(self, image, actions, conditions: dict | None = None, chunk_frames: int = 16, **kwargs):
        """An episode of any length by chained chunks; see :func:`.long_horizon.rollout`."""
        return long_horizon.rollout(self, image, actions, conditions, chunk_frames=chunk_frames, **kwargs)

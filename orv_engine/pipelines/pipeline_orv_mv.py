"""ORV-MV inference: the first frames of ``V`` views + one action sequence (+ per-view
conditions) -> ``V`` videos of the episode, denoised together so they agree.

Why a subclass of :class:`ORVPipeline`: the components, encoders, scheduler loop and
guidance are the single-view pipeline's; only the latent layout gains a views axis
``(B, V, L, C, h, w)`` and the transformer is :class:`ORVMultiViewTransformer3DModel`.
All views of a sample share the timestep, the noise schedule, the text and the actions
(the robot does one thing, seen from ``V`` cameras); each view has its own first frame,
noise and condition maps (the reference view's occupancy rendered from that camera, see
:mod:`orv_engine.occupancy.side_views`).
"""

from __future__ import annotations

import torch

from orv_engine.models.transformer_orv_mv import ORVMultiViewTransformer3DModel
from orv_engine.pipelines.inputs import actions_to_tensor, chunk_actions, conditions_to_videos, images_to_tensor
from orv_engine.pipelines.pipeline_orv import ORVPipeline, ORVPipelineOutput


class ORVMultiViewPipeline(ORVPipeline):
    def __init__(self, tokenizer, text_encoder, vae, transformer: ORVMultiViewTransformer3DModel, scheduler):
        if not isinstance(transformer, ORVMultiViewTransformer3DModel):
            raise TypeError(
                f"transformer must be an ORVMultiViewTransformer3DModel, got {type(transformer).__name__}; build one "
                "from a single-view model with ORVMultiViewTransformer3DModel.from_single_view(model)"
            )
        super().__init__(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                         scheduler=scheduler)

    def _view_inputs(self, images, conditions, height, width):
        if not isinstance(images, (list, tuple)) or len(images) == 0:
            raise ValueError("images must be a non-empty list with one first frame (or batch of them) per view")
        num_views = len(images)
        if num_views > self.transformer.config.num_views:
            raise ValueError(f"{num_views} views given, the transformer takes at most "
                             f"num_views={self.transformer.config.num_views}")
        tensors = [images_to_tensor(image, height, width) for image in images]
        shapes = {tuple(t.shape) for t in tensors}
        if len(shapes) > 1:
            raise ValueError(f"the views' first frames differ in batch size or image size: {sorted(shapes)}")
        if conditions is not None:
            if not isinstance(conditions, (list, tuple)) or len(conditions) != num_views:
                got = len(conditions) if isinstance(conditions, (list, tuple)) else type(conditions).__name__
                raise ValueError(f"conditions must be a list with one dict per view ({num_views} views), got {got}")
        return torch.stack(tensors, dim=1)  # (B, V, 3, H, W)

    @torch.no_grad()
    def __call__(
        self,
        images,
        actions,
        conditions: list[dict] | None = None,
        prompt: str | list[str] = "",
        negative_prompt: str | list[str] = "",
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 1.0,
        action_guidance_scale: float = 1.0,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
        latents: torch.Tensor | None = None,
        view_ids: torch.Tensor | list[int] | None = None,
        output_type: str = "np",
        return_dict: bool = True,
    ) -> ORVPipelineOutput | tuple:
        """Generate the ``V`` views of each sample together.

        Args:
            images: a list with one entry per view, each what :class:`ORVPipeline` takes as
                ``image`` (a first frame, or a batch of ``B``; every view the same ``B`` and size).
            actions: per-frame actions (F, D) or (B, F, D), shared by the views.
            conditions: ``None`` or a list with one ``{kind: maps}`` per view (as
                :class:`ORVPipeline` takes them).
            view_ids: the view positions of Eq. 3, (V,) or (B, V); default ``0..V-1``.
            generator: one ``torch.Generator`` for the batch.
            Other arguments as :meth:`ORVPipeline.__call__`.

        Returns frames as (B, V, F, H, W, 3) for "np", (B, V, F, 3, H, W) for "pt", latents
        (B, V, L, C, h, w) for "latent", a list (samples) of lists (views) of PIL lists for "pil".
        """
        device = self._execution_device
        dtype = self.transformer.dtype
        cfg = self.transformer.config
        if isinstance(generator, list):
            raise ValueError("pass one torch.Generator for the batch (views share the draw order)")

        pixels = self._view_inputs(images, conditions, height, width)
        batch_size, num_views, _, height, width = pixels.shape
        m = self.vae_scale_factor_spatial * cfg.patch_size
        if height % m or width % m:
            raise ValueError(f"height and width must be multiples of {m}, got {height}x{width}")
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

        # Encode text, every view's first frame and conditions; chunk-align the actions.
        prompt_embeds = self.encode_prompt(prompts, device, dtype)
        flat = pixels.flatten(0, 1)  # (B*V, 3, H, W), views of a sample adjacent
        image_latents = self.encode_video(flat[:, :, None], generator).to(device, dtype)
        c, h, w = image_latents.shape[2:]
        image_latents = torch.cat(
            [image_latents, image_latents.new_zeros(batch_size * num_views, num_latent_frames - 1, c, h, w)], dim=1
        ).reshape(batch_size, num_views, num_latent_frames, c, h, w)
        chunked = chunk_actions(frame_actions, num_latent_frames, cfg.action_chunk).to(device, dtype)
        condition_latents = None
        if conditions is not None:
            per_view = []
            for v, view_conditions in enumerate(conditions):
                try:
                    videos = conditions_to_videos(view_conditions, self.transformer.condition_kinds, batch_size,
                                                  num_frames, height, width)
                except ValueError as e:
                    raise ValueError(f"conditions of view {v}: {e}") from None
                if videos is None:
                    raise ValueError(f"conditions of view {v} are empty; give every view its maps or pass None")
                per_view.append(torch.cat([self.encode_video(videos[k], sample=False)
                                           for k in self.transformer.condition_kinds], dim=2))
            condition_latents = torch.stack(per_view, dim=1).to(device, dtype)  # (B, V, L, k*C, h, w)

        # Guidance branches stacked on the batch: cond, no-action, no-text.
        use_action_cfg, use_text_cfg = action_guidance_scale != 1.0, guidance_scale != 1.0
        branch_text, branch_null = [prompt_embeds], [torch.zeros(batch_size, dtype=torch.bool)]
        if use_action_cfg:
            branch_text.append(prompt_embeds)
            branch_null.append(torch.ones(batch_size, dtype=torch.bool))
        if use_text_cfg:
            branch_text.append(self.encode_prompt(negatives, device, dtype))
            branch_null.append(torch.zeros(batch_size, dtype=torch.bool))
        n = len(branch_text)
        text_in, null_in = torch.cat(branch_text), torch.cat(branch_null).to(device)
        image_in = image_latents.repeat(n, 1, 1, 1, 1, 1)
        actions_in = chunked.repeat(n, 1, 1)
        conditions_in = None if condition_latents is None else condition_latents.repeat(n, 1, 1, 1, 1, 1)
        ids_in = None if view_ids is None else view_ids.repeat(n, 1)

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (batch_size, num_views, num_latent_frames, cfg.out_channels, h, w)
        latents = self._initial_latents(latents, shape, generator, device, dtype)
        latents = self._denoise(
            latents, n, image_in, channel_dim=3,
            model_inputs=dict(encoder_hidden_states=text_in, actions=actions_in, condition_latents=conditions_in,
                              null_action_mask=null_in, view_ids=ids_in),
            guidance=(action_guidance_scale if use_action_cfg else None, guidance_scale if use_text_cfg else None),
            eta=eta, generator=generator, dtype=dtype)

        if output_type == "latent":
            video = latents
        else:
            decoded = self.decode_latents(latents.flatten(0, 1))[:, :, :num_frames]  # drop the placeholder
            video = self.video_processor.postprocess_video(video=decoded.float(), output_type=output_type)
            if output_type == "pil":
                video = [video[b * num_views : (b + 1) * num_views] for b in range(batch_size)]
            else:
                video = video.reshape(batch_size, num_views, *video.shape[1:])
        self.maybe_free_model_hooks()
        if not return_dict:
            return (video,)
        return ORVPipelineOutput(frames=video)

    def rollout(self, images, actions, conditions: list[dict] | None = None, chunk_frames: int = 16, **kwargs):
        """An episode of any length, all views together, by chained chunks; see
        :func:`.long_horizon.rollout_views`. Returns (B, V, T, H, W, 3) float in [0, 1]."""
        from orv_engine.pipelines.long_horizon import rollout_views

        return rollout_views(self, images, actions, conditions, chunk_frames=chunk_frames, **kwargs)

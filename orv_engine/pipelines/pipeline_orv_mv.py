"""ORV-MV inference: the first frames of ``V`` views + one action sequence (+ per-view
conditions) -> ``V`` videos of the episode, denoised together so they agree.

Why a subclass of :class:`ORVPipeline`: the components, encoders, scheduler loop, guidance
and the generation itself (``ORVPipeline._generate``, which always has a views axis) are the
single-view pipeline's; this class takes a list of views and a
:class:`ORVMultiViewTransformer3DModel`.
All views of a sample share the timestep, the noise schedule, the text and the actions
(the robot does one thing, seen from ``V`` cameras); each view has its own first frame,
noise and condition maps (the reference view's occupancy rendered from that camera, see
:mod:`orv_engine.occupancy.side_views`).
"""

from __future__ import annotations

import torch

from orv_engine.models.transformer_orv_mv import ORVMultiViewTransformer3DModel
from orv_engine.pipelines import long_horizon
from orv_engine.pipelines.pipeline_orv import ORVPipeline, ORVPipelineOutput


class ORVMultiViewPipeline(ORVPipeline):
    transformer_class = ORVMultiViewTransformer3DModel

    def __init__(self, tokenizer, text_encoder, vae, transformer: ORVMultiViewTransformer3DModel, scheduler):
        if not isinstance(transformer, ORVMultiViewTransformer3DModel):
            raise TypeError(
                f"transformer must be an ORVMultiViewTransformer3DModel, got {type(transformer).__name__}; build one "
                "from a single-view model with ORVMultiViewTransformer3DModel.from_single_view(model)"
            )
        super().__init__(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                         scheduler=scheduler)

    # The signature is ORVPipeline.__call__'s with a list of views and ``view_ids`` (a deliberate
    # override: callers see every argument); both call the one ``ORVPipeline._generate``.
    @torch.no_grad()
    def __call__(
        self,
        images,
        actions,
        conditions: list[dict] | None = None,
        prompt: str | list[str] | None = None,
        negative_prompt: str | list[str] = "",
        height: int | None = None,
        width: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
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
            conditions: ``None`` or a list with one ``{kind: images}`` per view (as
                :class:`ORVPipeline` takes them).
            view_ids: the view positions of Eq. 3, (V,) or (B, V); default ``0..V-1``.
            generator: one ``torch.Generator`` for the batch.
            Other arguments as :meth:`ORVPipeline.__call__`.

        Returns frames as (B, V, F, H, W, 3) for "np", (B, V, F, 3, H, W) for "pt", latents
        (B, V, L, C, h, w) for "latent", a list (samples) of lists (views) of PIL lists for "pil".
        """
        video = self._generate(images, actions, conditions, view_ids, prompt, negative_prompt, height, width,
                               num_inference_steps, guidance_scale, action_guidance_scale, eta, generator, latents,
                               output_type)
        if not return_dict:
            return (video,)
        return ORVPipelineOutput(frames=video)

    def rollout(self, images, actions, conditions: list[dict] | None = None, chunk_frames: int = 16, **kwargs):
        """An episode of any length, all views together, by chained chunks; see
        :func:`.long_horizon.rollout_views`. Returns (B, V, T, H, W, 3) float in [0, 1]."""
        return long_horizon.rollout_views(self, images, actions, conditions, chunk_frames=chunk_frames, **kwargs)

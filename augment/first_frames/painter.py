"""Paint new first frames with diffusers' ``FluxControlNetPipeline``.

The source episode's first-step depth and semantic maps (rendered from its occupancy, the
same maps the rollout is conditioned on) become the control images; an appearance prompt
and a seed pick the look. One ControlNet uses ``FluxControlNetModel`` directly; several
(depth + semantics) go through ``FluxMultiControlNetModel``, each with its own scale.
XLabs-style ControlNets (``input_hint_block``: the control image enters in pixel space, as
the XLabs depth ControlNet the paper uses) and InstantX-style ones (control image through
the VAE) both work, each set of one family: the pipeline decides from the first net, so a
mixed set is refused before loading (:mod:`augment.first_frames.controlnets`).

Real checkpoints (local): FLUX.1-dev as a folder; a ControlNet as a diffusers folder or one
of XLabs' released ``.safetensors`` files (converted in memory, rotary axes from FLUX's
transformer config); on a GPU load them in bfloat16 (``dtype`` in the config).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from diffusers import FluxControlNetPipeline, FluxMultiControlNetModel
from PIL import Image

from augment.first_frames.controlnets import (controlnet_config, controlnet_set_problem, flux_axes_dims_rope,
                                              load_controlnet)
from orv_engine.weight_files import check_weight_files
from orv_engine.config_validation import ConfigError
from orv_engine.occupancy.condition_images import depth_image, semantic_image


def control_images_for(maps: dict[str, np.ndarray], kinds, height: int, width: int) -> list[Image.Image]:
    """``{"depth": (H, W), "semantics": (H, W)}`` of the first step -> one RGB PIL image per kind.

    Depth follows the convention of the depth ControlNets (near = bright, MiDaS-like); the
    images are resized to the FLUX resolution here (nearest for labels).
    """
    out = []
    for kind in kinds:
        if kind not in maps:
            raise KeyError(f"no {kind!r} map for the first frame (have {', '.join(maps)})")
        rgb = depth_image(maps[kind][None])[0] if kind == "depth" else semantic_image(maps[kind][None])[0]
        resample = Image.BILINEAR if kind == "depth" else Image.NEAREST
        out.append(Image.fromarray(rgb).resize((width, height), resample))
    return out


class FirstFramePainter:
    """Holds the FLUX ControlNet pipeline; :meth:`paint` makes one first frame."""

    def __init__(self, flux_path, controlnets, device: str = "cpu", dtype: torch.dtype = torch.float32,
                 num_inference_steps: int = 28, guidance_scale: float = 3.5, max_sequence_length: int = 512):
        self.kinds = [cn.condition for cn in controlnets]
        self.scales = [float(cn.scale) for cn in controlnets]
        axes_dims_rope = flux_axes_dims_rope(flux_path)
        names = [f"first_frames.controlnets[{i}] ({cn.path})" for i, cn in enumerate(controlnets)]
        problem = controlnet_set_problem([controlnet_config(cn.path, axes_dims_rope) for cn in controlnets], names)
        if problem:
            raise ConfigError(f"first_frames.controlnets: {problem}")
        check_weight_files(flux_path)
        nets = [load_controlnet(cn.path, dtype, axes_dims_rope) for cn in controlnets]
        controlnet = nets[0] if len(nets) == 1 else FluxMultiControlNetModel(nets)
        self.pipe = FluxControlNetPipeline.from_pretrained(Path(flux_path), controlnet=controlnet, dtype=dtype)
        self.pipe.to(device)
        self.pipe.set_progress_bar_config(disable=True)
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.max_sequence_length = max_sequence_length

    @property
    def size_multiple(self) -> int:
        return self.pipe.vae_scale_factor * 2  # latents are packed 2x2 into tokens

    def paint(self, maps: dict[str, np.ndarray], prompt: str, seed: int, height: int, width: int) -> np.ndarray:
        """(height, width, 3) uint8 first frame for ``prompt`` under the first-step ``maps``."""
        m = self.size_multiple
        h, w = max(m, round(height / m) * m), max(m, round(width / m) * m)
        controls = control_images_for(maps, self.kinds, h, w)
        multi = len(controls) > 1
        generator = torch.Generator("cpu").manual_seed(int(seed))
        image = self.pipe(
            prompt=prompt,
            control_image=controls if multi else controls[0],
            controlnet_conditioning_scale=self.scales if multi else self.scales[0],
            height=h, width=w,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            max_sequence_length=self.max_sequence_length,
            generator=generator,
            output_type="np",
        ).images[0]
        frame = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
        if frame.shape[:2] != (height, width):
            frame = np.asarray(Image.fromarray(frame).resize((width, height), Image.BICUBIC))
        return frame

"""New first frames from rendered depth/semantics: FLUX.1-dev + XLabs-style ControlNets."""

from augment.first_frames.painter import FirstFramePainter, control_images_for

__all__ = ["FirstFramePainter", "control_images_for"]

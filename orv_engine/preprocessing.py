"""What a checkpoint expects of its inputs, recorded in its config so no user has to know.

Why a top-level module: the data code (and the side venvs that read clips, without
diffusers) uses its vocabulary; it imports nothing beyond the standard library.

Why in the transformer's config: a world model computes what it was trained to compute
only on inputs prepared the way its training data was. The official ORV weights take
end-effector-frame action deltas recomputed from the robot states and scaled by 20,
condition images in their own value ranges encoded as VAE posterior samples, 17 real
frames at 320x480 (Bridge) and are sampled with CogVideoX's DPM solver (trailing spacing,
50 steps, no guidance, empty prompt); this project's own checkpoints take the dataset's
actions and its own condition images. The pipeline, the trainer, ``orv-augment`` and
``orv-eval`` read :class:`ORVPreprocessing` from ``transformer.config.preprocessing``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

ACTION_CONVENTIONS = ("dataset", "eef-frame")
CONDITION_ENCODINGS = ("engine", "orv-official")
SCHEDULERS = ("CogVideoXDPMScheduler", "CogVideoXDDIMScheduler")
TIMESTEP_SPACINGS = ("trailing", "leading", "linspace")
# Upstream multiplies the 6 arm dimensions by 20 and keeps the gripper state as it is.
EEF_FRAME_SCALE = (20.0, 20.0, 20.0, 20.0, 20.0, 20.0, 1.0)


@dataclass(frozen=True)
class ORVPreprocessing:
    """Input conventions of one checkpoint.

    action_convention: "dataset" (the episode's own 7-d actions, BridgeV2's convention) or
        "eef-frame" (upstream ORV: ``[R_prev^T dp, euler(R_prev^T R), gripper] * action_scale``
        recomputed from the states; :mod:`orv_engine.data.action_conventions`).
    action_scale: per-dimension factors of "eef-frame" actions.
    condition_encoding: how depth/semantic maps become VAE inputs and latents: "engine"
        (this project's images in [-1, 1], posterior mode) or "orv-official" (depth
        ``clamp(d, 0.01, 0.4) * 2.5`` and a 60-colour palette in [0, 1], posterior sample).
    num_frames: video frames of one training clip, the first included (4k + 1).
    placeholder_frame: the clip's last frame was a copy of the one before (this project's
        8N real frames + 1) rather than a real frame (upstream: all 4k + 1 real).
    height, width: the training resolution in pixels.
    scheduler, timestep_spacing, num_inference_steps, guidance_scale: sampler defaults.
    prompt: the text the model was trained with: a fixed prompt ("" for the official
        weights) or ``None`` for each episode's instruction.
    """

    action_convention: str = "dataset"
    action_scale: tuple[float, ...] | None = None
    condition_encoding: str = "engine"
    num_frames: int = 17
    placeholder_frame: bool = True
    height: int = 320
    width: int = 480
    scheduler: str = "CogVideoXDPMScheduler"
    timestep_spacing: str = "trailing"
    num_inference_steps: int = 50
    guidance_scale: float = 1.0
    prompt: str | None = ""

    def __post_init__(self):
        def choice(name, allowed):
            if getattr(self, name) not in allowed:
                raise ValueError(f"preprocessing.{name}: expected one of {allowed}, got {getattr(self, name)!r}")

        choice("action_convention", ACTION_CONVENTIONS)
        choice("condition_encoding", CONDITION_ENCODINGS)
        choice("scheduler", SCHEDULERS)
        choice("timestep_spacing", TIMESTEP_SPACINGS)
        if self.action_scale is not None:
            object.__setattr__(self, "action_scale", tuple(float(x) for x in self.action_scale))
            if len(self.action_scale) != 7:
                raise ValueError(f"preprocessing.action_scale: expected 7 factors, got {len(self.action_scale)}")
        if self.num_frames < 5 or (self.num_frames - 1) % 4:
            raise ValueError(f"preprocessing.num_frames: expected 4k + 1 frames (5, 9, 13, 17, ...), got {self.num_frames}")
        for name in ("height", "width", "num_inference_steps"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"preprocessing.{name}: expected a positive integer, got {getattr(self, name)!r}")

    def prompt_for(self, instruction: str) -> str:
        """The prompt to generate an episode with: the fixed one, or its instruction."""
        return instruction if self.prompt is None else self.prompt

    @property
    def num_actions(self) -> int:
        """Per-frame actions of one clip: one per frame after the first."""
        return self.num_frames - 1

    def to_dict(self) -> dict:
        out = asdict(self)
        out["action_scale"] = None if self.action_scale is None else list(self.action_scale)
        return out

    @classmethod
    def from_dict(cls, values: dict | None) -> "ORVPreprocessing":
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"preprocessing: unknown keys {unknown}; known: {sorted(known)}")
        return cls(**values)


def to_vae_range(images, encoding: str):
    """Condition images in [0, 1] (numpy or torch) -> what the VAE receives under ``encoding``:
    ``[-1, 1]`` for "engine" (like video frames), unchanged for "orv-official"."""
    if encoding not in CONDITION_ENCODINGS:
        raise ValueError(f"encoding must be one of {', '.join(map(repr, CONDITION_ENCODINGS))}, got {encoding!r}")
    return images * 2 - 1 if encoding == "engine" else images


def upstream_preprocessing(sample_height: int, sample_width: int, sample_frames: int,
                           vae_scale_factor: int = 8) -> ORVPreprocessing:
    """What the official ORV checkpoints were trained on (OrangeSodahub/ORV ``orv/dataset``,
    ``config/base_train.yaml`` / ``base_eval.yaml``), at the size their config records
    (latent ``sample_height x sample_width``, ``sample_frames`` video frames)."""
    return ORVPreprocessing(
        action_convention="eef-frame",
        action_scale=EEF_FRAME_SCALE,
        condition_encoding="orv-official",
        num_frames=int(sample_frames),
        placeholder_frame=False,
        height=int(sample_height) * vae_scale_factor,
        width=int(sample_width) * vae_scale_factor,
        scheduler="CogVideoXDPMScheduler",
        timestep_spacing="trailing",
        num_inference_steps=50,
        guidance_scale=1.0,
        prompt="",
    )

"""The small painter (issue [small-painter]): a small FLUX + two XLabs-style ControlNets
(depth, semantics) trained here on the appearance-randomised simulated scenes of the small ORV.

The shipped folder ``orv_engine/pretrained/small_painter`` holds

- ``flux/``: a FLUX.1 pipeline folder (``scheduler/``, ``text_encoder/`` (CLIP),
  ``text_encoder_2/`` (T5), ``tokenizer/``, ``tokenizer_2/``, ``transformer/``, ``vae/``) that
  ``FluxControlNetPipeline.from_pretrained`` loads, float16;
- ``controlnet-depth/``, ``controlnet-semantics/``: diffusers ``FluxControlNetModel`` folders;
- ``controlnet-depth.safetensors``, ``controlnet-semantics.safetensors``: the same nets in
  XLabs' native single-file format (x-flux ``ControlNetFlux`` keys), loadable through
  :mod:`orv_engine.models.xlabs_controlnet` like XLabs' released files;
- ``heldout.npz``: a few held-out first frames with their maps and prompts, for the CI test.

Paint with the first-frame stage (``augment.first_frames.FirstFramePainter``) at 64x64 with
``max_sequence_length`` :data:`MAX_SEQUENCE_LENGTH` (the T5 length it was trained with).

Modules: :mod:`.data` (frames + occupancy maps + prompts), :mod:`.models` (the diffusers
classes at tiny sizes, the XLabs export), :mod:`.train` (the stages), :mod:`.metrics`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from orv_engine.sim.appearance import PROMPT_PARTS, sample_appearance

SMALL_PAINTER_DIR = Path(__file__).resolve().parents[2] / "pretrained" / "small_painter"
KINDS = ("depth", "semantics")
SIZE = 64
MAX_SEQUENCE_LENGTH = 64  # = models.MAX_SEQUENCE_LENGTH (not imported: that loads diffusers)
NUM_INFERENCE_STEPS = 20
# ControlNet scales when both nets paint together (each was trained alone at scale 1): on 15
# held-out scenes 1 / 1 followed the maps best (1-px F1 0.517 vs 0.497 at 0.7 / 0.7, 0.488 at
# 0.5 / 0.5) at a PSNR within 0.25 dB (docs/small_painter.md)
DEFAULT_SCALES = {"depth": 1.0, "semantics": 1.0}
HELDOUT_FILE = "heldout.npz"
PROMPT_TEMPLATE = "{appearance}"  # the painter knows its training prompts' words only (models.prompt_words)
DEMO_PROMPT_SEED = 2026
# An "open" prompt names the objects only: the painter was trained with parts of the description
# left out (``prompt_part_dropout``), so it paints table, floor and light differently per seed
OPEN_PROMPT_PARTS = ("objects",)


def appearance_prompts(count: int = 4, seed: int = DEMO_PROMPT_SEED, parts=PROMPT_PARTS) -> list[str]:
    """New looks in the words the painter was trained on: ``count`` appearances drawn as the
    simulator draws them (``orv_engine.sim.appearance.sample_appearance``), described by
    ``Appearance.prompt(parts)`` (e.g. "a robot arm above a beige table, dark green floor; a red
    cube, ... and a blue towel on the table; soft light from the left"; with
    :data:`OPEN_PROMPT_PARTS` "a robot arm above a table; a red cube, ... on the table")."""
    rng = np.random.default_rng(seed)
    return [sample_appearance(rng).prompt(parts) for _ in range(count)]


def painter_paths(root: str | Path = SMALL_PAINTER_DIR, single_file: bool = False) -> dict:
    """``{"flux": folder, "depth": net, "semantics": net}``; ``single_file``: the XLabs files."""
    root = Path(root)
    nets = {k: root / (f"controlnet-{k}.safetensors" if single_file else f"controlnet-{k}") for k in KINDS}
    return {"flux": root / "flux", **nets}


def small_painter_available(root: str | Path = SMALL_PAINTER_DIR) -> bool:
    paths = painter_paths(root)
    return ((paths["flux"] / "model_index.json").is_file()
            and all((paths[k] / "config.json").is_file() for k in KINDS))

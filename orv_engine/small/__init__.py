"""The small ORV trained here (issue [small-orv]): where its shipped weights live and what
its four ablation variants are.

The shipped folder ``orv_engine/pretrained/small_orv`` is an ``ORVPipeline`` folder (``vae/``,
``text_encoder/``, ``tokenizer/``, ``scheduler/``, ``transformer/`` = variant (c), the
default world model of ``make demo``) plus the other variants' transformer folders under
``variants/<name>/`` and a few held-out clips under ``heldout/`` for the CI test. Every part
loads through the same ``from_pretrained`` code as the released checkpoints. The repository
holds (b) and (c) with the VAE (:data:`PACKAGED_VARIANTS`, the issue's 30 MB budget); all four
are in ``outputs/small/shipped`` after ``make reproduce-small`` (the benchmark's ``--weights``).

Variants (paper Sec. 4.4 / Table 7 in miniature), same budget and seeds:
  (a) ``no_actions``         the null action token only
  (b) ``actions``            stage 1: actions
  (c) ``actions_occupancy``  stage 2 from (b): actions + depth + semantics rendered from the
                             4D occupancy (Occ2GS, the paper's "coarse" maps)
  (d) ``actions_fine``       like (c) with the simulator's own depth/segmentation ("fine")
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

SMALL_ORV_DIR = Path(__file__).resolve().parents[1] / "pretrained" / "small_orv"
ConditionSource = Literal["occupancy", "episode"]


@dataclass(frozen=True)
class Variant:
    name: str
    letter: str
    uses_actions: bool
    conditions: ConditionSource | None  # None: no visual conditions
    subfolder: str  # inside the shipped folder

    def transformer_path(self, root: str | Path = SMALL_ORV_DIR) -> Path:
        return Path(root) / self.subfolder


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("no_actions", "a", False, None, "variants/no_actions"),
    Variant("actions", "b", True, None, "variants/actions"),
    Variant("actions_occupancy", "c", True, "occupancy", "transformer"),
    Variant("actions_fine", "d", True, "episode", "variants/actions_fine"),
)}
CONDITION_KINDS = ("depth", "semantics")
# What the repository ships (3 variants of 4.8 M parameters in float16 would not fit 30 MB).
PACKAGED_VARIANTS = ("actions", "actions_occupancy")


def present_variants(root: str | Path = SMALL_ORV_DIR) -> list[str]:
    """The variants whose transformer folder is under ``root``, in :data:`VARIANTS` order."""
    return [name for name, v in VARIANTS.items() if (v.transformer_path(root) / "config.json").is_file()]


def small_orv_available(root: str | Path = SMALL_ORV_DIR, variants=PACKAGED_VARIANTS) -> bool:
    """The pipeline parts and the ``variants`` (default: the packaged ones) are under ``root``."""
    root = Path(root)
    parts = [root / "model_index.json", root / "vae", root / "scheduler"]
    return all(p.exists() for p in parts) and set(variants) <= set(present_variants(root))

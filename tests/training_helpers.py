"""Helpers of the training tests: a tiny random-weight pipeline folder and tiny run configs."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = PROJECT_ROOT / "configs" / "tiny.yaml"
TINY_STAGE2_CONFIG = PROJECT_ROOT / "configs" / "tiny_stage2.yaml"
SIM_DATA = PROJECT_ROOT / "orv_engine" / "demo_data" / "orv_tabletop" / "1.0.0"


def tiny_overrides(model_dir: Path, data_path: Path, latents_dir: Path, output_dir: Path, **extra) -> list[str]:
    """``--set`` strings that point configs/tiny.yaml at test folders (quiet, no validation)."""
    values = {
        "model.pretrained_path": model_dir,
        "data.path": data_path,
        "data.latents_dir": latents_dir,
        "output_dir": output_dir,
        "tracker": "none",
        "validation.every": 0,
        **extra,
    }
    return [f"{k}={v}" for k, v in values.items()]

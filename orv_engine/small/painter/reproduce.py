"""The painter's stages of ``make reproduce-small`` (:mod:`orv_engine.small.reproduce` runs them
after the small ORV's; each resumes after a kill):

  painter_data   first frames (val) and every 5th frame (train) of the small ORV's episodes
                 with their occupancy-rendered maps and appearance prompts -> outputs/small_painter/data
  painter        orv_engine.small.painter.train configs/small_painter/painter.yaml: VAE, base
                 FLUX (one CPU thread), the two ControlNets (side by side, one thread each),
                 assembled float16 into outputs/small_painter/shipped
  painter_ship   with --ship: outputs/small_painter/shipped + 8 held-out scenes -> orv_engine/pretrained/small_painter
  painter_eval   benchmarks/small_painter.py -> outputs/small_painter/benchmark.json (+ sheet.png)
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from orv_engine.small.painter import HELDOUT_FILE, SMALL_PAINTER_DIR
from orv_engine.small.painter.data import write_heldout
from orv_engine.small.subprocesses import run_parallel

ROOT = Path(__file__).resolve().parents[3]
OUT = Path("outputs/small_painter")
CONFIG = ROOT / "configs" / "small_painter" / "painter.yaml"
STAGES = ("painter_data", "painter", "painter_ship", "painter_eval")
SHIPPED_HELDOUT_SCENES = 8


def stage_painter_data(dataset: Path) -> bool:
    if (OUT / "data" / "train.npz").is_file() and (OUT / "data" / "val.npz").is_file():
        return False
    run_parallel([[sys.executable, "-m", "orv_engine.small.painter.data", str(dataset), str(OUT / "data")]])
    return True


def stage_painter() -> bool:
    if (OUT / "shipped" / "controlnet-semantics.safetensors").is_file():
        return False
    train = [sys.executable, "-m", "orv_engine.small.painter.train", str(CONFIG), "--only"]
    run_parallel([train + ["vae,encode,base"]])
    # the two ControlNets need only the frozen base: one process (one thread) each, side by side
    run_parallel([train + ["controlnet", "--kinds", kind] for kind in ("depth", "semantics")])
    run_parallel([train + ["assemble"]])
    return True


def stage_painter_ship(copy_into_package: bool) -> bool:
    shipped = OUT / "shipped"
    if not (shipped / HELDOUT_FILE).is_file():
        write_heldout(OUT / "data" / "val.npz", shipped / HELDOUT_FILE, SHIPPED_HELDOUT_SCENES)
    if not copy_into_package:
        return False
    shutil.rmtree(SMALL_PAINTER_DIR, ignore_errors=True)
    shutil.copytree(shipped, SMALL_PAINTER_DIR)
    size = sum(f.stat().st_size for f in SMALL_PAINTER_DIR.rglob("*") if f.is_file())
    print(f"copied {shipped} -> {SMALL_PAINTER_DIR} ({size / 1e6:.1f} MB)")
    return True


def stage_painter_eval() -> bool:
    run_parallel([[sys.executable, "-m", "benchmarks.small_painter", "--weights", str(OUT / "shipped"),
                   "--data", str(OUT / "data" / "val.npz"), "--json", str(OUT / "benchmark.json"),
                   "--sheet", str(OUT / "sheet.png")]], threads_each=2)
    return True

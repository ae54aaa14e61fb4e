"""``make reproduce-small``: regenerate the small ORV from nothing, resumably.

    python -m orv_engine.small.reproduce                    # everything, then the ablation table
    python -m orv_engine.small.reproduce --only data,vae    # some stages
    python -m orv_engine.small.reproduce --ship             # also copy the result into the package

Stages, each skipped when its output is complete and resumed from its last checkpoint when
it was interrupted (kill it at any point and run the same command again):

  data     orv-sim: 300 train + 60 held-out appearance-randomised WidowX episodes, 64x64
  vae      orv-vae-train configs/small/vae.yaml, then its warm restart configs/small/vae_restart.yaml
  init     the restarted VAE + a tiny T5 + a fresh `small` ORV transformer -> outputs/small/init
  latents  orv-train --pre-encode for (c)'s coarse and (d)'s fine condition stores (in parallel)
  stage1   orv-train (a) no_actions and (b) actions, in parallel (one CPU thread each)
  stage2   orv-train (c) actions_occupancy and (d) actions_fine from (b)'s step-3000 checkpoint
  ship     the four variants + VAE as float16 -> outputs/small/shipped (and, with --ship, the VAE,
           (b) and (c) into orv_engine/pretrained/small_orv), with 8 held-out clips for the CI test
  eval     benchmarks/small_ablation.py -> outputs/small/ablation.json

and then the small painter's (issue [small-painter], :mod:`orv_engine.small.painter.reproduce`):

  painter_data  frames + occupancy maps + appearance prompts -> outputs/small_painter/data
  painter       the small FLUX (VAE, transformer, text encoders) and its depth/semantics
                XLabs-style ControlNets -> outputs/small_painter/shipped
  painter_ship  8 held-out scenes for the CI test (and, with --ship, the folder into
                orv_engine/pretrained/small_painter)
  painter_eval  benchmarks/small_painter.py -> outputs/small_painter/benchmark.json

Wall time per stage is appended to ``outputs/small/reproduce_times.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from orv_engine.small import PACKAGED_VARIANTS, SMALL_ORV_DIR, VARIANTS
from orv_engine.small.painter import reproduce as painter
from orv_engine.small.subprocesses import run_parallel

ROOT = Path(__file__).resolve().parents[2]  # the project (configs/ and benchmarks/ live there)
OUT = Path("outputs/small")
DATA = OUT / "data" / "orv_tabletop" / "1.0.0"
CONFIGS = ROOT / "configs" / "small"
VAE_FINAL = OUT / "vae_continued" / "final" / "vae"  # configs/small/vae_restart.yaml
STAGE1_STEP = 3000  # (b)'s checkpoint that (c) and (d) start from (configs/small/actions_*.yaml)
STAGES = ("data", "vae", "init", "latents", "stage1", "stage2", "ship", "eval", *painter.STAGES)


def _bin(name: str) -> str:
    return str(Path(sys.executable).with_name(name))


def _train(config: str, *extra: str) -> list[str]:
    return [_bin("orv-train"), str(CONFIGS / config), "--resume", "latest", *extra]


def _done_training(output_dir: Path) -> bool:
    return (output_dir / "final" / "transformer" / "config.json").is_file()


def stage_data() -> bool:
    if (DATA / "dataset_info.json").is_file():
        return False
    shutil.rmtree(OUT / "data", ignore_errors=True)  # a killed generation leaves partial shards
    os.environ.setdefault("MS_ASSET_DIR", str(ROOT.parent / "shared" / "data" / "maniskill"))
    run_parallel([[_bin("orv-sim"), "generate", "--appearance", "randomized", "--episodes", "300",
                    "--val-episodes", "60", "--size", "64", "--jpeg-quality", "95", "--seed", "1000",
                    "--out", str(OUT / "data")]], threads_each=2)
    return True


def stage_vae() -> bool:
    """configs/small/vae.yaml, then its warm restart configs/small/vae_restart.yaml (-> VAE_FINAL)."""
    worked = False
    for config, final in (("vae.yaml", OUT / "vae" / "final" / "vae"), ("vae_restart.yaml", VAE_FINAL)):
        if not (final / "config.json").is_file():
            run_parallel([[_bin("orv-vae-train"), str(CONFIGS / config), "--resume", "latest"]], threads_each=2)
            worked = True
    return worked


def stage_init() -> bool:
    if (OUT / "init" / "model_index.json").is_file():
        return False
    from orv_engine.small.build import write_init_pipeline  # lazy: loads diffusers

    write_init_pipeline(VAE_FINAL, OUT / "init")
    return True


def stage_latents() -> bool:
    todo = [name for name in ("occupancy", "fine") if not (OUT / "latents" / name / "index.json").is_file()]
    if not todo:
        return False
    configs = {"occupancy": "actions_occupancy.yaml", "fine": "actions_fine.yaml"}
    # the stores need only the VAE: start from init's transformer, not (b)'s (not trained yet)
    run_parallel([[_bin("orv-train"), str(CONFIGS / configs[n]), "--pre-encode", "--set",
                    "model.transformer_path=null"] for n in todo], threads_each=1)
    return True


def stage_stage1() -> bool:
    todo = [v for v in ("no_actions", "actions") if not _done_training(OUT / v)]
    if todo:
        run_parallel([_train(f"{v}.yaml") for v in todo], threads_each=1)
    return bool(todo)


def stage_stage2() -> bool:
    todo = [v for v in ("actions_occupancy", "actions_fine") if not _done_training(OUT / v)]
    if todo:
        run_parallel([_train(f"{v}.yaml") for v in todo], threads_each=1)
    return bool(todo)


def stage_ship(copy_into_package: bool = False) -> bool:
    from orv_engine.small.build import assemble_shipped  # lazy: loads diffusers
    from orv_engine.small.heldout import write_shipped_heldout

    shipped = OUT / "shipped"
    if not (shipped / "model_index.json").is_file():
        transformers = {name: OUT / name / "final" / "transformer" for name in VARIANTS}
        assemble_shipped(OUT / "init", VAE_FINAL, transformers, shipped)
        write_shipped_heldout(DATA, shipped / "heldout" / "clips.npz")
    if copy_into_package:  # the pipeline parts, the held-out clips and the packaged variants only
        left_out = [VARIANTS[name].subfolder for name in VARIANTS if name not in PACKAGED_VARIANTS]
        shutil.rmtree(SMALL_ORV_DIR, ignore_errors=True)
        shutil.copytree(shipped, SMALL_ORV_DIR, ignore=lambda folder, names: [
            n for n in names if (Path(folder) / n).relative_to(shipped).as_posix() in left_out])
        size = sum(f.stat().st_size for f in SMALL_ORV_DIR.rglob("*") if f.is_file())
        print(f"copied {shipped} -> {SMALL_ORV_DIR} ({', '.join(PACKAGED_VARIANTS)}; {size / 1e6:.1f} MB)")
    return True


def stage_eval() -> bool:
    run_parallel([[sys.executable, "-m", "benchmarks.small_ablation", "--weights", str(OUT / "shipped"),
                    "--data", str(DATA), "--json", str(OUT / "ablation.json")]], threads_each=2)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="reproduce-small", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", default=",".join(STAGES), help=f"comma-separated stages ({', '.join(STAGES)})")
    parser.add_argument("--ship", action="store_true", help=f"copy the result into {SMALL_ORV_DIR}")
    args = parser.parse_args(argv)
    wanted = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = [s for s in wanted if s not in STAGES]
    if unknown:
        parser.error(f"unknown stage(s) {', '.join(unknown)}; stages: {', '.join(STAGES)}")
    OUT.mkdir(parents=True, exist_ok=True)
    run = {"data": stage_data, "vae": stage_vae, "init": stage_init, "latents": stage_latents,
           "stage1": stage_stage1, "stage2": stage_stage2, "ship": lambda: stage_ship(args.ship), "eval": stage_eval,
           "painter_data": lambda: painter.stage_painter_data(DATA), "painter": painter.stage_painter,
           "painter_ship": lambda: painter.stage_painter_ship(args.ship), "painter_eval": painter.stage_painter_eval}
    for stage in STAGES:
        if stage not in wanted:
            continue
        print(f"== reproduce-small: {stage}", flush=True)
        t0 = time.perf_counter()
        worked = run[stage]()
        seconds = time.perf_counter() - t0
        with open(OUT / "reproduce_times.jsonl", "a") as f:
            f.write(json.dumps({"stage": stage, "seconds": round(seconds, 1), "worked": worked,
                                "at": time.strftime("%Y-%m-%dT%H:%M:%S")}) + "\n")
        print(f"== {stage}: {'done' if worked else 'already complete'} in {seconds:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

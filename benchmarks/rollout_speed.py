"""Cheaper rollouts at the same quality (issue [fast-rollouts]): samplers, steps, guidance,
diffusers' cache hooks, batching, VAE slicing/tiling and ``torch.compile`` on the shipped small
ORV, against the 50-step CogVideoX DPM reference, over held-out clips; then the projection of
the reference and the ``fast`` preset to the real 2B model on an H100 (:mod:`augment.gpu_cost`).

Model and clips: variant (c) ``actions_occupancy`` of ``orv_engine/pretrained/small_orv`` with
its coarse (occupancy) maps, the first ``--clips`` held-out clips of ``--heldout`` (default
``outputs/small/heldout_val.npz``, the v4 ablation's 100 clips; the 8 shipped ones when it is
absent), one CPU generator per clip seeded ``seed + clip index`` (so a clip gets the same noise
at every batch size), float32 on CPU.

Columns, per configuration:

- ``forwards``: transformer forward evaluations per rollout (steps x guidance branches),
  counted with a forward hook;
- ``flops``: FLOPs per rollout (transformer; the rest: T5, VAE encode/decode; total), counted
  by ``torch.utils.flop_counter.FlopCounterMode`` (2 per multiply-add over matmuls,
  convolutions and attention): without a cache hook one captured transformer evaluation of the
  timed run times the counted evaluations; with one, a whole rollout of clip 0 (skipped work
  is then not counted);
- ``compute_ratio``: the reference's transformer FLOPs / this configuration's;
- ``seconds`` and ``wall_ratio``: CPU wall time of all clips (batched ``--batch-size`` per
  pipeline call, 1 thread) and the reference's / this one's, against the reference timed in the
  same run (``REFERENCE`` or its ``timing`` repeat; none: no ratio); ``cpu_seconds`` / ``cpu_ratio``:
  the same with this process's CPU time (``time.process_time``), which the load of other
  processes on a shared CPU does not inflate (``run_id`` says which run measured a row);
- ``psnr`` / ``ssim``: against ground truth, frames 1..16, with the project's metric code
  (:func:`orv_engine.small.evaluate.score_clip`); ``psnr_loss`` / ``ssim_loss``: the
  reference's minus this one's; ``psnr_vs_ref`` / ``ssim_vs_ref``: against the reference's
  own rollout of the clip (:mod:`orv_engine.evaluation.psnr_ssim`).

Resumable: each configuration's figures are written to ``--out/rows/NAME.json`` as it finishes
and a rerun skips the done ones (``--redo NAME`` redoes one); the reference's videos are kept in
``--out/reference_videos.npz``. A configuration that raises is recorded with its error.

    nohup nice -n 15 env OMP_NUM_THREADS=1 python -m benchmarks.rollout_speed --clips 50 \\
        --json outputs/fast_rollouts/rollout_speed.json > outputs/fast_rollouts/log.txt 2>&1 &
    python -m benchmarks.rollout_speed --clips 4 --only dpm50,dpm16 --out /tmp/rs   # a pilot
    python -m benchmarks.rollout_speed --table-only --json outputs/fast_rollouts/rollout_speed.json
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import uuid
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.figures import write_figures
from augment.gpu_cost import PAPER_ROLLOUT_GPU_SECONDS, projected_rollout_seconds
from orv_engine.evaluation.psnr_ssim import finite_mean, psnr_frames, ssim_frames
from orv_engine.occupancy.condition_images import encoded_condition_images
from orv_engine.pipelines.presets import PRESETS, RolloutPreset, apply_rollout_preset
from orv_engine.small import SMALL_ORV_DIR
from orv_engine.small.evaluate import _decoded_frames, load_variant_pipeline, score_clip
from orv_engine.small.heldout import load_heldout

VARIANT, SOURCE = "actions_occupancy", "occupancy"
DEFAULT_HELDOUT = Path("outputs/small/heldout_val.npz")
SHIPPED_HELDOUT = SMALL_ORV_DIR / "heldout" / "clips.npz"
DEFAULT_OUT = Path("outputs/fast_rollouts")
REFERENCE = "dpm50"
ACTION_GUIDANCE = 1.5  # "guidance on": action CFG (null-action token); the small ORV's prompt is empty


@dataclass(frozen=True)
class Config:
    name: str
    group: str
    scheduler: str = "cogvideox_dpm"
    steps: int = 50
    action_guidance: float = 1.0
    cache: str | None = None
    knob: float | None = None
    batch_size: int | None = None  # None: --batch-size
    vae: str = "plain"  # plain | slicing | tiling
    compile: bool = False

    def preset(self) -> RolloutPreset:
        return RolloutPreset(self.name, self.scheduler, self.steps, self.cache, self.knob)


def configurations() -> list[Config]:
    """In the order they run: the reference and the preset first, then the rows that decide the
    preset, then the rest of the grid (so a run cut short has the most informative rows)."""
    fast = PRESETS["fast"]
    fs, fn = fast.scheduler or "cogvideox_dpm", fast.num_inference_steps or 50
    names = {"cogvideox_dpm": "dpm", "unipc": "unipc", "cogvideox_ddim": "ddim", "dpmpp_2m": "dpmpp"}

    def steps(scheduler, n):
        return Config(f"{names[scheduler]}{n}", "steps x scheduler", scheduler, n)

    def cache(name, knob):
        return Config(f"dpm20+{name}{knob}", "cache hooks", "cogvideox_dpm", 20, cache=name, knob=knob)

    def on_fast(name, knob, scheduler=fs):
        return Config(f"{names[scheduler]}{fn}+{name}{knob}", "cache hooks", scheduler, fn, cache=name, knob=knob)

    rows = [Config(REFERENCE, "reference"),
            Config("fast", "preset", fs, fn, cache=fast.cache, knob=fast.cache_knob),
            # the reference again, so that a resumed run has its own wall-time baseline
            Config(f"{REFERENCE} timing", "reference", "cogvideox_dpm", 50),
            steps("cogvideox_dpm", 20), steps("unipc", 20), steps("unipc", 12),
            on_fast("pab", 2, "unipc"), on_fast("taylorseer", 2, "unipc"), on_fast("fastercache", 2, "unipc"),
            Config(f"unipc{fn}+cfg{ACTION_GUIDANCE}", "guidance", "unipc", fn, action_guidance=ACTION_GUIDANCE),
            steps("cogvideox_ddim", 20), steps("cogvideox_dpm", 12), steps("unipc", 16), steps("unipc", 10),
            Config("fast batch1", "batching", fs, fn, batch_size=1),
            Config("fast vae slicing", "VAE", fs, fn, vae="slicing"),
            Config("fast vae tiling", "VAE", fs, fn, vae="tiling"),
            Config("fast torch.compile", "torch.compile", fs, fn, compile=True),
            on_fast("taylorseer", 2), on_fast("pab", 2),
            on_fast("first_block_cache", 0.1), on_fast("magcache", 0.1), on_fast("fastercache", 2),
            Config(f"fast+cfg{ACTION_GUIDANCE}", "guidance", fs, fn, action_guidance=ACTION_GUIDANCE),
            steps("cogvideox_dpm", 25), steps("unipc", 25), steps("cogvideox_ddim", 25),
            steps("cogvideox_dpm", 30), steps("unipc", 30), steps("cogvideox_ddim", 30),
            cache("pab", 2), cache("taylorseer", 2), cache("fastercache", 2),
            Config(f"dpm20+cfg{ACTION_GUIDANCE}", "guidance", "cogvideox_dpm", 20, action_guidance=ACTION_GUIDANCE),
            cache("pab", 3), cache("taylorseer", 3), cache("first_block_cache", 0.1), cache("magcache", 0.1),
            steps("cogvideox_dpm", 16), steps("cogvideox_dpm", 10),
            steps("dpmpp_2m", 20), steps("dpmpp_2m", 12),
            Config("fast batch4", "batching", fs, fn, batch_size=4),
            steps("cogvideox_ddim", 50), steps("unipc", 50),
            Config(f"dpm50+cfg{ACTION_GUIDANCE}", "guidance", "cogvideox_dpm", 50, action_guidance=ACTION_GUIDANCE)]
    return rows


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def row_path(out: Path, name: str) -> Path:
    return out / "rows" / (name.replace(" ", "_").replace("/", "_") + ".json")


class Bench:
    def __init__(self, clips, batch_size: int, seed: int):
        self.clips, self.batch_size, self.seed = clips, batch_size, seed
        self.pipe = None
        self.forwards = 0
        self.captured = None
        self.other_flops = None

    def load(self):
        self.pipe = load_variant_pipeline(SMALL_ORV_DIR, VARIANT, "cpu", torch.float32)
        self.pipe.transformer.register_forward_pre_hook(self._count, with_kwargs=True)
        self.pipe.transformer.register_forward_pre_hook(self._capture, with_kwargs=True)
        return self.pipe

    def _count(self, module, args, kwargs):
        hidden = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
        self.forwards += hidden.shape[0]

    def set_up(self, config: Config) -> None:
        pipe = self.pipe
        apply_rollout_preset(pipe, config.preset())
        pipe.vae.disable_slicing()
        pipe.vae.disable_tiling()
        if config.vae == "slicing":
            pipe.vae.enable_slicing()
        elif config.vae == "tiling":
            pipe.vae.enable_tiling()

    def latents(self, batch, begin: int, config: Config) -> torch.Tensor:
        pipe = self.pipe
        pre = pipe.transformer.preprocessing
        kinds = pipe.transformer.condition_kinds
        images = [encoded_condition_images(c.maps(SOURCE), kinds, pre.condition_encoding) for c in batch]
        height, width = batch[0].frames.shape[1:3]
        return pipe(
            image=np.stack([c.frames[0] for c in batch]), actions=np.stack([c.actions for c in batch]),
            conditions={k: np.stack([m[k] for m in images]) for k in kinds},
            prompt=[pre.prompt_for(c.instruction) for c in batch], height=height, width=width,
            action_guidance_scale=config.action_guidance,
            generator=[torch.Generator("cpu").manual_seed(self.seed + begin + i) for i in range(len(batch))],
            output_type="latent",
        ).frames

    def _capture(self, module, args, kwargs):
        if self.captured is None:  # the first forward's inputs, to count its FLOPs after the timed run
            self.captured = (args, dict(kwargs))

    def count_flops(self, config: Config, forwards_per_rollout: float) -> dict:
        """FLOPs per rollout, counted by ``FlopCounterMode``.

        Without a cache hook every transformer evaluation costs the same: one captured forward of
        the timed run is counted (per batch row) and multiplied by the counted evaluations per
        rollout. With a cache hook the cost varies by step, so a whole rollout of clip 0 (batch 1)
        is counted. The rest (text encoder, VAE encode/decode) is counted once, on a 1-step rollout."""
        name = type(self.pipe.transformer).__name__
        if config.cache is None and self.captured is not None:
            args, kwargs = self.captured
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                self.pipe.transformer(*args, **kwargs)
            rows = (kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]).shape[0]
            transformer = counter.get_total_flops() / rows * forwards_per_rollout
        else:
            self.forwards = 0
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                self.latents(self.clips[:1], 0, config)
            transformer = counter.get_flop_counts().get(name, {})
            transformer = sum(transformer.values())
        if self.other_flops is None:
            one_step = replace(config, name="one step", steps=1, cache=None, action_guidance=1.0)
            self.set_up(one_step)
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                self.pipe.decode_latents(self.latents(self.clips[:1], 0, one_step))
            counts = counter.get_flop_counts()
            self.other_flops = int(sum(counts["Global"].values()) - sum(counts.get(name, {}).values()))
            self.set_up(config)
        return {"transformer": int(transformer), "other": self.other_flops,
                "total": int(transformer) + self.other_flops}

    def rollouts(self, config: Config) -> tuple[list[np.ndarray], float]:
        batch_size = config.batch_size or self.batch_size
        videos = []
        self.forwards, self.captured = 0, None
        start, cpu = time.perf_counter(), time.process_time()
        with torch.no_grad():
            for begin in range(0, len(self.clips), batch_size):
                batch = self.clips[begin: begin + batch_size]
                videos += _decoded_frames(self.pipe, self.latents(batch, begin, config), batch)
        self.cpu_seconds = time.process_time() - cpu  # this process's CPU time: robust to the shared CPU's load
        return videos, time.perf_counter() - start


def score(videos, clips, reference) -> dict:
    per_clip = []
    for video, clip, ref in zip(videos, clips, reference if reference is not None else [None] * len(videos)):
        s = score_clip(video, clip)
        row = {"psnr": s.psnr, "ssim": s.ssim}
        if ref is not None:
            row["psnr_vs_ref"], _ = finite_mean(psnr_frames(video[1:], ref[1:len(video)]))
            row["ssim_vs_ref"] = float(np.mean(ssim_frames(video[1:], ref[1:len(video)])))
        per_clip.append(row)
    result = {"psnr": finite_mean([r["psnr"] for r in per_clip])[0],
              "ssim": float(np.mean([r["ssim"] for r in per_clip]))}
    if reference is not None:
        result["psnr_vs_ref"] = finite_mean([r["psnr_vs_ref"] for r in per_clip])[0]
        result["ssim_vs_ref"] = float(np.mean([r["ssim_vs_ref"] for r in per_clip]))
    result["clips"] = per_clip
    return result


def run_config(bench: Bench, config: Config, reference_videos, run_id: str) -> tuple[dict, list]:
    bench.set_up(config)
    extra = {}
    if config.compile:
        bench.pipe.transformer.compile()  # nn.Module.compile: torch.compile in place (inductor, CPU)
        t0 = time.perf_counter()
        with torch.no_grad():
            bench.latents(bench.clips[:config.batch_size or bench.batch_size], 0, config)
        extra["compile_seconds"] = time.perf_counter() - t0
    videos, seconds = bench.rollouts(config)
    forwards = bench.forwards / len(bench.clips)
    if config.compile:  # FlopCounterMode cannot see inside a compiled graph: count the same math uncompiled
        bench.captured = None
        bench.load()
        bench.set_up(replace(config, compile=False))
        with torch.no_grad():
            bench.latents(bench.clips[:1], 0, config)
    flops = bench.count_flops(config, forwards)
    row = {"config": asdict(config), "flops": flops, "forwards": forwards, "seconds": seconds,
           "cpu_seconds": bench.cpu_seconds,
           "seconds_per_rollout": seconds / len(bench.clips), "run_id": run_id,
           "clips_count": len(bench.clips), **extra, **score(videos, bench.clips, reference_videos)}
    return row, videos


def summarize(rows: dict) -> dict:
    ref = rows.get(REFERENCE)
    table = []
    for name, row in rows.items():
        if "error" in row:
            table.append({"name": name, "group": row["config"]["group"], "error": row["error"]})
            continue
        entry = {"name": name, "group": row["config"]["group"], "forwards": row["forwards"],
                 "transformer_flops": row["flops"]["transformer"], "other_flops": row["flops"]["other"],
                 "total_flops": row["flops"]["total"], "seconds": row["seconds"], "cpu_seconds": row["cpu_seconds"],
                 "seconds_per_rollout": row["seconds_per_rollout"], "psnr": row["psnr"], "ssim": row["ssim"],
                 "psnr_vs_ref": row.get("psnr_vs_ref"), "ssim_vs_ref": row.get("ssim_vs_ref"),
                 "run_id": row["run_id"], "clips": row["clips_count"]}
        if ref is not None and "error" not in ref:
            entry["compute_ratio"] = ref["flops"]["transformer"] / max(row["flops"]["transformer"], 1)
            same = row["clips_count"] == ref["clips_count"]
            # wall time: against the reference timed in the same run (the CPU's load changes between runs)
            timing = next((r for r in rows.values() if r.get("run_id") == row["run_id"] and "error" not in r
                           and r["config"]["group"] == "reference"), None)
            entry["wall_ratio"] = timing["seconds"] / row["seconds"] if same and timing else None
            entry["cpu_ratio"] = ref["cpu_seconds"] / row["cpu_seconds"] if same else None
            entry["psnr_loss"] = ref["psnr"] - row["psnr"]
            entry["ssim_loss"] = ref["ssim"] - row["ssim"]
        if "compile_seconds" in row:
            entry["compile_seconds"] = row["compile_seconds"]
        table.append(entry)
    return {"rows": table}


def figures(rows: dict, utilisation: float) -> dict:
    result = summarize(rows)
    by_name = {r["name"]: r for r in result["rows"]}
    fast, ref = by_name.get("fast"), by_name.get(REFERENCE)
    if fast and ref and "error" not in fast and "error" not in ref:
        result["fast"] = {k: fast[k] for k in ("compute_ratio", "psnr_loss", "ssim_loss", "psnr_vs_ref",
                                               "ssim_vs_ref", "wall_ratio", "cpu_ratio", "forwards", "psnr", "ssim")}
        result["fast"]["preset"] = PRESETS["fast"].to_dict()
        result["reference"] = {k: ref[k] for k in ("forwards", "psnr", "ssim", "transformer_flops")}
    projection = {name: projected_rollout_seconds(name, utilisation) for name in ("paper", "fast")}
    result["h100_seconds"] = {"reference": projection["paper"]["seconds"], "fast": projection["fast"]["seconds"],
                              "paper_reported": PAPER_ROLLOUT_GPU_SECONDS, "utilisation": utilisation,
                              # the paper's 19 s scaled by FLOPs: the projection at the paper's own efficiency
                              "paper_calibrated": {k: projection[n]["paper_calibrated_seconds"]
                                                   for k, n in (("reference", "paper"), ("fast", "fast"))},
                              "detail": projection}
    return result


def table(result: dict) -> str:
    lines = [f"{'configuration':28s} {'fwd':>4s} {'TF GFLOP':>9s} {'cmp x':>6s} {'wall x':>6s} {'cpu x':>6s} "
             f"{'PSNR':>6s} "
             f"{'SSIM':>6s} {'dPSNR':>6s} {'dSSIM':>7s} {'PSNRref':>7s} {'SSIMref':>7s}"]
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"{r['name']:28s} error: {r['error'][:90]}")
            continue
        wall, cpu = r.get("wall_ratio"), r.get("cpu_ratio")
        lines.append(f"{r['name']:28s} {r['forwards']:4.0f} {r['transformer_flops'] / 1e9:9.2f} "
                     f"{r.get('compute_ratio', float('nan')):6.2f} {wall if wall is not None else float('nan'):6.2f} "
                     f"{cpu if cpu is not None else float('nan'):6.2f} "
                     f"{r['psnr']:6.2f} {r['ssim']:6.4f} {r.get('psnr_loss', float('nan')):+6.2f} "
                     f"{r.get('ssim_loss', float('nan')):+7.4f} {r['psnr_vs_ref'] or float('nan'):7.2f} "
                     f"{r['ssim_vs_ref'] or float('nan'):7.4f}")
    h = result["h100_seconds"]
    lines.append(f"\nH100 projection (2B, 17x320x480, utilisation {h['utilisation']:.0%}): reference "
                 f"{h['reference']:.2f} s, fast {h['fast']:.2f} s per rollout; at the paper's efficiency (its "
                 f"~{h['paper_reported']:.0f} s for the reference): fast {h['paper_calibrated']['fast']:.1f} s")
    return "\n".join(lines)


def markdown(result: dict) -> str:
    """The table of docs/fast_rollouts.md."""
    lines = ["| configuration | group | transformer evals / rollout | transformer GFLOP / rollout | other GFLOP | "
             "compute ratio | CPU wall ratio | CPU time ratio | PSNR | SSIM | PSNR loss | SSIM loss | PSNR vs ref | "
             "SSIM vs ref |", "|" + "---|" * 14]
    nan = float("nan")
    for r in result["rows"]:
        if "error" in r:
            lines.append(f"| {r['name']} | {r['group']} | error: {r['error']} |" + " |" * 11)
            continue
        vs_ref = "- | -" if r["name"] == REFERENCE else f"{r['psnr_vs_ref']:.2f} | {r['ssim_vs_ref']:.4f}"
        lines.append(
            f"| {r['name']} | {r['group']} | {r['forwards']:.0f} | {r['transformer_flops'] / 1e9:.2f} | "
            f"{r['other_flops'] / 1e9:.2f} | {r.get('compute_ratio', nan):.2f} | {r.get('wall_ratio') or nan:.2f} | "
            f"{r.get('cpu_ratio') or nan:.2f} | {r['psnr']:.2f} | {r['ssim']:.4f} | {r.get('psnr_loss', nan):+.2f} | "
            f"{r.get('ssim_loss', nan):+.4f} | {vs_ref} |")
    return "\n".join(lines)


def load_rows(out: Path, names) -> dict:
    rows = {}
    for name in names:
        path = row_path(out, name)
        if path.is_file():
            rows[name] = json.loads(path.read_text())
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--heldout", default=None, help=f"held-out clips (default {DEFAULT_HELDOUT}, else the shipped 8)")
    p.add_argument("--clips", type=int, default=50)
    p.add_argument("--batch-size", type=int, default=8, help="clips per pipeline call")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=str(DEFAULT_OUT), help="per-configuration results (resumable)")
    p.add_argument("--only", default=None, help="comma-separated configuration names")
    p.add_argument("--redo", default="", help="comma-separated configuration names to redo")
    p.add_argument("--utilisation", type=float, default=0.4, help="assumed H100 utilisation of the projection")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", metavar="PATH", help="write the figures to this JSON file")
    p.add_argument("--table-only", action="store_true", help="no rollouts: tabulate the rows already in --out")
    p.add_argument("--markdown", metavar="PATH", help="also write the table as Markdown (docs/fast_rollouts.md)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    configs = configurations()
    if args.only:
        wanted = set(args.only.split(","))
        configs = [c for c in configs if c.name in wanted or c.name == REFERENCE]
    names = [c.name for c in configs]
    redo = set(filter(None, args.redo.split(",")))
    if not args.table_only:
        default = DEFAULT_HELDOUT if DEFAULT_HELDOUT.is_file() else SHIPPED_HELDOUT
        heldout = Path(args.heldout) if args.heldout else default
        clips = load_heldout(heldout)[: args.clips]
        log(f"{len(clips)} held-out clips of {heldout}; {len(configs)} configurations -> {out}")
        bench = Bench(clips, args.batch_size, args.seed)
        bench.load()
        run_id = uuid.uuid4().hex[:8]
        ref_file = out / "reference_videos.npz"
        reference_videos = None
        if ref_file.is_file() and REFERENCE not in redo:
            reference_videos = list(np.load(ref_file)["videos"])
            if len(reference_videos) != len(clips):
                raise SystemExit(f"{ref_file} holds {len(reference_videos)} clips, not {len(clips)}: use another --out")
        for config in configs:
            path = row_path(out, config.name)
            missing_reference = config.name == REFERENCE and reference_videos is None
            if path.is_file() and config.name not in redo and not missing_reference:
                continue
            log(f"{config.name} ...")
            try:
                row, videos = run_config(bench, config, reference_videos if config.name != REFERENCE else None, run_id)
                if config.name == REFERENCE:
                    reference_videos = videos
                    ref_file.parent.mkdir(parents=True, exist_ok=True)
                    np.savez_compressed(ref_file, videos=np.stack(videos))
                    row.update(score(videos, clips, videos))
            except Exception as error:  # noqa: BLE001 - recorded as the configuration's result
                row = {"config": asdict(config), "error": f"{type(error).__name__}: {error}", "run_id": run_id}
                log(f"  {config.name}: {row['error']}")
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(row, indent=1))
            if "error" not in row:
                log(f"  {config.name}: {row['forwards']} fwd, {row['flops']['transformer'] / 1e9:.2f} GFLOP, "
                    f"{row['seconds']:.0f} s, PSNR {row['psnr']:.2f} SSIM {row['ssim']:.4f}, vs ref PSNR "
                    f"{row.get('psnr_vs_ref', float('nan')):.2f}")
            gc.collect()
    result = figures(load_rows(out, names), args.utilisation)
    result["settings"] = {"variant": VARIANT, "condition_source": SOURCE, "batch_size": args.batch_size,
                          "seed": args.seed, "threads": args.threads, "dtype": "float32", "device": "cpu",
                          "action_guidance_on": ACTION_GUIDANCE, "scored_frames": [1, 16]}
    print(table(result))
    if args.markdown:
        Path(args.markdown).write_text(markdown(result) + "\n")
    if args.json:
        write_figures(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the VP² protocol: visual MPC with a world model on simulator tasks, scored and normalised.

    .venv-vp2/bin/python -m benchmarks.vp2.run --tasks robosuite/push robodesk/push_red \\
        --model orv --model-path /ckpt/orv-vp2 --episodes 100 --with-oracle --out outputs/vp2/orv

Per task and episode: a task instance is made in the simulator (seeded), the agent plans with
the model every step for ``--max-steps`` steps (VP²: 15), and the episode succeeds if the
task's score passes its threshold at any step (VP² takes the minimum score over the steps).
``--with-oracle`` runs the same instances with the simulator as the model; the normalised
score of a task is the model's success rate over the oracle's (VP²'s "normalised by
simulator"), averaged over the tasks with a non-zero oracle rate.

Bad input does not stop a run: an unknown task id, a model or planner that gives NaN or
wrongly shaped output, or any exception inside an episode is recorded on that episode
(``status`` + ``error``), counted in the summary, and the run goes on.

Writes ``<out>/summary.json``, ``<out>/episodes.csv`` and ``<out>/episodes.jsonl``, and with
``--save-frames`` a PNG strip per episode (observations, then the goal).
"""

from __future__ import annotations

import argparse
import csv
import json
import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from benchmarks.vp2.costs import build_reward
from benchmarks.vp2.envs import TASKS, SimulatorModel, UnknownTaskError, check_task, make_env
from benchmarks.vp2.planners import PLANNERS, PlanningAgent
from benchmarks.vp2.world_model import ORVWorldModel
from orv_engine.pipelines import ORVPipeline

EPISODE_FIELDS = ["model", "task", "episode", "seed", "status", "success", "best_score", "final_score",
                  "start_score", "steps", "seconds", "plan_seconds_per_step", "error"]


@dataclass
class RunConfig:
    """VP²'s defaults (vp2/scripts/configs): 15 steps, 2 context frames, horizon 10, MPPI
    with 200 samples, replanning every step, 64x64 RGB."""

    tasks: list = field(default_factory=lambda: list(TASKS))
    episodes: int = 100
    max_steps: int = 15
    num_context: int = 2
    horizon: int = 10
    planner: str = "mppi"
    num_samples: int = 200
    gamma: float = 0.05
    beta: float = 0.5
    cem_iters: int = 3
    elites_frac: float = 0.05
    init_std: list | None = None  # None: the task's VP² default (robosuite 4-d, RoboDesk 5-d)
    image_size: int = 64
    seed: int = 0
    classifier_dir: str | None = None
    mse_weight: float | None = None
    classifier_weight: float = 10.0


@dataclass
class EpisodeRecord:
    model: str
    task: str
    episode: int
    seed: int | None
    status: str = "ok"  # ok | error | unknown_task
    success: bool | None = None
    best_score: float | None = None
    final_score: float | None = None
    start_score: float | None = None
    steps: int = 0
    seconds: float = 0.0
    plan_seconds_per_step: float | None = None
    error: str | None = None


def _reward_for(task: str, config: RunConfig):
    path = None
    if config.classifier_dir:
        candidate = Path(config.classifier_dir) / f"{task.split('/', 1)[1]}.pt"
        path = candidate if candidate.is_file() else None
    return build_reward(path, config.mse_weight, config.classifier_weight)


def _planner(model, task: str, a_dim: int, config: RunConfig, seed: int):
    defaults = TASKS[task]
    init_std = config.init_std or defaults.get(f"{config.planner}_init_std", defaults["init_std"])
    if len(init_std) != a_dim:
        raise ValueError(f"--init-std has {len(init_std)} values, {task} has {a_dim}-d actions")
    common = dict(model=model, reward=_reward_for(task, config), a_dim=a_dim, horizon=config.horizon,
                  num_samples=config.num_samples, init_std=tuple(init_std), beta=config.beta, seed=seed)
    if config.planner == "mppi":
        return PLANNERS["mppi"](**common, gamma=config.gamma)
    if config.planner == "cem":
        return PLANNERS["cem"](**common, opt_iters=config.cem_iters, elites_frac=config.elites_frac)
    raise ValueError(f"unknown planner {config.planner!r}; known: {', '.join(PLANNERS)}")


def run_episode(env, model, task: str, episode: int, config: RunConfig, model_name: str,
                frames_dir: Path | None = None) -> EpisodeRecord:
    """One task instance, planned end to end. Exceptions are the caller's to record."""
    seed = config.seed * 100_003 + episode
    record = EpisodeRecord(model_name, task, episode, seed)
    t0 = time.perf_counter()
    instance = env.make_task(seed, task)
    planner = _planner(model, task, env.action_dim, config, seed)
    agent = PlanningAgent(planner, env.action_dim)
    env.reset_to(instance.initial_state)
    first = env.step(np.zeros(env.action_dim))  # as VP²: one zero step after the reset
    observations = [first / 255.0] * config.num_context
    states = [env.get_state()]
    goal = instance.goal_image / 255.0
    plan_seconds = []
    for t in range(config.max_steps):
        t_plan = time.perf_counter()
        action = agent.act(t, observations, states, goal)
        if t > 0:  # step 0 takes the initial zero action without planning (as VP²)
            plan_seconds.append(time.perf_counter() - t_plan)
        observations.append(env.step(action) / 255.0)
        states.append(env.get_state())
        record.steps = t + 1
    scores = [env.score(s, instance.goal_state) for s in states]
    record.start_score, record.final_score, record.best_score = scores[0], scores[-1], float(min(scores))
    record.success = bool(env.is_success(record.best_score))
    record.seconds = time.perf_counter() - t0
    if plan_seconds:
        record.plan_seconds_per_step = float(np.mean(plan_seconds))
    if frames_dir is not None:
        frames_dir.mkdir(parents=True, exist_ok=True)
        strip = np.concatenate([np.uint8(o * 255) for o in observations[config.num_context - 1 :]]
                               + [instance.goal_image], axis=1)
        Image.fromarray(strip).save(frames_dir / f"{task.replace('/', '_')}_{episode:03d}.png")
    return record


def run_model(model_name: str, model_for, config: RunConfig, frames_dir: Path | None = None,
              on_record=None) -> list[EpisodeRecord]:
    """All tasks x episodes with ``model_for(task, env) -> model``; never raises per episode."""
    records = []
    for task in config.tasks:
        try:
            check_task(task)
        except UnknownTaskError as error:
            record = EpisodeRecord(model_name, task, -1, None, status="unknown_task", error=str(error))
            records.append(record)
            if on_record:
                on_record(record)
            continue
        env = model = None
        for episode in range(config.episodes):
            try:
                if env is None:
                    env = make_env(task, config.image_size)
                    model = model_for(task, env)
                record = run_episode(env, model, task, episode, config, model_name, frames_dir)
            except Exception as error:  # recorded per episode, the run goes on
                where = traceback.extract_tb(error.__traceback__)[-1:]
                at = f" (at {Path(where[0].filename).name}:{where[0].lineno})" if where else ""
                record = EpisodeRecord(model_name, task, episode, config.seed * 100_003 + episode, status="error",
                                       error=f"{type(error).__name__}: {error}{at}")
            records.append(record)
            if on_record:
                on_record(record)
    return records


def summarise(records: list[EpisodeRecord], oracle: list[EpisodeRecord] | None = None) -> dict:
    """Per-task success rates (over completed episodes), error counts, normalised scores."""

    def per_task(rs):
        out = {}
        for r in rs:
            t = out.setdefault(r.task, {"episodes": 0, "completed": 0, "successes": 0, "errors": 0,
                                        "unknown_task": False, "error_messages": []})
            if r.status == "unknown_task":
                t["unknown_task"] = True
                t["error_messages"].append(r.error)
                continue
            t["episodes"] += 1
            if r.status == "ok":
                t["completed"] += 1
                t["successes"] += int(bool(r.success))
            else:
                t["errors"] += 1
                if r.error not in t["error_messages"]:
                    t["error_messages"].append(r.error)
        for t in out.values():
            t["success_rate"] = t["successes"] / t["completed"] if t["completed"] else None
            t["success_rate_errors_as_failures"] = t["successes"] / t["episodes"] if t["episodes"] else None
        return out

    tasks = per_task(records)
    summary = {"tasks": tasks}
    rates = [t["success_rate"] for t in tasks.values() if t["success_rate"] is not None]
    summary["mean_success_rate"] = float(np.mean(rates)) if rates else None
    summary["episodes"] = sum(t["episodes"] for t in tasks.values())
    summary["errors"] = sum(t["errors"] for t in tasks.values())
    summary["unknown_tasks"] = sorted(k for k, t in tasks.items() if t["unknown_task"])
    summary["complete"] = summary["errors"] == 0 and not summary["unknown_tasks"]
    if oracle is not None:
        oracle_tasks = per_task(oracle)
        summary["oracle"] = oracle_tasks
        ratios = {}
        for name, t in tasks.items():
            o = oracle_tasks.get(name, {}).get("success_rate")
            if t["success_rate"] is not None and o:
                ratios[name] = t["success_rate"] / o
            t["normalised_score"] = ratios.get(name)
        summary["normalised_score"] = float(np.mean(list(ratios.values()))) if ratios else None
        summary["normalised_tasks"] = sorted(ratios)
    return summary


def orv_model_factory(path: str, config: RunConfig, num_inference_steps: int, max_batch_size: int,
                      device: str | None, dtype: str | None, prompt: str):
    torch_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, None: None}[dtype]
    if not Path(path).is_dir():
        raise FileNotFoundError(f"--model-path {path}: no ORV pipeline folder there")
    pipe = ORVPipeline.from_pretrained(path, **({"dtype": torch_dtype} if torch_dtype else {}))
    pipe.set_progress_bar_config(disable=True)
    if device:
        pipe.to(device)

    def model_for(task, env):
        return ORVWorldModel(pipe, action_dim=env.action_dim, num_context=config.num_context,
                             num_inference_steps=num_inference_steps, max_batch_size=max_batch_size,
                             prompt=prompt, seed=config.seed)

    return model_for


def simulator_model_factory(config: RunConfig):
    return lambda task, env: SimulatorModel(env, config.num_context)


def _write(out: Path, records: list[EpisodeRecord], summary: dict, config: RunConfig, extra: dict) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "episodes.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=EPISODE_FIELDS)
        writer.writeheader()
        for r in records:
            writer.writerow(asdict(r))
    with open(out / "episodes.jsonl", "w") as f:
        for r in records:
            f.write(json.dumps(asdict(r)) + "\n")
    summary = {"config": asdict(config), **extra, **summary}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))


def parse_args(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.vp2.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(TASKS), help=f"task ids (known: {', '.join(TASKS)})")
    p.add_argument("--model", choices=["orv", "simulator"], default="orv",
                   help="orv: the world model at --model-path; simulator: the oracle alone")
    p.add_argument("--model-path", help="ORV pipeline folder (ORVPipeline.save_pretrained layout, action-only)")
    p.add_argument("--with-oracle", action="store_true", help="also run the simulator-as-model planner to normalise")
    p.add_argument("--oracle-summary", help="normalise by the episodes.jsonl of a previous simulator run (its simulator rows)")
    p.add_argument("--episodes", type=int, default=100, help="task instances per task (VP²: 100)")
    p.add_argument("--max-steps", type=int, default=15)
    p.add_argument("--context", type=int, default=2, help="context frames (VP²: 2)")
    p.add_argument("--horizon", type=int, default=10, help="planning horizon (VP²: 10)")
    p.add_argument("--planner", choices=list(PLANNERS), default="mppi")
    p.add_argument("--num-samples", type=int, default=200)
    p.add_argument("--gamma", type=float, default=0.05, help="MPPI temperature")
    p.add_argument("--beta", type=float, default=0.5, help="noise correlation over time")
    p.add_argument("--cem-iters", type=int, default=3)
    p.add_argument("--elites-frac", type=float, default=0.05)
    p.add_argument("--init-std", type=float, nargs="+", help="per action dim (default: the task's VP² value)")
    p.add_argument("--classifier-dir", help="folder of VP² success classifiers <task>.pt (RoboDesk): 0.5 MSE + 10 clf")
    p.add_argument("--mse-weight", type=float)
    p.add_argument("--inference-steps", type=int, default=50, help="ORV denoising steps per prediction")
    p.add_argument("--max-batch-size", type=int, default=50, help="samples per ORV pipeline call")
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: the pipeline's)")
    p.add_argument("--dtype", choices=["bf16", "fp16", "fp32"], help="ORV weights dtype (bf16 on GPUs)")
    p.add_argument("--prompt", default="", help="text prompt for ORV (default: empty)")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save-frames", action="store_true")
    p.add_argument("--out", required=True, help="output folder")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    config = RunConfig(
        tasks=list(args.tasks), episodes=args.episodes, max_steps=args.max_steps, num_context=args.context,
        horizon=args.horizon, planner=args.planner, num_samples=args.num_samples, gamma=args.gamma,
        beta=args.beta, cem_iters=args.cem_iters, elites_frac=args.elites_frac, init_std=args.init_std,
        image_size=args.image_size, seed=args.seed, classifier_dir=args.classifier_dir, mse_weight=args.mse_weight,
    )
    out = Path(args.out)
    frames = out / "frames" if args.save_frames else None

    def log(record: EpisodeRecord):
        what = "success" if record.success else "fail" if record.status == "ok" else record.status
        print(f"[vp2] {record.model} {record.task} #{record.episode}: {what} "
              f"(best score {record.best_score}, {record.seconds:.1f}s){' ' + record.error if record.error else ''}",
              flush=True)

    if args.model == "orv":
        if not args.model_path:
            raise SystemExit("--model orv needs --model-path (an ORV pipeline folder)")
        factory = orv_model_factory(args.model_path, config, args.inference_steps, args.max_batch_size,
                                    args.device, args.dtype, args.prompt)
    else:
        factory = simulator_model_factory(config)
    records = run_model(args.model, factory, config, frames, on_record=log)
    oracle = None
    if args.with_oracle and args.model != "simulator":
        oracle = run_model("simulator", simulator_model_factory(config), config, None, on_record=log)
    elif args.oracle_summary:
        lines = Path(args.oracle_summary).read_text().splitlines()
        oracle = [r for r in (EpisodeRecord(**json.loads(line)) for line in lines if line.strip())
                  if r.model == "simulator"]
        if not oracle:
            raise SystemExit(f"--oracle-summary {args.oracle_summary}: no simulator episodes in it")
    summary = summarise(records, oracle)
    _write(out, records + (oracle or []), summary, config,
           {"model": args.model, "model_path": args.model_path, "inference_steps": args.inference_steps})
    print(json.dumps({k: summary[k] for k in ("mean_success_rate", "episodes", "errors", "unknown_tasks")
                      + (("normalised_score",) if oracle is not None else ())}, indent=None))
    return summary


if __name__ == "__main__":
    main()

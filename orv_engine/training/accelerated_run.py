"""What every accelerate training run here shares: set-up, checkpoints with exact resume, logs.

Used by the ORV trainer (``orv_engine.training.trainer``) and the VLA trainer
(``vla_finetune.training.trainer``). A checkpoint ``<output_dir>/checkpoints/checkpoint-<step>``
holds accelerate's state (model, optimizer, LR scheduler, RNG of every process, registered
objects such as an EMA), each process's data position (``stream-rank<r>.json``, from the
subclass's ``self.stream``), the step and the config; it is written to ``.tmp`` and renamed
when complete, so a run killed while saving resumes from the previous one; a complete checkpoint
damaged afterwards (a truncated weights file, a cut copy) is named, and ``--resume latest`` passes
over it to the newest intact one, saying so. Subclasses add
their own files with :meth:`AcceleratedRun.save_extra` (main process, before the rename).

``train_log.jsonl`` has one JSON line per logged step; on resume the lines after the resumed
step are cut, so the log of a killed-and-resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import zipfile
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.utils import ProjectConfiguration, set_seed

from orv_engine.weight_files import CheckpointError, check_training_checkpoint

CHECKPOINT_PREFIX = "checkpoint-"


def checkpoints(output_dir) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = Path(output_dir) / "checkpoints"
    if not root.is_dir():
        return []
    done = [p for p in root.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and not p.name.endswith(".tmp")
            and (p / "train_state.json").is_file()]
    return sorted(done, key=lambda p: int(p.name[len(CHECKPOINT_PREFIX):]))


def resolve_resume(resume: str | None, output_dir, log=print) -> Path | None:
    """The checkpoint to resume from: ``resume`` (a folder) or, for "latest", the newest whose
    weight files are intact (damaged ones are passed over, said in the log)."""
    if resume is None:
        return None
    if resume == "latest":
        for found in reversed(checkpoints(output_dir)):
            try:
                check_training_checkpoint(found)
            except CheckpointError as err:
                log(f"resume: passing over a damaged checkpoint: {err}")
                continue
            return found
        return None  # nothing (intact) saved yet: start fresh
    path = Path(resume)
    if not (path / "train_state.json").is_file():
        raise FileNotFoundError(f"--resume {resume}: not a complete checkpoint folder (no train_state.json)")
    return path


def peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def flat_hparams(values: dict, prefix: str = "") -> dict:
    """A nested config dict as ``{"a.b": scalar}`` (what TensorBoard's hparams take)."""
    out = {}
    for k, v in values.items():
        if isinstance(v, dict):
            out.update(flat_hparams(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, (int, float, str, bool)) else str(v)
    return out


class AcceleratedRun:
    """Base of the trainers. ``config`` needs ``output_dir``, ``seed``, ``tracker``,
    ``train.mixed_precision``, ``train.gradient_accumulation_steps``,
    ``train.checkpoints_total_limit`` and ``to_dict()``; subclasses set ``self.stream``."""

    save_state_kwargs: dict = {}  # extra keyword arguments of accelerate's save_state

    def __init__(self, config, log=print, kwargs_handlers=()):
        self.config = config
        self.output_dir = Path(config.output_dir)
        precision = config.train.mixed_precision
        if precision == "auto":
            precision = "bf16" if torch.cuda.is_available() else "no"
        self.accelerator = Accelerator(
            mixed_precision=precision,
            gradient_accumulation_steps=config.train.gradient_accumulation_steps,
            kwargs_handlers=list(kwargs_handlers),
            log_with=None if config.tracker == "none" else config.tracker,
            project_config=ProjectConfiguration(project_dir=str(self.output_dir),
                                                logging_dir=str(self.output_dir / "logs")),
        )
        self._log = log
        set_seed(config.seed)
        self.weight_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision, torch.float32)

    def log(self, message: str) -> None:
        if self.accelerator.is_main_process:
            self._log(message)

    # ------------------------------------------------------------ checkpoints

    def save_extra(self, folder: Path) -> None:
        """Main process, inside the not-yet-renamed checkpoint folder: the subclass's own files."""

    def save_checkpoint(self, step: int) -> Path:
        acc = self.accelerator
        final = self.output_dir / "checkpoints" / f"{CHECKPOINT_PREFIX}{step:07d}"
        tmp = final.with_name(final.name + ".tmp")
        if acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        acc.wait_for_everyone()
        acc.save_state(str(tmp), **self.save_state_kwargs)
        (tmp / f"stream-rank{acc.process_index}.json").write_text(json.dumps(self.stream.state_dict()))
        acc.wait_for_everyone()
        if acc.is_main_process:
            self.save_extra(tmp)
            (tmp / "train_state.json").write_text(json.dumps(
                {"step": step, "num_processes": acc.num_processes, "config": self.config.to_dict()}, indent=1))
            shutil.rmtree(final, ignore_errors=True)
            os.replace(tmp, final)
            limit = self.config.train.checkpoints_total_limit
            if limit:
                for old in checkpoints(self.output_dir)[:-limit]:
                    shutil.rmtree(old, ignore_errors=True)
        acc.wait_for_everyone()
        return final

    def load_checkpoint(self, path: Path) -> int:
        acc = self.accelerator
        state = json.loads((path / "train_state.json").read_text())
        if state["num_processes"] != acc.num_processes:
            raise ValueError(
                f"{path} was saved by {state['num_processes']} processes, this run has {acc.num_processes}: "
                "the data positions are per process; resume with the same number of processes"
            )
        check_training_checkpoint(path)  # a truncated weights / optimizer / RNG file: named
        try:
            acc.load_state(str(path))
            stream_state = json.loads((path / f"stream-rank{acc.process_index}.json").read_text())
        except (RuntimeError, OSError, EOFError, ValueError, KeyError, pickle.UnpicklingError,
                zipfile.BadZipFile) as err:  # a damaged optimizer / RNG / stream file
            raise CheckpointError(f"{path} cannot be resumed from ({type(err).__name__}: {err}); resume from an "
                                  "earlier checkpoint (--resume PATH) or delete this one") from err
        self.stream.load_state_dict(stream_state)
        return int(state["step"])

    def resume_or_start(self, resume: str | None, project: str) -> int:
        """The step to start from: a checkpoint's (``resume`` = path or "latest"), else 0 with
        a fresh log; starts the trackers."""
        acc, cfg = self.accelerator, self.config
        start = 0
        checkpoint = resolve_resume(resume, self.output_dir, self.log)
        if checkpoint is not None:
            start = self.load_checkpoint(checkpoint)
            self.write_log({}, truncate_after=start)
            self.log(f"resumed from {checkpoint} at step {start}")
        elif acc.is_main_process:
            (self.output_dir / "train_log.jsonl").unlink(missing_ok=True)
        if cfg.tracker != "none":
            acc.init_trackers(project, config=flat_hparams(cfg.to_dict()))
        return start

    # ------------------------------------------------------------ logs

    def write_log(self, record: dict, truncate_after: int | None = None) -> None:
        """Append ``record`` to train_log.jsonl, or (``truncate_after``) cut the lines after that step."""
        if not self.accelerator.is_main_process:
            return
        path = self.output_dir / "train_log.jsonl"
        if truncate_after is not None:
            if path.is_file():
                kept = [line for line in path.read_text().splitlines()
                        if line.strip() and json.loads(line).get("step", 0) <= truncate_after]
                path.write_text("".join(line + "\n" for line in kept))
            return
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()

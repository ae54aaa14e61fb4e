"""The VLA finetuning loop on accelerate (one process, DDP, DeepSpeed or FSDP), both policies.

Recipes (paper Sec. 10.3.2): RoboVLM is finetuned in full (Adam, lr 2e-5, clip 1.0);
SpatialVLA trains LoRA adapters (rank 32, alpha 32) plus its action-token embeddings (lr
5e-4) and merges the adapters for export. Precision: fp32 master weights under
accelerate's autocast (bf16 on GPU by default, fp32 on CPU).

Exact resume (:mod:`orv_engine.training.accelerated_run`, shared with the ORV trainer): a checkpoint
(``<output_dir>/checkpoints/checkpoint-<step>``) holds accelerate's state (model,
optimizer, LR scheduler, RNG of every process), each process's data position
(``stream-rank<r>.json``) and the step; written to ``.tmp`` and renamed when complete.
The end of training writes ``<output_dir>/final``: a policy folder ``load_policy`` opens
(SpatialVLA merged). Logs: ``train_log.jsonl`` and TensorBoard under ``<output_dir>/logs``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from accelerate.utils import DistributedDataParallelKwargs
from transformers import get_scheduler

from orv_engine.training.accelerated_run import AcceleratedRun, peak_memory_mb
from vla_finetune.policies.common import check_model_folder
from vla_finetune.policies.robovlm import RoboVLMPolicy
from vla_finetune.policies.spatialvla import SpatialActionTokenizer, SpatialVLAPolicy
from vla_finetune.policy_data.dataset import PolicyWindowDataset, SourceSpec, all_actions
from vla_finetune.policy_data.normalization import ActionNormalizer, read_statistics
from vla_finetune.training.config import VLAConfig, mixture_datasets
from vla_finetune.training.stream import WindowBatchStream


def build_policy(config: VLAConfig, sources, statistics, log=print):
    """The policy to finetune: new on a backbone folder, or a saved policy folder."""
    p = config.policy
    folder = check_model_folder(p.pretrained_path, f"policy.pretrained_path ({p.kind})")
    model_type = json.loads((folder / "config.json").read_text()).get("model_type")
    if model_type in ("robovlm", "spatialvla_orv"):
        log(f"continuing from the saved policy {folder}: its architecture, statistics (and action grid) are kept"
            + ("; policy.options are ignored" if p.options else ""))
    if p.kind == "robovlm":
        if model_type == "robovlm":
            return RoboVLMPolicy.from_pretrained(str(folder))
        if model_type != "kosmos-2":
            raise ValueError(f"{folder}: model_type {model_type!r}; RoboVLM needs a Kosmos-2 folder or a RoboVLM policy")
        return RoboVLMPolicy.from_backbone(folder, statistics, **p.options)
    if model_type == "spatialvla_orv":
        policy = SpatialVLAPolicy.from_pretrained(str(folder))
    elif model_type == "paligemma":
        normalizer = ActionNormalizer(statistics, p.options.get("normalization", "bounds_q99"))
        actions = normalizer.normalize(all_actions(sources, config.data.transform))
        log(f"fitting the spatial action grid to {len(actions)} actions")
        policy = SpatialVLAPolicy.from_backbone(folder, statistics, SpatialActionTokenizer.fit(actions), **p.options)
    else:
        raise ValueError(f"{folder}: model_type {model_type!r}; SpatialVLA needs a PaliGemma folder or a SpatialVLA policy")
    if p.lora:
        policy.apply_lora()
    return policy


class VLATrainer(AcceleratedRun):
    # checkpoints in torch format, as this recipe has always written them
    save_state_kwargs = {"safe_serialization": False}

    def __init__(self, config: VLAConfig, log=print):
        super().__init__(config, log, kwargs_handlers=[
            DistributedDataParallelKwargs(find_unused_parameters=config.train.find_unused_parameters)])

    # ------------------------------------------------------------ set-up

    def setup(self) -> None:
        cfg, acc = self.config, self.accelerator
        entries, statistics_path = mixture_datasets(cfg)
        statistics = read_statistics(statistics_path)
        sources = [SourceSpec(e.path, e.weight, cfg.data.split) for e in entries]
        policy = build_policy(cfg, sources, statistics, self.log)
        if cfg.policy.gradient_checkpointing:
            # non-reentrant: works with frozen inputs (LoRA) without enable_input_require_grads
            enable = (getattr(policy.backbone, "activation_checkpointing_enable", None)
                      or policy.backbone.gradient_checkpointing_enable)  # renamed in transformers 5
            enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        policy.train()
        self.policy_kind = cfg.policy.kind
        history = policy.config.history_len if cfg.policy.kind == "robovlm" else 1
        self.dataset = PolicyWindowDataset(
            sources, policy.normalizer, history=history, chunk=policy.config.chunk_size,
            transform=cfg.data.transform, camera=cfg.data.camera, image_size=cfg.data.image_size,
            shuffle_buffer=cfg.data.shuffle_buffer, seed=cfg.seed, rank=acc.process_index,
            world_size=acc.num_processes)
        self.stream = WindowBatchStream(self.dataset, cfg.train.batch_size, cfg.data.num_workers, cfg.seed)
        params = [p for p in policy.parameters() if p.requires_grad]
        o = cfg.optim
        cls = torch.optim.Adam if o.optimizer == "adam" else torch.optim.AdamW
        optimizer = cls(params, lr=o.learning_rate, betas=tuple(o.betas), weight_decay=o.weight_decay, eps=o.eps)
        n = acc.num_processes
        scheduler = get_scheduler(o.lr_scheduler, optimizer, num_warmup_steps=o.lr_warmup_steps * n,
                                  num_training_steps=cfg.train.max_steps * n)
        if getattr(acc.state, "deepspeed_plugin", None) is not None:
            acc.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.train.batch_size
        self.policy, self.optimizer, self.lr_scheduler = acc.prepare(policy, optimizer, scheduler)
        self.num_trainable = sum(p.numel() for p in params)

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.policy)

    # ------------------------------------------------------------ checkpoints

    def save_final(self) -> Path:
        """``<output_dir>/final``: the policy folder (SpatialVLA with LoRA merged)."""
        policy = self.unwrapped
        path = self.output_dir / "final"
        if self.policy_kind == "spatialvla":
            policy.merge_lora()
        policy.save_pretrained(path)
        self.log(f"saved the policy to {path}")
        return path

    # ------------------------------------------------------------ loop

    def train(self, resume: str | None = None, stop_after: int | None = None) -> dict:
        """Run to ``train.max_steps`` (or ``stop_after`` more steps); returns a summary."""
        cfg, acc = self.config, self.accelerator
        self.output_dir.mkdir(parents=True, exist_ok=True)
        if not hasattr(self, "policy"):
            self.setup()
        if acc.is_main_process:
            (self.output_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        start = self.resume_or_start(resume, "vla-train")
        self.log(f"training {cfg.policy.kind}: {self.num_trainable / 1e6:.2f}M trainable parameters on "
                 f"{acc.num_processes} process(es), {acc.device}, {acc.mixed_precision}")
        step = start
        end = cfg.train.max_steps if stop_after is None else min(cfg.train.max_steps, start + stop_after)
        summary = {"losses": [], "samples": 0}
        window, step_time, t_start = [], 0.0, time.perf_counter()
        grad_norm = None
        while step < end:
            t0 = time.perf_counter()
            step_loss = 0.0
            for _ in range(cfg.train.gradient_accumulation_steps):
                batch = next(self.stream)
                with acc.accumulate(self.policy):
                    with acc.autocast():
                        out = self.policy(images=batch["images"], instruction=list(batch["instruction"]),
                                          actions=batch["actions"].to(acc.device),
                                          action_mask=batch["action_mask"].to(acc.device),
                                          image_mask=batch["image_mask"].to(acc.device))
                    loss = out["loss"]
                    acc.backward(loss)
                    if acc.sync_gradients and cfg.optim.max_grad_norm > 0:
                        grad_norm = acc.clip_grad_norm_(self.policy.parameters(), cfg.optim.max_grad_norm)
                    self.optimizer.step()
                    self.lr_scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                step_loss += loss.detach().float() / cfg.train.gradient_accumulation_steps
                summary["samples"] += len(batch["instruction"]) * acc.num_processes
            step += 1
            value = acc.gather(step_loss.reshape(1).to(acc.device)).mean().item()
            if not math.isfinite(value):
                raise FloatingPointError(f"loss is {value} at step {step}")
            summary["losses"].append(value)
            window.append(value)
            step_time += time.perf_counter() - t0
            if step % cfg.train.log_every == 0 or step == end:
                record = {"step": step, "loss": value, "loss_avg": float(np.mean(window)),
                          "lr": self.lr_scheduler.get_last_lr()[0],
                          "grad_norm": None if grad_norm is None else float(grad_norm),
                          "step_time": step_time / len(window), "epoch": self.stream.epoch,
                          "peak_memory_mb": peak_memory_mb(acc.device)}
                acc.log({k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}, step=step)
                self.write_log(record)
                self.log(f"step {step}/{cfg.train.max_steps} loss {value:.4f} (avg {record['loss_avg']:.4f}) "
                         f"lr {record['lr']:.3g} {record['step_time']:.3f}s/step")
                window, step_time = [], 0.0
            if step % cfg.train.checkpoint_every == 0 or step == cfg.train.max_steps:
                self.log(f"saved {self.save_checkpoint(step)}")
        if step == cfg.train.max_steps and acc.is_main_process:
            summary["final"] = str(self.save_final())
        acc.wait_for_everyone()
        acc.end_training()
        if self.dataset.report:
            self.log(self.dataset.report.format())
        summary.update(step=step, wall_time=time.perf_counter() - t_start, peak_memory_mb=peak_memory_mb(acc.device))
        return summary

"""The ORV training loop on accelerate (one process, DDP, or DeepSpeed ZeRO-2).

One optimizer step = ``gradient_accumulation_steps`` micro-batches per process. Precision:
the trainable transformer keeps fp32 master weights under accelerate's autocast (bf16 on
GPU by default, fp32 on CPU); the frozen VAE and T5 run in the autocast dtype.

Exact resume. A checkpoint (``<output_dir>/checkpoints/checkpoint-<step>``) holds
accelerate's state (model, optimizer, LR scheduler, RNG of every process, EMA), each
process's data position (``stream-rank<r>.json``), the step, and a diffusers
``transformer/`` folder (``transformer_ema/`` too with EMA) that stage 2 or inference can
load. It is written to ``checkpoint-<step>.tmp`` and renamed when complete, so a run killed
while saving resumes from the previous one. The noise, timesteps and dropouts of a step are
drawn from a generator seeded with ``(seed, step, micro-batch, rank)``, so a resumed run
replays the same draws whatever happened to the global RNGs.

Logs: ``<output_dir>/train_log.jsonl`` (one line per logged step: loss, lr, grad norm,
step and data-loading time), TensorBoard under ``<output_dir>/logs``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from diffusers import CogVideoXDPMScheduler
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel

from orv_engine.pipelines import ORVPipeline
from orv_engine.training import latents
from orv_engine.training.accelerated_run import AcceleratedRun, peak_memory_mb
from orv_engine.training.components import load_components
from orv_engine.training.data import resolve_preprocessing
from orv_engine.training.losses import LossInputs, diffusion_loss
from orv_engine.training.stream import BatchStream
from orv_engine.training.validation import run_validation


def step_generator(seed: int, step: int, micro: int, rank: int) -> torch.Generator:
    state = np.random.SeedSequence([seed, step, micro, rank]).generate_state(2, dtype=np.uint32)
    return torch.Generator("cpu").manual_seed(int(state[0]) << 32 | int(state[1]))


class Trainer(AcceleratedRun):
    """Trains ORV from a :class:`~orv_engine.training.config.Config` (``Trainer(config).train()``)."""

    # ------------------------------------------------------------ set-up

    program = "orv-train"  # named in resume messages
    pipeline_class = ORVPipeline  # what save_final writes

    def _load_components(self):
        cfg = self.config
        return load_components(cfg.model.pretrained_path, cfg.model.transformer_path, cfg.model.condition_kinds)

    def setup(self) -> None:
        """Load the models (taking the starting checkpoint's conventions) and the data; ``train``
        calls it, ``orv-train --pre-encode`` stops after it."""
        self._setup_models()
        self._setup_data()

    def _is_trainable(self, name: str) -> bool:
        """Whether the transformer parameter ``name`` trains (``model.trainable``: all, or the ORV modules)."""
        if self.config.model.trainable == "all":
            return True
        return name.startswith(("action_encoder.", "condition_fusion.", "patch_embed.proj."))

    def _setup_models(self):
        acc = self.accelerator
        c = self._load_components()
        # The data conventions the starting checkpoint records (or the config's), recorded in
        # every checkpoint this run writes.
        self.config, self.preprocessing = resolve_preprocessing(self.config, c.transformer, c.scheduler)
        c.transformer.register_to_config(preprocessing=self.preprocessing.to_dict())
        cfg = self.config
        for frozen in (c.vae, c.text_encoder):
            frozen.requires_grad_(False)
            # nn.Module.to: ModelMixin.to warns about keep-in-fp32 modules CogVideoX has none of.
            torch.nn.Module.to(frozen, acc.device, dtype=self.weight_dtype)
        transformer = torch.nn.Module.to(c.transformer, acc.device, dtype=torch.float32)
        for name, p in transformer.named_parameters():
            p.requires_grad_(self._is_trainable(name))
        if cfg.model.gradient_checkpointing:
            transformer.enable_gradient_checkpointing()
        transformer.train()
        self.components = c
        self.ema = None
        if cfg.train.ema.enabled:
            self.ema = EMAModel(
                [p for p in transformer.parameters()], decay=cfg.train.ema.decay,
                update_after_step=cfg.train.ema.update_after_step, use_ema_warmup=cfg.train.ema.use_ema_warmup,
                model_cls=type(transformer), model_config=transformer.config,
            )
            self.ema.to(acc.device)
        params = [p for p in transformer.parameters() if p.requires_grad]
        o = cfg.optim
        optimizer = torch.optim.AdamW(params, lr=o.learning_rate, betas=tuple(o.betas), weight_decay=o.weight_decay, eps=o.eps)
        n = acc.num_processes  # the prepared scheduler steps once per process per optimizer step
        scheduler = get_scheduler(o.lr_scheduler, optimizer, num_warmup_steps=o.lr_warmup_steps * n,
                                  num_training_steps=cfg.train.max_steps * n, num_cycles=o.lr_num_cycles)
        if getattr(acc.state, "deepspeed_plugin", None) is not None:
            # The loaders are not prepared (each rank reads its own shard), so DeepSpeed
            # cannot infer the micro-batch size from them.
            acc.state.deepspeed_plugin.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.train.batch_size
        self.transformer, self.optimizer, self.lr_scheduler = acc.prepare(transformer, optimizer, scheduler)
        if self.ema is not None:
            acc.register_for_checkpointing(self.ema)
        self.num_trainable = sum(p.numel() for p in params)

    def _setup_data(self):
        cfg, acc = self.config, self.accelerator
        if cfg.data.latents_dir and not latents.store_is_complete(cfg.data.latents_dir):
            self.log(f"pre-encoding VAE latents into {cfg.data.latents_dir}")
            vae = self.components.vae
            n = latents.pre_encode(cfg, vae, acc.process_index, acc.num_processes, log=self.log)
            acc.wait_for_everyone()
            if acc.is_main_process:
                latents.write_index(cfg)
            acc.wait_for_everyone()
            self.log(f"pre-encoded {n} clips on rank 0")
        if cfg.data.latents_dir:
            latents.check_store(cfg)
        self.stream = BatchStream(cfg, acc.process_index, acc.num_processes)
        self.val_clips = latents.held_out_clips(cfg) if acc.is_main_process else []

    def _prompt_embeds(self, batch: dict) -> torch.Tensor:
        cfg = self.config
        b = self.config.train.batch_size
        prompts = list(batch["instruction"]) if cfg.text.use_instruction else [cfg.text.prompt]
        out = []
        for p in prompts:
            if p not in self._text_cache:
                c = self.components
                ids = c.tokenizer([p], padding="max_length", max_length=self.unwrapped.config.max_text_seq_length,
                                  truncation=True, add_special_tokens=True, return_tensors="pt").input_ids
                with torch.no_grad():
                    emb = c.text_encoder(ids.to(self.accelerator.device))[0]
                if len(self._text_cache) > 4096:
                    self._text_cache.clear()
                self._text_cache[p] = emb.to(self.weight_dtype)
            out.append(self._text_cache[p])
        embeds = torch.cat(out)
        return embeds.expand(b, -1, -1) if embeds.shape[0] == 1 else embeds

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.transformer)

    # ------------------------------------------------------------ checkpoints

    def save_extra(self, folder: Path) -> None:
        """A diffusers ``transformer/`` folder (and ``transformer_ema/``) that stage 2 or inference loads."""
        self.unwrapped.save_pretrained(folder / "transformer")
        if self.ema is not None:
            self.ema.save_pretrained(str(folder / "transformer_ema"))

    # ------------------------------------------------------------ loop

    def _micro_batch_loss(self, batch: dict, generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """The loss of one micro-batch and what to record about it (collected per step in the summary)."""
        cfg, acc = self.config, self.accelerator
        video, image, actions, conditions = latents.batch_to_latents(
            self.components.vae, batch, cfg.model.condition_kinds, generator, cfg.loss, acc.device, self.weight_dtype,
            sample_conditions=cfg.data.condition_encoding == "orv-official")
        with acc.autocast():
            loss, _ = diffusion_loss(
                self.transformer, self.components.scheduler,
                LossInputs(video, image, actions, self._prompt_embeds(batch), conditions), generator,
                image_dropout=cfg.loss.image_dropout, null_action_prob=cfg.loss.null_action_prob)
        return loss, {}

    def _log_fields(self, details: list[dict]) -> dict:
        """Extra numbers for the log record of a step, from its micro-batches' details."""
        return {}

    def validate(self, step: int) -> dict:
        acc = self.accelerator
        metrics = {}
        if acc.is_main_process and self.val_clips:
            model = self.unwrapped
            if self.ema is not None:
                self.ema.store(model.parameters())
                self.ema.copy_to(model.parameters())
            with acc.autocast():
                metrics = run_validation(self.components, model, self.val_clips, self.config, step, acc.device)
            if self.ema is not None:
                self.ema.restore(model.parameters())
            acc.log(metrics, step=step)
            self.write_log({"step": step, **metrics})
            self.log(f"step {step}: validation " + ", ".join(f"{k} {v:.4g}" for k, v in metrics.items()))
        acc.wait_for_everyone()
        return metrics

    def train(self, resume: str | None = None, stop_after: int | None = None) -> dict:
        """Run to ``train.max_steps`` (or ``stop_after`` steps, for tests); returns a summary."""
        cfg, acc = self.config, self.accelerator
        self.output_dir.mkdir(parents=True, exist_ok=True)
        self.setup()
        self._text_cache: dict[str, torch.Tensor] = {}
        if acc.is_main_process:
            (self.output_dir / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        start = self.resume_or_start(resume, self.program)
        self.log(f"training {self.num_trainable / 1e6:.2f}M parameters on {acc.num_processes} process(es), "
                 f"{acc.device}, {acc.mixed_precision}; data: {self.stream.kind}")

        losses_window, data_time, step_time, t_last = [], 0.0, 0.0, time.perf_counter()
        step, end = start, cfg.train.max_steps if stop_after is None else min(cfg.train.max_steps, start + stop_after)
        summary = {"losses": []}
        while step < end:
            t0 = time.perf_counter()
            step_loss, step_data, details = 0.0, 0.0, []
            for micro in range(cfg.train.gradient_accumulation_steps):
                td = time.perf_counter()
                batch = next(self.stream)
                step_data += time.perf_counter() - td
                with acc.accumulate(self.transformer):
                    loss, detail = self._micro_batch_loss(batch, step_generator(cfg.seed, step, micro, acc.process_index))
                    details.append(detail)
                    acc.backward(loss)
                    grad_norm = None
                    if acc.sync_gradients and cfg.optim.max_grad_norm > 0:
                        grad_norm = acc.clip_grad_norm_(self.transformer.parameters(), cfg.optim.max_grad_norm)
                    self.optimizer.step()
                    self.lr_scheduler.step()
                    self.optimizer.zero_grad(set_to_none=True)
                step_loss += loss.detach().float() / cfg.train.gradient_accumulation_steps
            step += 1
            if self.ema is not None:
                self.ema.step(self.unwrapped.parameters())
            loss_value = acc.gather(step_loss.reshape(1).to(acc.device)).mean().item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss is {loss_value} at step {step}")
            summary["losses"].append(loss_value)
            for key in details[0]:
                summary.setdefault(key, []).append([detail[key] for detail in details])
            losses_window.append(loss_value)
            data_time += step_data
            step_time += time.perf_counter() - t0
            if step % cfg.train.log_every == 0 or step == end:
                record = {
                    "step": step, "loss": loss_value, "loss_avg": float(np.mean(losses_window)),
                    "lr": self.lr_scheduler.get_last_lr()[0],
                    "grad_norm": None if grad_norm is None else float(grad_norm),
                    "step_time": step_time / len(losses_window), "data_time": data_time / len(losses_window),
                    "epoch": self.stream.epoch, "peak_memory_mb": peak_memory_mb(acc.device),
                    **self._log_fields(details),
                }
                acc.log({k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}, step=step)
                self.write_log(record)
                self.log(f"step {step}/{cfg.train.max_steps} loss {loss_value:.4f} (avg {record['loss_avg']:.4f}) "
                         f"lr {record['lr']:.3g} {record['step_time']:.3f}s/step data {record['data_time']:.3f}s")
                losses_window, data_time, step_time = [], 0.0, 0.0
            if step % cfg.train.checkpoint_every == 0 or step == cfg.train.max_steps:
                path = self.save_checkpoint(step)
                self.log(f"saved {path}")
            if cfg.validation.every and step % cfg.validation.every == 0:
                summary.update(self.validate(step))
        if step == cfg.train.max_steps and acc.is_main_process:
            self.save_final()
        acc.wait_for_everyone()
        acc.end_training()
        summary["step"] = step
        summary["wall_time"] = time.perf_counter() - t_last
        summary["peak_memory_mb"] = peak_memory_mb(acc.device)
        return summary

    def save_final(self) -> Path:
        """``<output_dir>/final``: a complete ORV pipeline folder (EMA weights if EMA is on)."""
        model = self.unwrapped
        if self.ema is not None:
            self.ema.store(model.parameters())
            self.ema.copy_to(model.parameters())
        c = self.components
        scheduler = CogVideoXDPMScheduler.from_config(c.scheduler.config)
        pipe = self.pipeline_class(tokenizer=c.tokenizer, text_encoder=c.text_encoder, vae=c.vae,
                                   transformer=model, scheduler=scheduler)
        path = self.output_dir / "final"
        pipe.save_pretrained(path)
        if self.ema is not None:
            self.ema.restore(model.parameters())
        self.log(f"saved the pipeline to {path}")
        return path

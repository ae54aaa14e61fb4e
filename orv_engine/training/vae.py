"""Train a (small) ``AutoencoderKLCogVideoX`` on a dataset's frames: ``orv-vae-train``.

    orv-vae-train configs/small/vae.yaml
    orv-vae-train configs/small/vae.yaml --resume latest

The released ORV uses CogVideoX-2B's VAE as it is; a small ORV trained here needs a VAE
that knows its frames, with CogVideoX's compression (8x space, 4x time, 16 channels) and
its causal 3D architecture, so the world model and pipelines run unchanged on top of it.
Loss: L1 reconstruction + a small KL (CogVideoX's VAE recipe without the perceptual and
GAN terms: their LPIPS/discriminator weights cannot be had offline, and PSNR is the
figure reported). Clips of ``data.num_frames`` (4k+1) frames are drawn from the train split,
optionally as random spatial crops (the VAE is convolutional; crops cut the cost of a step).
Each batch is a function of ``(seed, step)`` only, so a resumed run sees the same batches.

At the end ``scaling_factor`` is set to 1 / std of the training latents (unit-variance
latents for the diffusion model, as CogVideoX-2B's 1.15258426 is for its VAE) and the VAE is
saved with ``save_pretrained`` to ``OUTPUT/final/vae``, with its held-out PSNR in
``OUTPUT/final/metrics.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKLCogVideoX
from diffusers.optimization import get_scheduler

from orv_engine import config_validation
from orv_engine.config_validation import ConfigError, check_choices, check_range, option
from orv_engine.console import add_verbose_argument, quiet
from orv_engine.data.errors import DatasetError
from orv_engine.data.rlds_reader import RLDSReader
from orv_engine.evaluation.psnr_ssim import psnr_frames
from orv_engine.training.accelerated_run import AcceleratedRun
from orv_engine.training.config import MixedPrecision, Tracker, check_tracker


@dataclass
class VAEModelConfig:
    block_out_channels: list[int] = option(factory=lambda: [32, 64, 64, 64],
                                           help="channels per level; 4 levels = 8x spatial compression")
    latent_channels: int = option(16, help="CogVideoX's 16: the ORV transformer's input channels / 2")
    layers_per_block: int = option(1, help="ResNet blocks per level")
    norm_num_groups: int = option(16, help="GroupNorm groups (divide every channel count)")
    temporal_compression_ratio: int = option(4, help="CogVideoX's 4x in time")
    pretrained_path: str | None = option(None, help="a VAE folder to fine-tune instead of a fresh one")

    def __post_init__(self):
        check_range(self, "latent_channels", "layers_per_block", "norm_num_groups", "temporal_compression_ratio")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise ConfigError(f"block_out_channels: {bad} not divisible by norm_num_groups={self.norm_num_groups}")


@dataclass
class VAEDataConfig:
    path: str = option("", help="local TFDS dataset folder")
    split: str = option("train", help="frames trained on")
    val_split: str = option("val", help="held-out frames for the reported PSNR")
    camera: str | None = option(None, help="image key; null: the schema's main camera")
    num_frames: int = option(9, help="frames per training clip (4k+1)")
    crop: int | None = option(None, help="random square crop of training clips (pixels); null: whole frames")
    val_frames: int = option(17, help="frames per held-out clip (4k+1)")
    val_clips: int = option(32, help="held-out clips in the reported PSNR")

    def __post_init__(self):
        check_range(self, "num_frames", "val_frames", "val_clips", "crop")
        for key in ("num_frames", "val_frames"):
            if (getattr(self, key) - 1) % 4:
                raise ConfigError(f"{key}: must be 4k+1 (CogVideoX's causal VAE), got {getattr(self, key)}")
        if self.crop is not None and self.crop % 8:
            raise ConfigError(f"crop: must be a multiple of 8 (the spatial compression), got {self.crop}")


@dataclass
class VAELossConfig:
    kl_weight: float = option(1e-6, help="weight of the posterior's KL to N(0, 1)")

    def __post_init__(self):
        check_range(self, "kl_weight", low_open=False)


@dataclass
class VAEOptimConfig:
    learning_rate: float = option(1e-3, help="AdamW learning rate after warmup")
    weight_decay: float = option(0.0, help="AdamW weight decay")
    lr_scheduler: str = option("cosine", help="a diffusers.optimization schedule name")
    lr_warmup_steps: int = option(100, help="linear warmup steps")
    max_grad_norm: float = option(1.0, help="gradient clipping norm")

    def __post_init__(self):
        check_range(self, "learning_rate")
        check_range(self, "lr_warmup_steps", "weight_decay", "max_grad_norm", low_open=False)


@dataclass
class VAETrainConfig:
    max_steps: int = option(2000, help="optimizer steps")
    batch_size: int = option(4, help="clips per step")
    gradient_accumulation_steps: int = option(1, help="micro-batches per step")
    mixed_precision: MixedPrecision = option("no", help="auto (bf16 on GPU, no on CPU), bf16, fp16, no")
    checkpoint_every: int = option(250, help="steps between checkpoints")
    checkpoints_total_limit: int | None = option(2, help="checkpoints kept")
    log_every: int = option(25, help="steps between log lines")
    val_every: int = option(500, help="steps between held-out PSNR measurements; 0: only at the end")

    def __post_init__(self):
        check_choices(self)
        check_range(self, "max_steps", "batch_size", "gradient_accumulation_steps", "checkpoint_every", "log_every")
        check_range(self, "val_every", low_open=False)


@dataclass
class VAEConfig:
    output_dir: str = option("outputs/vae", help="checkpoints, train_log.jsonl, final/vae")
    seed: int = option(0, help="seed of the initialisation and the batches")
    model: VAEModelConfig = option(factory=VAEModelConfig, help="the VAE's size")
    data: VAEDataConfig = option(factory=VAEDataConfig, help="the frames")
    loss: VAELossConfig = option(factory=VAELossConfig, help="reconstruction + KL")
    optim: VAEOptimConfig = option(factory=VAEOptimConfig, help="AdamW and schedule")
    train: VAETrainConfig = option(factory=VAETrainConfig, help="steps, batches, checkpoints")
    tracker: Tracker = option("none", help="none or tensorboard")

    def __post_init__(self):
        check_choices(self)
        check_tracker(self.tracker)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def load_config(path, overrides=(), check_paths: bool = True) -> VAEConfig:
    return config_validation.load_config(VAEConfig, path, overrides, _check_inputs if check_paths else None)


def _check_inputs(config: VAEConfig) -> None:
    if not config.data.path or not Path(config.data.path).expanduser().is_dir():
        raise ConfigError(f"data.path: {config.data.path or '(empty)'} is not a dataset folder")
    if config.model.pretrained_path and not Path(config.model.pretrained_path).is_dir():
        raise ConfigError(f"model.pretrained_path: {config.model.pretrained_path} does not exist")


# ------------------------------------------------------------------ data


def read_episode_frames(path, split: str, camera: str | None, min_frames: int) -> list[np.ndarray]:
    """(T, H, W, 3) uint8 frames of every episode of ``split`` with at least ``min_frames``."""
    reader = RLDSReader(path, split=split, cameras=[camera] if camera else None)
    key = reader.cameras[0]
    episodes = [ep.frames[key] for ep in reader if len(ep) >= min_frames]
    if not episodes:
        raise DatasetError(f"{path}: split {split!r} has no episode of >= {min_frames} frames")
    return episodes


class FrameClips:
    """Random clips as a pure function of ``(seed, step)``: exact resume needs no state."""

    def __init__(self, episodes: list[np.ndarray], num_frames: int, crop: int | None, seed: int):
        self.episodes, self.num_frames, self.crop, self.seed = episodes, num_frames, crop, seed
        self.step = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])

    def batch(self, batch_size: int) -> torch.Tensor:
        rng = np.random.default_rng([self.seed, self.step])
        self.step += 1
        clips = []
        for _ in range(batch_size):
            frames = self.episodes[rng.integers(len(self.episodes))]
            t = rng.integers(len(frames) - self.num_frames + 1)
            clip = frames[t: t + self.num_frames]
            if self.crop:
                h, w = clip.shape[1:3]
                y, x = rng.integers(h - self.crop + 1), rng.integers(w - self.crop + 1)
                clip = clip[:, y: y + self.crop, x: x + self.crop]
            if rng.random() < 0.5:  # the scenes are left-right symmetric enough; doubles the looks
                clip = clip[:, :, ::-1]
            clips.append(np.ascontiguousarray(clip))
        return to_vae_video(np.stack(clips))


def to_vae_video(frames: np.ndarray) -> torch.Tensor:
    """(B, T, H, W, 3) uint8 -> (B, 3, T, H, W) in [-1, 1]."""
    return torch.from_numpy(frames).permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


def held_out_clips(episodes: list[np.ndarray], num_frames: int, count: int) -> np.ndarray:
    """The first ``num_frames`` of up to ``count`` episodes, spread evenly: (N, T, H, W, 3)."""
    picks = np.linspace(0, len(episodes) - 1, min(count, len(episodes))).round().astype(int)
    return np.stack([episodes[i][:num_frames] for i in picks])


@torch.no_grad()
def reconstruction_psnr(vae, clips: np.ndarray, batch_size: int = 4) -> float:
    """Mean per-frame PSNR (uint8 range) of ``vae``'s reconstructions (posterior mode)."""
    values = []
    for i in range(0, len(clips), batch_size):
        video = to_vae_video(clips[i: i + batch_size]).to(vae.device, vae.dtype)
        # an even number of latent frames decodes to 4L frames, one chunk more than 4(L-1)+1
        recon = vae.decode(vae.encode(video).latent_dist.mode()).sample[:, :, : video.shape[2]]
        recon = ((recon.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        recon = recon.permute(0, 2, 3, 4, 1).cpu().numpy()  # (B, T, H, W, 3) like the clips
        for generated, truth in zip(recon, clips[i: i + batch_size]):
            values.append(psnr_frames(generated, truth))
    return float(np.concatenate(values).mean())


@torch.no_grad()
def latent_std(vae, episodes: list[np.ndarray], num_frames: int, count: int = 32) -> float:
    clips = held_out_clips(episodes, num_frames, count)
    means = [vae.encode(to_vae_video(clips[i: i + 4]).to(vae.device)).latent_dist.mean for i in range(0, len(clips), 4)]
    return float(torch.cat(means).float().std())


# ------------------------------------------------------------------ trainer


def build_vae(config: VAEConfig, height: int, width: int) -> AutoencoderKLCogVideoX:
    m = config.model
    if m.pretrained_path:
        return AutoencoderKLCogVideoX.from_pretrained(m.pretrained_path)
    n = len(m.block_out_channels)
    return AutoencoderKLCogVideoX(
        down_block_types=("CogVideoXDownBlock3D",) * n, up_block_types=("CogVideoXUpBlock3D",) * n,
        block_out_channels=tuple(m.block_out_channels), latent_channels=m.latent_channels,
        layers_per_block=m.layers_per_block, norm_num_groups=m.norm_num_groups,
        temporal_compression_ratio=m.temporal_compression_ratio, sample_height=height, sample_width=width,
    )


class VAETrainer(AcceleratedRun):
    def __init__(self, config: VAEConfig, log=print):
        super().__init__(config, log=log)
        self.output_dir.mkdir(parents=True, exist_ok=True)
        d = config.data
        self.log(f"reading frames of {d.path} ({d.split}, {d.val_split})")
        train = read_episode_frames(d.path, d.split, d.camera, d.num_frames)
        self.val_clips = held_out_clips(read_episode_frames(d.path, d.val_split, d.camera, d.val_frames),
                                        d.val_frames, d.val_clips)
        self.train_episodes = train
        height, width = train[0].shape[1:3]
        torch.manual_seed(config.seed)
        self.vae = build_vae(config, height, width)
        o = config.optim
        self.optimizer = torch.optim.AdamW(self.vae.parameters(), lr=o.learning_rate, weight_decay=o.weight_decay)
        self.lr_scheduler = get_scheduler(o.lr_scheduler, self.optimizer, num_warmup_steps=o.lr_warmup_steps,
                                          num_training_steps=config.train.max_steps)
        self.vae, self.optimizer, self.lr_scheduler = self.accelerator.prepare(
            self.vae, self.optimizer, self.lr_scheduler)
        self.stream = FrameClips(train, d.num_frames, d.crop, config.seed)
        self.log(f"VAE: {sum(p.numel() for p in self.vae.parameters()) / 1e6:.2f}M parameters, "
                 f"{len(train)} train episodes, {len(self.val_clips)} held-out clips")

    def loss(self, video: torch.Tensor) -> tuple[torch.Tensor, dict]:
        posterior = self.vae.encode(video).latent_dist
        recon = self.vae.decode(posterior.sample()).sample[:, :, : video.shape[2]]  # see reconstruction_psnr
        l1 = (recon - video).abs().mean()
        kl = posterior.kl().mean() / video[0].numel()
        return l1 + self.config.loss.kl_weight * kl, {"l1": float(l1.detach()), "kl": float(kl.detach())}

    def validate(self) -> float:
        vae = self.accelerator.unwrap_model(self.vae)
        vae.eval()
        psnr = reconstruction_psnr(vae, self.val_clips)
        vae.train()
        return psnr

    def train(self, resume: str | None = None) -> Path:
        cfg, acc = self.config, self.accelerator
        step = self.resume_or_start(resume, "orv-vae")
        self.vae.train()
        t0 = time.perf_counter()
        while step < cfg.train.max_steps:
            with acc.accumulate(self.vae):
                loss, parts = self.loss(self.stream.batch(cfg.train.batch_size).to(acc.device))
                acc.backward(loss)
                if acc.sync_gradients:
                    acc.clip_grad_norm_(self.vae.parameters(), cfg.optim.max_grad_norm)
                self.optimizer.step()
                self.lr_scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
            if not acc.sync_gradients:
                continue
            step += 1
            record = {"step": step, "loss": float(loss.detach()), **parts, "lr": self.lr_scheduler.get_last_lr()[0]}
            if cfg.train.val_every and step % cfg.train.val_every == 0:
                record["val_psnr"] = self.validate()
            if step % cfg.train.log_every == 0 or "val_psnr" in record:
                record["seconds"] = round(time.perf_counter() - t0, 1)
                self.write_log(record)
                self.log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            if step % cfg.train.checkpoint_every == 0 or step == cfg.train.max_steps:
                self.save_checkpoint(step)
        return self.finish()

    def finish(self) -> Path:
        vae = self.accelerator.unwrap_model(self.vae)
        vae.eval()
        d = self.config.data
        std = latent_std(vae, self.train_episodes, d.val_frames)
        vae.register_to_config(scaling_factor=1.0 / std)
        psnr = self.validate()
        final = self.output_dir / "final"
        if self.accelerator.is_main_process:
            vae.save_pretrained(final / "vae")
            (final / "metrics.json").write_text(json.dumps(
                {"val_psnr": psnr, "val_clips": len(self.val_clips), "val_frames": d.val_frames,
                 "latent_std": std, "scaling_factor": 1.0 / std, "steps": self.config.train.max_steps}, indent=1))
        self.log(f"held-out reconstruction PSNR {psnr:.2f} dB over {len(self.val_clips)} clips of {d.val_frames} "
                 f"frames; scaling_factor {1.0 / std:.4f}; saved {final / 'vae'}")
        return final / "vae"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="orv-vae-train", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="YAML config (see configs/small/vae.yaml)")
    parser.add_argument("--resume", default=None, help="'latest' or a checkpoint folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value (dotted key, YAML value)")
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    quiet(args.verbose)  # before any model is loaded
    try:
        config = load_config(args.config, args.overrides)
    except ConfigError as e:
        print(f"orv-vae-train: config error: {e}", file=sys.stderr)
        return 2
    try:
        VAETrainer(config).train(args.resume)
    except (DatasetError, FileNotFoundError, ValueError) as e:
        print(f"orv-vae-train: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

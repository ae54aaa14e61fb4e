"""Train the small painter: VAE, then the FLUX transformer (+ its text encoders), then the two
XLabs-style ControlNets (depth, semantics) on the frozen base; resumable exactly.

    python -m orv_engine.small.painter.train configs/small_painter/painter.yaml [--only vae,base,...]

Stages (each skipped when its ``final`` exists, else resumed from its last checkpoint):

  vae          ``AutoencoderKL`` on 64x64 frames: L1 + MSE + a tiny KL (FLUX's VAE objective
               without its adversarial and perceptual terms, which need a pretrained network)
  encode       posterior means of every frame; FLUX's ``shift_factor`` / ``scaling_factor`` are
               set from them (mean, 1 / std) and saved in the VAE's config
  base         ``FluxTransformer2DModel`` + CLIP + T5 trained jointly with rectified flow
               matching (x_t = (1 - s) x0 + s e, target e - x0), s ~ logit-normal shifted by the
               pipeline's own resolution shift, so training sees the sigmas sampling visits;
               each part of the appearance description (table, floor, objects, light) is left
               out with probability ``prompt_part_dropout``, so a prompt that leaves a part out
               is painted with that part drawn by the seed (diversity across seeds)
  controlnet   one ``FluxControlNetModel`` per map kind on the frozen base (the same loss; the
               control image made by the first-frame stage's own code, pixel-space as XLabs)
  assemble     the FLUX.1 folder (``FluxPipeline.save_pretrained``) and each ControlNet as a
               diffusers folder and as XLabs' single ``.safetensors`` file, float16

Why a hand-written loop: diffusers ships FLUX training only as example scripts (DreamBooth /
LoRA / ControlNet for the full-size model through accelerate and pretrained encoders), not as
an importable trainer, and none trains a FLUX from scratch with its VAE and text encoders;
the models and the sampling code are diffusers' own, only the loop is here.

Exact resumption: every step's batch and noise come from generators seeded by (seed, step)
and nothing has dropout, so a run killed after checkpoint k and resumed reproduces the
uninterrupted run's weights.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from diffusers import AutoencoderKL, FluxControlNetModel, FluxPipeline, FluxTransformer2DModel
from diffusers.image_processor import VaeImageProcessor
from diffusers.pipelines.flux.pipeline_flux import calculate_shift
from PIL import Image
from safetensors.torch import save_file
from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5Tokenizer

from orv_engine.small.painter.data import load_split
from orv_engine.sim.appearance import PROMPT_PARTS, Appearance
from orv_engine.small.painter.models import (CLIP_MAX_LENGTH, MAX_SEQUENCE_LENGTH, build_controlnet, build_scheduler,
                                             build_text_encoders, build_transformer, build_vae, to_xlabs_state_dict)

STAGES = ("vae", "encode", "base", "controlnet", "assemble")
KINDS = ("depth", "semantics")


# ------------------------------------------------------------------ helpers


def to_tensor_images(frames: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [-1, 1] (the VAE's and the hint block's range)."""
    return torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def lr_at(step: int, cfg: dict) -> float:
    """Linear warm-up, then cosine to a tenth."""
    if step < cfg["warmup"]:
        return cfg["lr"] * (step + 1) / cfg["warmup"]
    progress = (step - cfg["warmup"]) / max(1, cfg["steps"] - cfg["warmup"])
    return cfg["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def step_rng(seed: int, step: int, salt: int = 0) -> tuple[np.random.Generator, torch.Generator]:
    return np.random.default_rng([seed, step, salt]), torch.Generator().manual_seed(seed * 1_000_003 + step * 7 + salt)


class EMA:
    """Exponential moving average of parameters (diffusers' warm-up: decay <= (1 + n) / (10 + n))."""

    def __init__(self, params, decay: float):
        self.params = list(params)
        self.shadow = [p.detach().clone() for p in self.params]
        self.decay = decay

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for s, p in zip(self.shadow, self.params):
            s.mul_(d).add_(p.detach(), alpha=1 - d)

    @torch.no_grad()
    def copy_to(self) -> None:
        for s, p in zip(self.shadow, self.params):
            p.copy_(s)


def save_checkpoint(path: Path, step: int, modules: dict, optimizer, ema: EMA | None) -> None:
    state = {"step": step, "modules": {k: m.state_dict() for k, m in modules.items()},
             "optimizer": optimizer.state_dict(), "ema": None if ema is None else ema.shadow}
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, modules: dict, optimizer, ema: EMA | None) -> int:
    if not path.is_file():
        return 0
    state = torch.load(path, map_location="cpu", weights_only=False)
    for key, module in modules.items():
        module.load_state_dict(state["modules"][key])
    optimizer.load_state_dict(state["optimizer"])
    if ema is not None:
        for s, v in zip(ema.shadow, state["ema"]):
            s.copy_(v)
    print(f"resumed {path} at step {state['step']}", flush=True)
    return int(state["step"])


def train_loop(name: str, out: Path, cfg: dict, seed: int, every: int, modules: dict, params, loss_fn,
               ema_decay: float | None = None) -> None:
    """The shared loop: AdamW, warm-up + cosine, grad clip 1, checkpoints every ``every`` steps,
    per-step losses appended to ``out/log.txt``."""
    out.mkdir(parents=True, exist_ok=True)
    params = [p for p in params if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=0.0, betas=(0.9, 0.99))
    ema = EMA(params, ema_decay) if ema_decay else None
    ckpt = out / "checkpoint.pt"
    step = load_checkpoint(ckpt, modules, optimizer, ema)
    for m in modules.values():
        m.train()
    t0, window = time.perf_counter(), []
    with open(out / "log.txt", "a") as log:
        while step < cfg["steps"]:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            rng, gen = step_rng(seed, step)
            loss = loss_fn(rng, gen)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            if ema is not None:
                ema.update(step)
            step += 1
            window.append(loss.item())
            if step % 25 == 0 or step == cfg["steps"]:
                rate = (time.perf_counter() - t0) / len(window) if window else 0
                log.write(f"{name} step {step} loss {np.mean(window):.5f} lr {lr_at(step - 1, cfg):.2e} "
                          f"s/step {rate:.3f}\n")
                log.flush()
                print(f"{name} step {step}/{cfg['steps']} loss {np.mean(window):.5f} {rate:.3f} s/step", flush=True)
                t0, window = time.perf_counter(), []
            if step % every == 0 or step == cfg["steps"]:
                save_checkpoint(ckpt, step, modules, optimizer, ema)
    if ema is not None:
        ema.copy_to()
    for m in modules.values():
        m.eval()


# ------------------------------------------------------------------ flow matching pieces


def sample_sigmas(n: int, seq_len: int, scheduler_config, gen: torch.Generator) -> torch.Tensor:
    """Logit-normal sigmas shifted as the pipeline shifts its sampling sigmas for ``seq_len`` tokens."""
    u = torch.sigmoid(torch.randn(n, generator=gen))
    mu = calculate_shift(seq_len, scheduler_config.base_image_seq_len, scheduler_config.max_image_seq_len,
                         scheduler_config.base_shift, scheduler_config.max_shift)
    s = math.exp(mu)
    return s * u / (1 + (s - 1) * u)


def pack(latents: torch.Tensor) -> torch.Tensor:
    b, c, h, w = latents.shape
    return FluxPipeline._pack_latents(latents, b, c, h, w)


def position_ids(batch: int, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(image ids, text ids) of a batch of packed latents, as the pipeline makes them."""
    h, w = latents.shape[-2:]
    return (FluxPipeline._prepare_latent_image_ids(batch, h // 2, w // 2, "cpu", torch.float32),
            torch.zeros(MAX_SEQUENCE_LENGTH, 3))


def noised(x0: torch.Tensor, scheduler_config, gen: torch.Generator):
    """(noise, sigma, x_t) of rectified flow matching: x_t = (1 - s) x0 + s noise."""
    noise = torch.randn(x0.shape, generator=gen)
    sigma = sample_sigmas(x0.shape[0], x0.shape[1], scheduler_config, gen)
    return noise, sigma, (1 - sigma[:, None, None]) * x0 + sigma[:, None, None] * noise


def part_masks(rng: np.random.Generator, n: int, dropout: float) -> np.ndarray:
    """(n,) ints: bit i set = :data:`PROMPT_PARTS` [i] is described (each left out with ``dropout``)."""
    keep = rng.random((n, len(PROMPT_PARTS))) >= dropout
    return (keep * (1 << np.arange(len(PROMPT_PARTS)))).sum(1)


def described(appearance: Appearance, mask: int) -> str:
    """The appearance's description with the parts of ``mask`` (see :func:`part_masks`)."""
    return appearance.prompt([part for i, part in enumerate(PROMPT_PARTS) if mask >> i & 1])


def encode_text(tokenizer, text_encoder, tokenizer_2, text_encoder_2, prompts: list[str]):
    """(pooled (N, D), sequence (N, L, D)) as ``FluxPipeline.encode_prompt`` computes them."""
    ids = tokenizer(prompts, padding="max_length", max_length=CLIP_MAX_LENGTH, truncation=True,
                    return_tensors="pt").input_ids
    pooled = text_encoder(ids, output_hidden_states=False).pooler_output
    ids_2 = tokenizer_2(prompts, padding="max_length", max_length=MAX_SEQUENCE_LENGTH, truncation=True,
                        return_tensors="pt").input_ids
    return pooled, text_encoder_2(ids_2, output_hidden_states=False)[0]


class Painter:
    """The parts in training: paths under ``out``, the data, the modules as they are trained."""

    def __init__(self, config_path: str | Path, kinds=KINDS):
        self.kinds = tuple(kinds)
        self.cfg = yaml.safe_load(Path(config_path).read_text())
        self.out = Path(self.cfg["out"])
        self.seed = int(self.cfg["seed"])
        self.every = int(self.cfg["checkpoint_every"])
        data = Path(self.cfg["data"])
        self.train = load_split(data / "train.npz")
        self.appearances = [Appearance.from_json(text) for text in self.train["appearances"]]
        self.scheduler = build_scheduler()
        self.control_processor = VaeImageProcessor(vae_scale_factor=16)  # the pipeline's (vae factor 8 x 2)

    # -------------------------------------------------- vae
    def stage_vae(self) -> None:
        final = self.out / "vae" / "final"
        if (final / "config.json").is_file():
            return
        torch.manual_seed(self.seed)
        vae = build_vae()
        images = to_tensor_images(self.train["frames"])
        cfg = self.cfg["vae"]

        def loss_fn(rng, gen):
            x = images[rng.integers(0, len(images), cfg["batch"])]
            posterior = vae.encode(x).latent_dist
            z = posterior.mean + posterior.std * torch.randn(posterior.mean.shape, generator=gen)
            recon = vae.decode(z).sample
            kl = posterior.kl().mean() / x[0].numel()
            return F.l1_loss(recon, x) + F.mse_loss(recon, x) + cfg["kl_weight"] * kl

        train_loop("vae", self.out / "vae", cfg, self.seed, self.every, {"vae": vae}, vae.parameters(), loss_fn)
        vae.save_pretrained(final)

    # -------------------------------------------------- encode
    def stage_encode(self) -> None:
        target = self.out / "latents.pt"
        if target.is_file():
            return
        vae = AutoencoderKL.from_pretrained(self.out / "vae" / "final").eval()
        images = to_tensor_images(self.train["frames"])
        with torch.no_grad():
            means = torch.cat([vae.encode(images[i:i + 64]).latent_dist.mean for i in range(0, len(images), 64)])
        shift, scale = float(means.mean()), float(1.0 / means.std())
        vae.register_to_config(shift_factor=shift, scaling_factor=scale)
        vae.save_pretrained(self.out / "vae" / "scaled")
        torch.save({"latents": (means - shift) * scale, "shift": shift, "scale": scale}, target)
        print(f"latents {tuple(means.shape)}: shift {shift:.4f}, scale {scale:.4f}", flush=True)

    def latents(self) -> torch.Tensor:
        return torch.load(self.out / "latents.pt")["latents"]

    # -------------------------------------------------- base
    def stage_base(self) -> None:
        final = self.out / "base" / "final"
        if (final / "transformer" / "config.json").is_file():
            return
        torch.manual_seed(self.seed + 1)
        transformer = build_transformer()
        tokenizer, text_encoder, tokenizer_2, text_encoder_2 = build_text_encoders(self.out / "base" / "clip_vocab")
        latents = self.latents()
        episode = self.train["episode"]
        cfg = self.cfg["base"]
        dropout = float(cfg.get("prompt_part_dropout", 0.0))
        b = cfg["batch"]
        img_ids, txt_ids = position_ids(b, latents)

        def loss_fn(rng, gen):
            index = rng.integers(0, len(latents), b)
            x0 = pack(latents[index])
            masks = part_masks(rng, b, dropout)
            pooled, seq = encode_text(tokenizer, text_encoder, tokenizer_2, text_encoder_2,
                                      [described(self.appearances[episode[i]], m) for i, m in zip(index, masks)])
            noise, sigma, xt = noised(x0, self.scheduler.config, gen)
            pred = transformer(hidden_states=xt, encoder_hidden_states=seq, pooled_projections=pooled, timestep=sigma,
                               img_ids=img_ids, txt_ids=txt_ids, return_dict=False)[0]
            return F.mse_loss(pred, noise - x0)

        modules = {"transformer": transformer, "text_encoder": text_encoder, "text_encoder_2": text_encoder_2}
        params = [p for m in modules.values() for p in m.parameters()]
        train_loop("base", self.out / "base", cfg, self.seed, self.every, modules, params, loss_fn, cfg["ema"])
        for key, module in modules.items():
            module.save_pretrained(final / key)
        tokenizer.save_pretrained(final / "tokenizer")
        tokenizer_2.save_pretrained(final / "tokenizer_2")

    def base_parts(self):
        final = self.out / "base" / "final"
        return (FluxTransformer2DModel.from_pretrained(final / "transformer").eval(),
                CLIPTokenizer.from_pretrained(final / "tokenizer"), CLIPTextModel.from_pretrained(final / "text_encoder").eval(),
                T5Tokenizer.from_pretrained(final / "tokenizer_2"),
                T5EncoderModel.from_pretrained(final / "text_encoder_2").eval())

    # -------------------------------------------------- controlnets
    def stage_controlnet(self) -> None:
        for kind in self.kinds:
            self.train_controlnet(kind)

    def control_images(self, kind: str) -> torch.Tensor:
        """The control images as the pipeline prepares them (``VaeImageProcessor.preprocess``)."""
        images = [Image.fromarray(a) for a in self.train[f"control_{kind}"]]
        return torch.cat([self.control_processor.preprocess(images[i:i + 256], height=64, width=64)
                          for i in range(0, len(images), 256)])

    def train_controlnet(self, kind: str) -> None:
        out = self.out / f"controlnet-{kind}"
        if (out / "final" / "config.json").is_file():
            return
        transformer, tokenizer, text_encoder, tokenizer_2, text_encoder_2 = self.base_parts()
        for p in transformer.parameters():
            p.requires_grad_(False)
        torch.manual_seed(self.seed + 2 + KINDS.index(kind))
        net = build_controlnet(transformer)
        latents, controls = self.latents(), self.control_images(kind)
        # the text encoders are frozen now: encode every description of every episode once
        # (row episode * 2**parts + mask)
        combos = 1 << len(PROMPT_PARTS)
        prompts = [described(a, m) for a in self.appearances for m in range(combos)]
        with torch.no_grad():
            encoded = [encode_text(tokenizer, text_encoder, tokenizer_2, text_encoder_2, prompts[i:i + 256])
                       for i in range(0, len(prompts), 256)]
        pooled_all, seq_all = torch.cat([e[0] for e in encoded]), torch.cat([e[1] for e in encoded])
        episode = self.train["episode"]
        cfg = self.cfg["controlnet"]
        dropout = float(cfg.get("prompt_part_dropout", 0.0))
        b = cfg["batch"]
        img_ids, txt_ids = position_ids(b, latents)

        def loss_fn(rng, gen):
            index = rng.integers(0, len(latents), b)
            x0 = pack(latents[index])
            rows = episode[index] * combos + part_masks(rng, b, dropout)
            pooled, seq = pooled_all[rows], seq_all[rows]
            noise, sigma, xt = noised(x0, self.scheduler.config, gen)
            blocks, singles = net(hidden_states=xt, controlnet_cond=controls[index], conditioning_scale=1.0,
                                  encoder_hidden_states=seq, pooled_projections=pooled, timestep=sigma, img_ids=img_ids,
                                  txt_ids=txt_ids, return_dict=False)
            pred = transformer(hidden_states=xt, encoder_hidden_states=seq, pooled_projections=pooled, timestep=sigma,
                               img_ids=img_ids, txt_ids=txt_ids, controlnet_block_samples=blocks,
                               controlnet_single_block_samples=singles, controlnet_blocks_repeat=True,
                               return_dict=False)[0]
            return F.mse_loss(pred, noise - x0)

        train_loop(f"controlnet-{kind}", out, cfg, self.seed + 10 + KINDS.index(kind), self.every, {"controlnet": net},
                   net.parameters(), loss_fn, cfg["ema"])
        net.save_pretrained(out / "final")

    # -------------------------------------------------- assemble
    def stage_assemble(self) -> Path:
        """-> ``out/shipped``: ``flux/`` (FLUX.1 layout), ``controlnet-{kind}/`` (diffusers) and
        ``controlnet-{kind}.safetensors`` (XLabs' single file), all float16."""
        shipped = self.out / "shipped"
        if (shipped / "controlnet-semantics.safetensors").is_file():
            return shipped
        tmp = self.out / "shipped.tmp"
        transformer, tokenizer, text_encoder, tokenizer_2, text_encoder_2 = self.base_parts()
        vae = AutoencoderKL.from_pretrained(self.out / "vae" / "scaled")
        pipe = FluxPipeline(scheduler=build_scheduler(), vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                            text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2, transformer=transformer)
        pipe.to(torch.float16).save_pretrained(tmp / "flux")
        for kind in KINDS:
            net = FluxControlNetModel.from_pretrained(self.out / f"controlnet-{kind}" / "final").to(torch.float16)
            net.save_pretrained(tmp / f"controlnet-{kind}")
            save_file(to_xlabs_state_dict(net), str(tmp / f"controlnet-{kind}.safetensors"))
        if shipped.exists():
            shutil.rmtree(shipped)
        os.replace(tmp, shipped)
        return shipped


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("config")
    parser.add_argument("--only", default=",".join(STAGES))
    parser.add_argument("--kinds", default=",".join(KINDS), help="the ControlNets of the controlnet stage (two "
                        "processes can train one each, side by side)")
    args = parser.parse_args(argv)
    painter = Painter(args.config, [k for k in args.kinds.split(",") if k])
    for stage in [s.strip() for s in args.only.split(",") if s.strip()]:
        if stage not in STAGES:
            parser.error(f"unknown stage {stage!r}; stages: {', '.join(STAGES)}")
        t0 = time.perf_counter()
        getattr(painter, f"stage_{stage}")()
        print(f"== painter {stage}: {time.perf_counter() - t0:.0f} s", flush=True)


if __name__ == "__main__":
    main()

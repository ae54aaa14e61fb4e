"""VAE encoding for training, online or pre-encoded to disk.

Online, every step encodes its clips with the frozen VAE. Pre-encoded (``data.latents_dir``),
each clip is encoded once and training reads small files instead of decoding JPEGs and
running the 3D VAE. What is stored keeps the recipe exact:

- the video's posterior (``mean``, ``logvar``): training draws a fresh latent sample each
  step, as the online path does;
- the first frame in pixels (uint8): its noise augmentation happens in pixel space, so the
  VAE encodes the (tiny, one-frame) noisy first frame each step;
- condition latents as the posterior mode (as ORVPipeline encodes "engine" conditions), or,
  for the "orv-official" encoding, their posteriors (a fresh sample each step, as upstream);
- the chunk-aligned actions and the instruction;
- ``validation.num_clips`` held-out clips in pixels (``val/``), so validation needs no
  dataset reader either.

Layout: ``index.json`` (written last: a folder without it is incomplete; encoding it again
skips the clips an interrupted run already wrote, see ``_resumable_files``),
``train/r<rank>-<n>.pt``, ``val/<n>.pt``. ``index.json`` records what the latents were made
from; a config that differs is refused rather than silently trained on stale latents (a run
without conditions may read a store made with them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from orv_engine.training.data import clip_config_of, make_dataset
from orv_engine.training.losses import noisy_first_frames


# ---------------------------------------------------------------- VAE helpers


def _scale(vae, latents: torch.Tensor) -> torch.Tensor:
    factor = vae.config.scaling_factor
    scaled = latents / factor if getattr(vae.config, "invert_scale_latents", False) else latents * factor
    return scaled.permute(0, 2, 1, 3, 4)  # (B, C, L, h, w) -> (B, L, C, h, w)


@torch.no_grad()
def encode_posterior(vae, video: torch.Tensor):
    """(B, 3, T, H, W) in [-1, 1] -> the VAE posterior (mean/logvar in (B, C, L, h, w))."""
    return vae.encode(video.to(vae.device, vae.dtype)).latent_dist


def sample_latents(vae, mean: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A posterior sample from stored (B, C, L, h, w) parameters, scaled and (B, L, C, h, w)."""
    std = torch.exp(0.5 * logvar.float().clamp(-30.0, 20.0))
    eps = torch.randn(mean.shape, generator=generator).to(mean.device)
    return _scale(vae, mean.float() + std * eps)


@torch.no_grad()
def encode_first_frames(vae, frames: torch.Tensor, generator: torch.Generator, noise_mean: float, noise_std: float):
    """(B, 3, H, W) in [-1, 1] -> scaled latents (B, 1, C, h, w) of the noise-augmented frames."""
    noisy = noisy_first_frames(frames.float(), generator, noise_mean, noise_std)
    dist = encode_posterior(vae, noisy[:, :, None])
    return sample_latents(vae, dist.mean, dist.logvar, generator)


@torch.no_grad()
def encode_conditions(vae, conditions: dict[str, torch.Tensor], kinds, generator: torch.Generator | None = None):
    """{kind: (B, 3, T, H, W)} -> (B, L, k*C, h, w), concatenated in ``kinds`` order: posterior
    modes ("engine"), or posterior samples drawn from ``generator`` ("orv-official": upstream
    samples its condition latents)."""
    if not kinds:
        return None
    out = []
    for k in kinds:
        dist = encode_posterior(vae, conditions[k])
        out.append(_scale(vae, dist.mode()) if generator is None else sample_latents(vae, dist.mean, dist.logvar, generator))
    return torch.cat(out, dim=2)


def batch_to_latents(vae, batch: dict, kinds, generator: torch.Generator, loss_config, device, dtype,
                     sample_conditions: bool = False):
    """A batch (pixels from a clip loader, or stored latents) -> what the loss takes.

    Returns (video_latents, image_latents, actions, condition_latents), on ``device``.
    """
    if "video" in batch:  # online: (B, T, 3, H, W) in [-1, 1]
        video = batch["video"].to(device).permute(0, 2, 1, 3, 4)
        dist = encode_posterior(vae, video)
        video_latents = sample_latents(vae, dist.mean, dist.logvar, generator)
        first = batch["video"][:, 0].to(device)
        conditions = None
        if kinds:
            conditions = encode_conditions(vae, {k: v.to(device) for k, v in batch["conditions"].items()}, kinds,
                                           generator if sample_conditions else None)
    else:  # pre-encoded
        video_latents = sample_latents(vae, batch["video_mean"].to(device), batch["video_logvar"].to(device), generator)
        first = batch["first_frame"].to(device).float().div(127.5).sub(1.0)
        conditions = None
        if kinds and "condition_mean" in batch:  # stored posteriors ("orv-official"): a fresh sample each step
            mean, logvar = batch["condition_mean"].to(device), batch["condition_logvar"].to(device)  # (B, k, C, L, h, w)
            conditions = torch.cat([sample_latents(vae, mean[:, i], logvar[:, i], generator)
                                    for i in range(mean.shape[1])], dim=2)
        elif kinds:
            conditions = batch["condition_latents"].to(device)
    if "image_mean" in batch:  # stored noise-augmented encodings (B, N, C, 1, h, w): draw one each
        b, n = batch["image_mean"].shape[:2]
        pick = torch.randint(0, n, (b,), generator=generator)
        rows = torch.arange(b)
        image_latents = sample_latents(vae, batch["image_mean"][rows, pick].to(device),
                                       batch["image_logvar"][rows, pick].to(device), generator)
    else:
        image_latents = encode_first_frames(vae, first, generator, loss_config.image_noise_mean,
                                            loss_config.image_noise_std)
    actions = batch["actions"].to(device)
    cast = (lambda x: None if x is None else x.to(device=device, dtype=dtype))
    return cast(video_latents), cast(image_latents), cast(actions), cast(conditions)


# ---------------------------------------------------------------- the store on disk


def fingerprint(config) -> dict:
    """What the stored latents depend on; a different value means they are stale."""
    return {
        "data_path": str(Path(config.data.path).expanduser().resolve()) if config.data.path else "",
        "split": config.data.split,
        "clip": clip_config_of(config.data).to_dict(),
        "condition_kinds": list(config.model.condition_kinds),
        "conditions_source": config.data.conditions_source,
        "condition_encoding": config.data.condition_encoding or "engine",
        "vae": str((Path(config.model.pretrained_path).expanduser() / "vae").resolve()),
        "max_clips": config.data.max_clips,
        "first_frame_variants": config.data.first_frame_variants,
        "image_noise": [config.loss.image_noise_mean, config.loss.image_noise_std],
    }


def store_is_complete(latents_dir) -> bool:
    return latents_dir is not None and (Path(latents_dir).expanduser() / "index.json").is_file()


def check_store(config) -> dict:
    index = json.loads((Path(config.data.latents_dir).expanduser() / "index.json").read_text())
    expected = fingerprint(config)
    stored = index["fingerprint"]
    # The dataset path may move (another machine); only the content keys must agree. A run
    # without conditions reads a store that has them (they are not loaded), e.g. stage 1 on
    # stage 2's store: the videos, first frames and actions are the same.
    ignored = {"data_path"}
    if not expected["condition_kinds"]:
        ignored |= {"condition_kinds", "conditions_source", "condition_encoding"}
    diff = [k for k in expected if k not in ignored and stored.get(k) != expected[k]]
    if diff:
        raise ValueError(
            f"data.latents_dir {config.data.latents_dir} was encoded with other settings ({', '.join(diff)}: "
            f"{ {k: stored.get(k) for k in diff} } vs { {k: expected[k] for k in diff} }); "
            "point data.latents_dir at a new folder or delete it to re-encode"
        )
    return index


def _save(obj: dict, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


@torch.no_grad()
def pre_encode(config, vae, rank: int = 0, world_size: int = 1, log=print) -> int:
    """Encode this rank's share of the training clips into ``data.latents_dir``.

    Returns the number of clips written by this rank. The index is written by
    :func:`write_index` once every rank is done.
    """
    root = Path(config.data.latents_dir).expanduser()
    (root / "train").mkdir(parents=True, exist_ok=True)
    done = _resumable_files(config, root, rank)
    kinds = config.model.condition_kinds
    dataset = make_dataset(config, config.data.split, shuffle=False)
    dataset.rank, dataset.world_size = rank, world_size
    loader = DataLoader(dataset, batch_size=1, num_workers=config.data.num_workers,
                        multiprocessing_context="spawn" if config.data.num_workers else None)
    limit = None if config.data.max_clips is None else -(-config.data.max_clips // world_size)
    for name in [f for f in done if limit is not None and int(f[5:-3]) >= limit]:  # an earlier, larger run's
        (root / "train" / name).unlink()
    n = 0
    for sample in loader:
        if limit is not None and n >= limit:
            break
        if f"r{rank:03d}-{n:07d}.pt" in done:  # encoded by an interrupted earlier run
            n += 1
            continue
        video = sample["video"].to(vae.device).permute(0, 2, 1, 3, 4)
        dist = encode_posterior(vae, video)
        record = {
            "video_mean": dist.mean[0].cpu().float(),
            "video_logvar": dist.logvar[0].cpu().float(),
            "first_frame": ((sample["video"][0, 0] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8),
            "actions": sample["actions"][0],
            "instruction": sample["instruction"][0],
            "episode_id": sample["episode_id"][0],
        }
        variants = config.data.first_frame_variants
        if variants:
            g = torch.Generator().manual_seed(config.seed * 1_000_003 + rank * 10_000_019 + n)
            frames = sample["video"][:, 0].repeat(variants, 1, 1, 1).to(vae.device)
            noisy = noisy_first_frames(frames, g, config.loss.image_noise_mean, config.loss.image_noise_std)
            image = encode_posterior(vae, noisy[:, :, None])
            record["image_mean"], record["image_logvar"] = image.mean.cpu().float(), image.logvar.cpu().float()
        if kinds:
            conds = {k: v.to(vae.device) for k, v in sample["conditions"].items()}
            if config.data.condition_encoding == "orv-official":  # keep the posteriors: sampled every step
                dists = [encode_posterior(vae, conds[k]) for k in kinds]
                record["condition_mean"] = torch.stack([d.mean[0] for d in dists]).cpu().float()
                record["condition_logvar"] = torch.stack([d.logvar[0] for d in dists]).cpu().float()
            else:
                record["condition_latents"] = encode_conditions(vae, conds, kinds)[0].cpu().float()
        _save(record, root / "train" / f"r{rank:03d}-{n:07d}.pt")
        n += 1
        if n % 100 == 0:
            log(f"pre-encoded {n} clips")
    if rank == 0:
        save_val_clips(config, root / "val")
    return n


def _resumable_files(config, root: Path, rank: int) -> set[str]:
    """This rank's clip files an interrupted run left, if it was encoding the same thing.

    ``partial.json`` records the fingerprint when encoding starts; the clip order is fixed
    (no shuffle), so file ``n`` is the same clip again. ``max_clips`` may differ: a store is
    a prefix of one with more clips. Anything else differing: the leftovers are deleted."""
    partial = root / f"partial-r{rank:03d}.json"
    now = {k: v for k, v in fingerprint(config).items() if k != "max_clips"}
    files = set(p.name for p in (root / "train").glob(f"r{rank:03d}-*.pt"))
    if partial.is_file() and json.loads(partial.read_text()) == now:
        return files
    for name in files:
        (root / "train" / name).unlink()
    tmp = partial.with_suffix(".tmp")
    tmp.write_text(json.dumps(now, indent=1))
    os.replace(tmp, partial)
    return set()


def save_val_clips(config, folder: Path) -> int:
    """Keep ``validation.num_clips`` held-out clips in pixels (for validation without a reader)."""
    folder.mkdir(parents=True, exist_ok=True)
    clips = held_out_clips(config)
    for i, clip in enumerate(clips):
        _save(clip, folder / f"{i:04d}.pt")
    return len(clips)


def write_index(config) -> None:
    root = Path(config.data.latents_dir).expanduser()
    files = sorted(p.name for p in (root / "train").glob("*.pt"))
    if not files:
        raise ValueError(f"no training clips were encoded into {root}: is data.split {config.data.split!r} empty?")
    index = {"fingerprint": fingerprint(config), "num_clips": len(files), "files": files}
    tmp = root / "index.json.tmp"
    tmp.write_text(json.dumps(index, indent=1))
    os.replace(tmp, root / "index.json")


def held_out_clips(config) -> list[dict]:
    """The first ``validation.num_clips`` clips of ``data.val_split`` as dicts of arrays."""
    if config.validation.every == 0:
        return []
    stored = Path(config.data.latents_dir).expanduser() / "val" if config.data.latents_dir else None
    if stored is not None and stored.is_dir() and store_is_complete(config.data.latents_dir):
        files = sorted(stored.glob("*.pt"))
        if len(files) >= config.validation.num_clips:
            return [torch.load(f, weights_only=False) for f in files[: config.validation.num_clips]]
    dataset = make_dataset(config, config.data.val_split, shuffle=False, as_clips=True)
    dataset.rank, dataset.world_size = 0, 1
    out = []
    for clip in dataset:
        out.append({
            "frames": clip.frames, "actions": clip.actions, "conditions": dict(clip.conditions),
            "instruction": clip.instruction, "episode_id": clip.episode_id,
            "num_real_frames": clip.num_real_frames,
        })
        if len(out) >= config.validation.num_clips:
            break
    return out


class LatentDataset(torch.utils.data.Dataset):
    """The training clips of a complete ``latents_dir`` (map-style: resuming skips by index)."""

    def __init__(self, latents_dir, kinds):
        self.root = Path(latents_dir).expanduser()
        index = json.loads((self.root / "index.json").read_text())
        self.files = index["files"]
        self.kinds = list(kinds)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        record = torch.load(self.root / "train" / self.files[i], weights_only=False)
        record.pop("episode_id", None)
        if not self.kinds:
            for key in ("condition_latents", "condition_mean", "condition_logvar"):
                record.pop(key, None)
        return record


class EpochSampler(torch.utils.data.Sampler):
    """Indices for one rank: a permutation per ``(seed, epoch)``, dealt out over ranks with
    equal counts, starting ``start`` indices in (the data position of a resumed run)."""

    def __init__(self, n: int, seed: int, rank: int = 0, world_size: int = 1, shuffle: bool = True):
        self.n, self.seed, self.rank, self.world_size, self.shuffle = n, seed, rank, world_size, shuffle
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def indices(self) -> list[int]:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(self.n) if self.shuffle else np.arange(self.n)
        per_rank = self.n // self.world_size
        mine = order[self.rank :: self.world_size][:per_rank]
        return [int(i) for i in mine[self.start :]]

    def __iter__(self):
        return iter(self.indices())

    def __len__(self) -> int:
        return max(0, self.n // self.world_size - self.start)

"""Helpers of the VLA tests: tiny random backbone folders and the shared episodes' statistics."""

from __future__ import annotations

from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def write_statistics(bridge_debug: Path, out: Path) -> Path:
    """The OpenVLA-format statistics of the shared Bridge episodes (what `orv-export merge` writes)."""
    from vla_finetune.rlds_source import RLDSSource
    from vla_finetune.statistics import dataset_statistics, write_json

    return write_json(out, dataset_statistics([RLDSSource(bridge_debug)], "openvla"))


def tiny_config(name: str, tmp: Path, backbone: Path, bridge_debug: Path, statistics: Path, **train):
    """``configs/vla/<name>.yaml`` pointed at the test's folders."""
    from vla_finetune.training.config import config_from_dict

    values = yaml.safe_load((PROJECT_ROOT / "configs" / "vla" / f"{name}.yaml").read_text())
    values["output_dir"] = str(tmp / "run")
    values["policy"]["pretrained_path"] = str(backbone)
    values["data"]["datasets"] = [{"path": str(bridge_debug), "weight": 1.0}]
    values["data"]["statistics"] = str(statistics)
    values["train"].update(train)
    return config_from_dict(values)


def fixed_batch(policy, bridge_debug: Path, size: int = 48) -> dict:
    """``size`` windows spread over the shared episodes (fixed seed), collated."""
    from torch.utils.data import DataLoader

    from vla_finetune.policy_data import PolicyWindowDataset, SourceSpec

    history = getattr(policy.config, "history_len", 1)
    ds = PolicyWindowDataset([SourceSpec(str(bridge_debug))], policy.normalizer, history=history,
                             chunk=policy.config.chunk_size, seed=123, shuffle_buffer=256)
    return next(iter(DataLoader(ds, batch_size=size)))


def batch_loss(policy, batch) -> float:
    import torch

    was_training = policy.training
    policy.eval()
    with torch.no_grad():
        loss = policy(images=batch["images"], instruction=list(batch["instruction"]), actions=batch["actions"],
                      action_mask=batch["action_mask"])["loss"].item()
    policy.train(was_training)
    return loss


def train_tiny(name: str, tmp: Path, backbone: Path, bridge_debug: Path, statistics: Path, steps: int, options=None,
               **train):
    """Train a tiny config ``steps`` steps; returns (trainer, summary, loss before, loss after) on a fixed batch."""
    from vla_finetune.training.trainer import VLATrainer

    config = tiny_config(name, tmp, backbone, bridge_debug, statistics, max_steps=steps, **train)
    config.policy.options.update(options or {})
    trainer = VLATrainer(config, log=lambda message: None)
    trainer.setup()
    batch = fixed_batch(trainer.unwrapped, bridge_debug)
    before = batch_loss(trainer.unwrapped, batch)
    summary = trainer.train()
    return trainer, summary, before, batch_loss(trainer.unwrapped, batch)

"""VP²'s planning costs, as rewards (higher is better), over predicted frames.

Why as in VP² (``vp2.mpc.objectives``): the normalised score compares planners, so the
cost must be theirs: the RGB squared error is *summed* over time, pixels and channels (VP²
notes that a mean gives magnitudes too small for MPPI's temperature ``gamma=0.05``), and
the RoboDesk tasks add a per-task success classifier's logits, summed over time
(``0.5 * mse + 10 * classifier`` in VP²'s RoboDesk runs). ``ConvPredictor`` has VP²'s
layer shapes, so its released ``cost_classifiers/<task>.pt`` state dicts load as they are.

Shapes: predictions ``(N, T, H, W, 3)`` float in [0, 1]; goals ``(T, H, W, 3)`` or
``(H, W, 3)`` (broadcast over time); rewards ``(N,)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn


def _check_frames(predictions: np.ndarray) -> np.ndarray:
    predictions = np.asarray(predictions, dtype=np.float32)
    if predictions.ndim != 5 or predictions.shape[-1] != 3:
        raise ValueError(f"predictions must be (samples, time, H, W, 3), got shape {predictions.shape}")
    return predictions


class SquaredErrorReward:
    """``-weight * sum_{t,h,w,c} (pred - goal)^2`` per sample."""

    def __init__(self, weight: float = 1.0):
        self.weight = weight

    def __call__(self, predictions: np.ndarray, goal: np.ndarray) -> np.ndarray:
        predictions = _check_frames(predictions)
        goal = np.asarray(goal, dtype=np.float32)
        if goal.ndim == 3:
            goal = goal[None]
        if goal.shape[1:] != predictions.shape[2:] or goal.shape[0] not in (1, predictions.shape[1]):
            raise ValueError(
                f"goal of shape {goal.shape} does not match predictions {predictions.shape[1:]} "
                "(goal frames must be 1 or as many as predicted frames, same H, W, 3)"
            )
        return -self.weight * ((predictions - goal[None]) ** 2).sum(axis=(1, 2, 3, 4))


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int = 32):
        super().__init__()
        self.cnv = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, channels, 3, padding=1)
        )

    def forward(self, x):
        return x + self.cnv(x)


class ConvPredictor(nn.Module):
    """VP²'s task-success classifier: 64x64 RGB in [0, 1] (B, 3, 64, 64) -> one logit.

    Parameter names match VP²'s ``vp2.util.conv_predictor.ConvPredictor`` (one linear layer
    variant), so its checkpoints load with ``load_state_dict``.
    """

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(3, 32, 3, padding=1),
            _ResidualBlock(), nn.ReLU(), _ResidualBlock(), nn.ReLU(), _ResidualBlock(), nn.ReLU(),
            nn.Conv2d(32, 3, 3, padding=1),
            nn.Flatten(), nn.Linear(3 * 64 * 64, 1024), nn.ReLU(), nn.Linear(1024, 1),
        )

    def forward(self, x):
        return self.net(x)


class ClassifierReward:
    """``weight * sum_t logit(frame_t)`` from a success classifier (VP²'s ClassifierReward)."""

    def __init__(self, classifier: nn.Module, weight: float = 1.0, max_batch_size: int = 1024,
                 use_probs: bool = False, device: str | torch.device = "cpu"):
        self.classifier = classifier.to(device).eval()
        self.weight, self.max_batch_size, self.use_probs, self.device = weight, max_batch_size, use_probs, device

    @classmethod
    def from_checkpoint(cls, path: str | Path, **kwargs) -> "ClassifierReward":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(
                f"success classifier {path} not found (VP²'s are cost_classifiers/<task>.pt in its data release)"
            )
        model = ConvPredictor()
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return cls(model, **kwargs)

    @torch.no_grad()
    def __call__(self, predictions: np.ndarray, goal=None) -> np.ndarray:
        predictions = _check_frames(predictions)
        n, t = predictions.shape[:2]
        flat = torch.from_numpy(predictions.reshape(n * t, *predictions.shape[2:])).permute(0, 3, 1, 2)
        scores = []
        for start in range(0, flat.shape[0], self.max_batch_size):
            logits = self.classifier(flat[start : start + self.max_batch_size].to(self.device)).float()
            scores.append(torch.sigmoid(logits) if self.use_probs else logits)
        return self.weight * torch.cat(scores).view(n, t).sum(dim=1).cpu().numpy()


class CombinedReward:
    """A sum of rewards (VP²'s CombinedObjective): e.g. 0.5 * RGB error + 10 * classifier."""

    def __init__(self, rewards: list):
        if not rewards:
            raise ValueError("CombinedReward needs at least one reward")
        self.rewards = rewards

    def __call__(self, predictions: np.ndarray, goal: np.ndarray) -> np.ndarray:
        return np.sum([r(predictions, goal) for r in self.rewards], axis=0)


def build_reward(classifier_path: str | Path | None = None, mse_weight: float | None = None,
                 classifier_weight: float = 10.0, device: str = "cpu"):
    """VP²'s objectives: RGB squared error alone (weight 1), or with a classifier given
    0.5 * RGB squared error + 10 * classifier logits (VP²'s RoboDesk setting)."""
    if classifier_path is None:
        return SquaredErrorReward(1.0 if mse_weight is None else mse_weight)
    return CombinedReward([
        SquaredErrorReward(0.5 if mse_weight is None else mse_weight),
        ClassifierReward.from_checkpoint(classifier_path, weight=classifier_weight, device=device),
    ])

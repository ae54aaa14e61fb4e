"""SpatialVLA's spatial action tokens: 3 tokens per 7-d action, bins fitted to the data.

One action ``[dx, dy, dz, droll, dpitch, dyaw, gripper]`` (normalised, see
:mod:`vla_finetune.policy_data.normalization`) becomes three tokens:

- translation in spherical coordinates: polar angle ``phi = arccos(dz / r)`` (16 bins),
  azimuth ``theta = atan2(dy, dx)`` (32 bins), radius ``r = |(dx, dy, dz)|`` (8 bins)
  -> one of 16 * 32 * 8 = 4096 tokens;
- rotation ``(roll, pitch, yaw)``: 16 * 16 * 16 = 4096 tokens;
- gripper: 2 tokens (closed, open).

8194 tokens in all (the SpatialVLA paper's grid). Bins are *Gaussian-spaced*: each
coordinate gets a normal distribution fitted to its values in the training data and its
bin edges at equal-probability quantiles of that normal, so bins are dense where the data
are. A bin decodes to its probability-mass midpoint. Ranges assume the ``bounds_q99``
normalisation (arm in [-1, 1]); values outside fall into the outermost bins. Fitted grids are saved as JSON next
to the policy (``action_tokenizer.json``).

Hand-written (numpy + ``statistics.NormalDist``) because it is ~100 lines and no
maintained library implements this grid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np

# (name, number of bins, valid range) of the 7 coordinates, in token order.
TRANSLATION_AXES = (("phi", 16, (0.0, np.pi)), ("theta", 32, (-np.pi, np.pi)), ("r", 8, (0.0, np.sqrt(3.0))))
ROTATION_AXES = (("roll", 16, (-1.0, 1.0)), ("pitch", 16, (-1.0, 1.0)), ("yaw", 16, (-1.0, 1.0)))
GRIPPER_BINS = 2


class ActionTokenizerError(ValueError):
    """Bad actions or a bad saved grid."""


def to_spherical(translation: np.ndarray) -> np.ndarray:
    """``(..., 3)`` xyz -> ``(..., 3)`` ``(phi, theta, r)``; phi = theta = 0 at r = 0."""
    x, y, z = translation[..., 0], translation[..., 1], translation[..., 2]
    r = np.sqrt(x * x + y * y + z * z)
    phi = np.arccos(np.clip(z / np.maximum(r, 1e-12), -1.0, 1.0))
    theta = np.arctan2(y, x)
    return np.stack([phi, theta, r], axis=-1)


def from_spherical(spherical: np.ndarray) -> np.ndarray:
    phi, theta, r = spherical[..., 0], spherical[..., 1], spherical[..., 2]
    return np.stack([r * np.sin(phi) * np.cos(theta), r * np.sin(phi) * np.sin(theta), r * np.cos(phi)], axis=-1)


def gaussian_bins(values: np.ndarray, num_bins: int, value_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """``(edges (n+1,), centres (n,))`` at equal-probability quantiles of a normal fitted to ``values``."""
    lo, hi = value_range
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    mean = float(values.mean()) if values.size else 0.5 * (lo + hi)
    std = float(values.std()) if values.size > 1 else 0.0
    if std < 1e-6:  # a constant coordinate: spread the bins over the whole range
        std = (hi - lo) / 4.0
    normal = NormalDist(mean, std)
    # quantile levels restricted to the valid range, so no bin lies wholly outside it
    p_lo, p_hi = normal.cdf(lo), normal.cdf(hi)
    levels = p_lo + (p_hi - p_lo) * np.linspace(0.0, 1.0, num_bins + 1)
    inner = [normal.inv_cdf(float(np.clip(p, 1e-12, 1 - 1e-12))) for p in levels[1:-1]]
    edges = np.array([lo, *inner, hi], np.float64)
    edges = np.maximum.accumulate(np.clip(edges, lo, hi))
    mids = p_lo + (p_hi - p_lo) * (np.arange(num_bins) + 0.5) / num_bins
    centres = np.array([normal.inv_cdf(float(np.clip(p, 1e-12, 1 - 1e-12))) for p in mids])
    centres = np.clip(centres, edges[:-1], edges[1:])
    return edges, centres


@dataclass
class SpatialActionTokenizer:
    """Maps normalised 7-d actions to token indices in ``[0, vocab_size)`` and back."""

    edges: dict[str, list[float]] = field(default_factory=dict)
    centres: dict[str, list[float]] = field(default_factory=dict)

    @property
    def translation_bins(self) -> tuple[int, ...]:
        return tuple(n for _, n, _ in TRANSLATION_AXES)

    @property
    def rotation_bins(self) -> tuple[int, ...]:
        return tuple(n for _, n, _ in ROTATION_AXES)

    @property
    def num_translation_tokens(self) -> int:
        return int(np.prod(self.translation_bins))

    @property
    def num_rotation_tokens(self) -> int:
        return int(np.prod(self.rotation_bins))

    @property
    def vocab_size(self) -> int:
        return self.num_translation_tokens + self.num_rotation_tokens + GRIPPER_BINS

    tokens_per_action = 3

    # ------------------------------------------------------------ fitting / io

    @classmethod
    def fit(cls, actions: np.ndarray) -> "SpatialActionTokenizer":
        """Fit the Gaussian bins to ``(N, 7)`` normalised actions (arm in [-1, 1])."""
        actions = _check(actions)
        spherical = to_spherical(actions[:, :3])
        tok = cls()
        for i, (name, n, rng) in enumerate(TRANSLATION_AXES):
            values = spherical[:, i] if name == "r" else spherical[spherical[:, 2] > 1e-6, i]
            e, c = gaussian_bins(values, n, rng)
            tok.edges[name], tok.centres[name] = e.tolist(), c.tolist()
        for i, (name, n, rng) in enumerate(ROTATION_AXES):
            e, c = gaussian_bins(actions[:, 3 + i], n, rng)
            tok.edges[name], tok.centres[name] = e.tolist(), c.tolist()
        return tok

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps({"kind": "spatialvla_gaussian", "edges": self.edges, "centres": self.centres},
                                   indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SpatialActionTokenizer":
        path = Path(path)
        if not path.is_file():
            raise ActionTokenizerError(f"action tokenizer grid {path} not found")
        data = json.loads(path.read_text())
        names = [a[0] for a in TRANSLATION_AXES + ROTATION_AXES]
        missing = [n for n in names if n not in data.get("edges", {}) or n not in data.get("centres", {})]
        if missing:
            raise ActionTokenizerError(f"{path}: no bins for {', '.join(missing)}")
        return cls(edges=data["edges"], centres=data["centres"])

    # ------------------------------------------------------------ encode / decode

    def _index(self, name: str, values: np.ndarray) -> np.ndarray:
        edges = np.asarray(self.edges[name])
        return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """``(..., 7)`` normalised actions -> ``(..., 3)`` int64 token indices."""
        actions = np.asarray(actions, np.float64)
        if actions.shape[-1] != 7:
            raise ActionTokenizerError(f"actions must be 7-d (..., 7), got shape {actions.shape}")
        spherical = to_spherical(actions[..., :3])
        t = np.zeros(actions.shape[:-1], np.int64)
        for i, (name, n, _) in enumerate(TRANSLATION_AXES):
            t = t * n + self._index(name, spherical[..., i])
        rot = np.zeros(actions.shape[:-1], np.int64)
        for i, (name, n, _) in enumerate(ROTATION_AXES):
            rot = rot * n + self._index(name, actions[..., 3 + i])
        g = (actions[..., 6] > 0.5).astype(np.int64)
        return np.stack([t, self.num_translation_tokens + rot,
                         self.num_translation_tokens + self.num_rotation_tokens + g], axis=-1)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """``(..., 3)`` token indices -> ``(..., 7)`` normalised actions (bin centres)."""
        tokens = np.asarray(tokens, np.int64)
        if tokens.shape[-1] != 3:
            raise ActionTokenizerError(f"tokens must come in triples (..., 3), got shape {tokens.shape}")
        t = tokens[..., 0]
        rot = tokens[..., 1] - self.num_translation_tokens
        g = tokens[..., 2] - self.num_translation_tokens - self.num_rotation_tokens
        if (t < 0).any() or (t >= self.num_translation_tokens).any() or (rot < 0).any() \
                or (rot >= self.num_rotation_tokens).any() or (g < 0).any() or (g >= GRIPPER_BINS).any():
            raise ActionTokenizerError("token out of its slot's range (translation, rotation, gripper order)")
        spherical = np.zeros(tokens.shape[:-1] + (3,))
        for i, (name, n, _) in reversed(list(enumerate(TRANSLATION_AXES))):
            spherical[..., i] = np.asarray(self.centres[name])[t % n]
            t = t // n
        rotation = np.zeros(tokens.shape[:-1] + (3,))
        for i, (name, n, _) in reversed(list(enumerate(ROTATION_AXES))):
            rotation[..., i] = np.asarray(self.centres[name])[rot % n]
            rot = rot // n
        return np.concatenate([from_spherical(spherical), rotation, g[..., None].astype(np.float64)], axis=-1)

    def bin_indices(self, actions: np.ndarray) -> np.ndarray:
        """``(..., 7)`` per-coordinate bin index (phi, theta, r, roll, pitch, yaw, gripper)."""
        actions = np.asarray(actions, np.float64)
        spherical = to_spherical(actions[..., :3])
        out = [self._index(name, spherical[..., i]) for i, (name, _, _) in enumerate(TRANSLATION_AXES)]
        out += [self._index(name, actions[..., 3 + i]) for i, (name, _, _) in enumerate(ROTATION_AXES)]
        out.append((actions[..., 6] > 0.5).astype(np.int64))
        return np.stack(out, axis=-1)


def _check(actions: np.ndarray) -> np.ndarray:
    actions = np.asarray(actions, np.float64)
    if actions.ndim != 2 or actions.shape[1] != 7:
        raise ActionTokenizerError(f"fit needs (N, 7) actions, got shape {actions.shape}")
    if len(actions) == 0:
        raise ActionTokenizerError("fit needs at least one action")
    return actions

"""SpatialVLA's spatial action tokens: 3 tokens per 7-d action on a Gaussian-spaced grid.

One action ``[dx, dy, dz, droll, dpitch, dyaw, gripper]`` (normalised, see
:mod:`vla_finetune.policy_data.normalization`) becomes three tokens:

- translation in spherical coordinates: polar angle ``theta = atan2(sqrt(x^2 + y^2), z)``
  in [0, pi] (16 bins), azimuth ``phi = atan2(y, x)`` in [-pi, pi] (32 bins), radius
  ``r = |(x, y, z)|`` in [0, sqrt 3] (8 bins) -> token ``theta_i * 32 * 8 + phi_i * 8 + r_i``;
- rotation ``(roll, pitch, yaw)`` in [-1, 1]^3, 16 bins each -> ``4096 + roll_i * 256 + pitch_i * 16 + yaw_i``;
- gripper: ``8192`` (closed, value < 0.5) or ``8193`` (open).

8194 tokens in all. What was learned from upstream (GitHub SpatialVLA/SpatialVLA,
``model/action_tokenizer.py`` and the released ``processor_config.json``) and is followed
here exactly, so that a converted release decodes as it was trained:

- the names and order of the axes above (upstream calls the polar angle ``theta`` and the
  azimuth ``phi``), the token layout, and the bin counts of ``action_config.num_bins``;
- the grid is a set of *edges* per axis (``bin_policy`` in ``processor_config.json``:
  ``{"translation": {"theta_bins", "phi_bins", "r_bins"}, "rotation": {"roll_bins",
  "pitch_bins", "yaw_bins"}}``, ``n + 1`` increasing values spanning the axis range);
- a token decodes to the *midpoint of its bin's edges*; the decoded translation is
  clipped to [-1, 1] per coordinate (the sphere of radius sqrt 3 circumscribes the cube);
- encoding clips actions to [-1, 1] and puts a value in the bin whose edges enclose it
  (the outermost bins take values beyond the range); gripper ``>= 0.5`` is open;
- a new grid's edges are equal-probability quantiles of a normal fitted to each axis's
  values, restricted to the axis range (upstream ``get_bin_policy`` with ``gs_params``).

Our choice: policies started from a plain PaliGemma fit that grid to their own training
actions (:meth:`SpatialActionTokenizer.fit`, zero-radius translations left out of the
angle fits); a converted release keeps the released grid (its embedding rows were
trained on it) and so does its post-finetuning. Both decode with the same edge-midpoint
rule, so one grid file format serves both (``action_tokenizer.json``, the ``bin_policy``
layout). Hand-written (numpy + ``statistics.NormalDist``) because it is ~150 lines and
upstream's version needs a tokenizer object and scipy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist

import numpy as np

# (name, default number of bins, valid range) of the 6 binned coordinates, in token order.
TRANSLATION_AXES = (("theta", 16, (0.0, np.pi)), ("phi", 32, (-np.pi, np.pi)), ("r", 8, (0.0, np.sqrt(3.0))))
ROTATION_AXES = (("roll", 16, (-1.0, 1.0)), ("pitch", 16, (-1.0, 1.0)), ("yaw", 16, (-1.0, 1.0)))
AXES = TRANSLATION_AXES + ROTATION_AXES
GRIPPER_BINS = 2
GRID_KIND = "spatialvla_bin_policy"


class ActionTokenizerError(ValueError):
    """Bad actions or a bad saved grid."""


def to_spherical(translation: np.ndarray) -> np.ndarray:
    """``(..., 3)`` xyz -> ``(..., 3)`` ``(theta, phi, r)`` (polar, azimuth, radius); 0, 0 at r = 0."""
    x, y, z = translation[..., 0], translation[..., 1], translation[..., 2]
    theta = np.arctan2(np.sqrt(x * x + y * y), z)
    phi = np.arctan2(y, x)
    r = np.sqrt(x * x + y * y + z * z)
    return np.stack([theta, phi, r], axis=-1)


def from_spherical(spherical: np.ndarray) -> np.ndarray:
    theta, phi, r = spherical[..., 0], spherical[..., 1], spherical[..., 2]
    return np.stack([r * np.sin(theta) * np.cos(phi), r * np.sin(theta) * np.sin(phi), r * np.cos(theta)], axis=-1)


def gaussian_edges(values: np.ndarray, num_bins: int, value_range: tuple[float, float]) -> np.ndarray:
    """``(n + 1,)`` edges at equal-probability quantiles of a normal fitted to ``values``, within the range."""
    lo, hi = value_range
    values = np.asarray(values, np.float64)
    values = values[np.isfinite(values)]
    mean = float(values.mean()) if values.size else 0.5 * (lo + hi)
    std = float(values.std()) if values.size > 1 else 0.0
    if std < 1e-6:  # a constant coordinate: spread the bins over the whole range
        std = (hi - lo) / 4.0
    normal = NormalDist(mean, std)
    p_lo, p_hi = normal.cdf(lo), normal.cdf(hi)
    levels = p_lo + (p_hi - p_lo) * np.linspace(0.0, 1.0, num_bins + 1)
    inner = [normal.inv_cdf(float(np.clip(p, 1e-12, 1 - 1e-12))) for p in levels[1:-1]]
    edges = np.array([lo, *inner, hi], np.float64)
    return np.maximum.accumulate(np.clip(edges, lo, hi))


@dataclass
class SpatialActionTokenizer:
    """Maps normalised 7-d actions to token indices in ``[0, vocab_size)`` and back."""

    edges: dict[str, list[float]] = field(default_factory=dict)  # axis name -> n + 1 increasing edges

    tokens_per_action = 3

    # ------------------------------------------------------------ grid shape

    def bins(self, name: str) -> int:
        return len(self.edges[name]) - 1

    @property
    def centres(self) -> dict[str, np.ndarray]:
        """Edge midpoints: what each bin decodes to (upstream's rule)."""
        return {name: 0.5 * (np.asarray(e[:-1]) + np.asarray(e[1:])) for name, e in self.edges.items()}

    @property
    def translation_bins(self) -> tuple[int, ...]:
        return tuple(self.bins(n) for n, _, _ in TRANSLATION_AXES)

    @property
    def rotation_bins(self) -> tuple[int, ...]:
        return tuple(self.bins(n) for n, _, _ in ROTATION_AXES)

    @property
    def num_translation_tokens(self) -> int:
        return int(np.prod(self.translation_bins))

    @property
    def num_rotation_tokens(self) -> int:
        return int(np.prod(self.rotation_bins))

    @property
    def vocab_size(self) -> int:
        return self.num_translation_tokens + self.num_rotation_tokens + GRIPPER_BINS

    # ------------------------------------------------------------ fitting / io

    @classmethod
    def fit(cls, actions: np.ndarray) -> "SpatialActionTokenizer":
        """Fit the Gaussian grid (the paper's bin counts) to ``(N, 7)`` normalised actions."""
        actions = _check(actions)
        spherical = to_spherical(np.clip(actions[:, :3], -1.0, 1.0))
        moving = spherical[:, 2] > 1e-6  # the angles of a zero translation are meaningless
        tok = cls()
        for i, (name, n, rng) in enumerate(TRANSLATION_AXES):
            values = spherical[:, i] if name == "r" else spherical[moving, i]
            tok.edges[name] = gaussian_edges(values, n, rng).tolist()
        for i, (name, n, rng) in enumerate(ROTATION_AXES):
            tok.edges[name] = gaussian_edges(np.clip(actions[:, 3 + i], -1, 1), n, rng).tolist()
        return tok

    def to_bin_policy(self) -> dict:
        """The grid in upstream's ``processor_config.json`` ``bin_policy`` layout."""
        return {"translation": {f"{n}_bins": list(self.edges[n]) for n, _, _ in TRANSLATION_AXES},
                "rotation": {f"{n}_bins": list(self.edges[n]) for n, _, _ in ROTATION_AXES}}

    @classmethod
    def from_bin_policy(cls, bin_policy, num_bins: dict | None = None, where: str = "bin_policy"
                        ) -> "SpatialActionTokenizer":
        """A grid from upstream's ``bin_policy`` (checked against ``action_config.num_bins`` if given)."""
        tok = cls()
        for group, axes in (("translation", TRANSLATION_AXES), ("rotation", ROTATION_AXES)):
            block = bin_policy.get(group) if isinstance(bin_policy, dict) else None
            if not isinstance(block, dict):
                raise ActionTokenizerError(f"{where}: no '{group}' bins")
            for name, _, (lo, hi) in axes:
                key = f"{name}_bins"
                edges = np.asarray(block.get(key, []), np.float64)
                field_name = f"{where}.{group}.{key}"
                if edges.ndim != 1 or len(edges) < 2:
                    raise ActionTokenizerError(f"{field_name}: missing or fewer than 2 edges")
                if np.any(np.diff(edges) < 0) or not np.all(np.isfinite(edges)):
                    raise ActionTokenizerError(f"{field_name}: edges must be finite and increasing")
                if abs(edges[0] - lo) > 1e-6 or abs(edges[-1] - hi) > 1e-6:
                    raise ActionTokenizerError(f"{field_name}: edges must span [{lo:.6g}, {hi:.6g}], "
                                               f"got [{edges[0]:.6g}, {edges[-1]:.6g}]")
                if num_bins is not None:
                    expected = (num_bins.get(group) or {}).get(key)
                    if expected != len(edges) - 1:
                        raise ActionTokenizerError(f"{field_name}: {len(edges) - 1} bins but action_config.num_bins."
                                                   f"{group}.{key} says {expected}")
                tok.edges[name] = edges.tolist()
        if num_bins is not None:
            if num_bins.get("gripper", GRIPPER_BINS) != GRIPPER_BINS:
                raise ActionTokenizerError(f"{where}: action_config.num_bins.gripper must be {GRIPPER_BINS}")
            total = num_bins.get("total")
            if total is not None and total != tok.vocab_size:
                raise ActionTokenizerError(f"{where}: action_config.num_bins.total is {total}, the bins give "
                                           f"{tok.vocab_size}")
        return tok

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps({"kind": GRID_KIND, "bin_policy": self.to_bin_policy()}, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SpatialActionTokenizer":
        path = Path(path)
        if not path.is_file():
            raise ActionTokenizerError(f"action tokenizer grid {path} not found")
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ActionTokenizerError(f"{path}: not valid JSON: {err}") from None
        if "bin_policy" in data:
            return cls.from_bin_policy(data["bin_policy"], where=str(path))
        if data.get("kind") == "spatialvla_gaussian":
            # the first ORV format: same layout, our old axis names (phi = polar, theta = azimuth)
            renamed = {"phi": "theta", "theta": "phi"}
            edges = {renamed.get(k, k): v for k, v in data.get("edges", {}).items()}
            policy = {"translation": {f"{n}_bins": edges.get(n, []) for n, _, _ in TRANSLATION_AXES},
                      "rotation": {f"{n}_bins": edges.get(n, []) for n, _, _ in ROTATION_AXES}}
            return cls.from_bin_policy(policy, where=str(path))
        raise ActionTokenizerError(f"{path}: no 'bin_policy' (not a SpatialVLA action grid)")

    # ------------------------------------------------------------ encode / decode

    def _index(self, name: str, values: np.ndarray) -> np.ndarray:
        edges = np.asarray(self.edges[name])
        return np.clip(np.searchsorted(edges, values, side="right") - 1, 0, len(edges) - 2)

    def bin_indices(self, actions: np.ndarray) -> np.ndarray:
        """``(..., 7)`` per-coordinate bin index (theta, phi, r, roll, pitch, yaw, gripper)."""
        actions = np.clip(np.asarray(actions, np.float64), -1.0, 1.0)
        spherical = to_spherical(actions[..., :3])
        out = [self._index(name, spherical[..., i]) for i, (name, _, _) in enumerate(TRANSLATION_AXES)]
        out += [self._index(name, actions[..., 3 + i]) for i, (name, _, _) in enumerate(ROTATION_AXES)]
        out.append((actions[..., 6] >= 0.5).astype(np.int64))
        return np.stack(out, axis=-1)

    def encode(self, actions: np.ndarray) -> np.ndarray:
        """``(..., 7)`` normalised actions -> ``(..., 3)`` int64 token indices."""
        actions = np.asarray(actions, np.float64)
        if actions.shape[-1] != 7:
            raise ActionTokenizerError(f"actions must be 7-d (..., 7), got shape {actions.shape}")
        idx = self.bin_indices(actions)
        t = np.zeros(actions.shape[:-1], np.int64)
        for i, n in enumerate(self.translation_bins):
            t = t * n + idx[..., i]
        rot = np.zeros(actions.shape[:-1], np.int64)
        for i, n in enumerate(self.rotation_bins):
            rot = rot * n + idx[..., 3 + i]
        nt, nr = self.num_translation_tokens, self.num_rotation_tokens
        return np.stack([t, nt + rot, nt + nr + idx[..., 6]], axis=-1)

    def decode(self, tokens: np.ndarray) -> np.ndarray:
        """``(..., 3)`` token indices -> ``(..., 7)`` normalised actions (edge midpoints)."""
        tokens = np.asarray(tokens, np.int64)
        if tokens.shape[-1] != 3:
            raise ActionTokenizerError(f"tokens must come in triples (..., 3), got shape {tokens.shape}")
        nt, nr = self.num_translation_tokens, self.num_rotation_tokens
        t, rot, g = tokens[..., 0], tokens[..., 1] - nt, tokens[..., 2] - nt - nr
        if (t < 0).any() or (t >= nt).any() or (rot < 0).any() or (rot >= nr).any() \
                or (g < 0).any() or (g >= GRIPPER_BINS).any():
            raise ActionTokenizerError("token out of its slot's range (translation, rotation, gripper order)")
        centres = self.centres
        spherical = np.zeros(tokens.shape[:-1] + (3,))
        for i, (name, _, _) in reversed(list(enumerate(TRANSLATION_AXES))):
            n = self.bins(name)
            spherical[..., i] = centres[name][t % n]
            t = t // n
        rotation = np.zeros(tokens.shape[:-1] + (3,))
        for i, (name, _, _) in reversed(list(enumerate(ROTATION_AXES))):
            n = self.bins(name)
            rotation[..., i] = centres[name][rot % n]
            rot = rot // n
        translation = np.clip(from_spherical(spherical), -1.0, 1.0)
        return np.concatenate([translation, rotation, g[..., None].astype(np.float64)], axis=-1)


def _check(actions: np.ndarray) -> np.ndarray:
    actions = np.asarray(actions, np.float64)
    if actions.ndim != 2 or actions.shape[1] != 7:
        raise ActionTokenizerError(f"fit needs (N, 7) actions, got shape {actions.shape}")
    if len(actions) == 0:
        raise ActionTokenizerError("fit needs at least one action")
    return actions

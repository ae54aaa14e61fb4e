"""SpatialVLA's spatial action tokenizer: 8194 tokens, Gaussian bins, edge-midpoint decoding, round trips."""

from __future__ import annotations

import numpy as np
import pytest

from vla_finetune.policies.spatialvla.action_tokenizer import (
    ActionTokenizerError, SpatialActionTokenizer, from_spherical, to_spherical)


@pytest.fixture(scope="module")
def bridge_actions(bridge_debug):
    """The real Bridge actions, standardized and normalised as the policies see them."""
    from vla_finetune.policy_data.normalization import ActionNormalizer
    from vla_finetune.policy_data.dataset import SourceSpec, all_actions
    from vla_finetune.rlds_source import RLDSSource
    from vla_finetune.statistics import dataset_statistics

    statistics = dataset_statistics([RLDSSource(bridge_debug)], "openvla")
    return ActionNormalizer(statistics).normalize(all_actions([SourceSpec(str(bridge_debug))]))


def test_vocabulary_is_the_papers_grid(bridge_actions):
    tok = SpatialActionTokenizer.fit(bridge_actions)
    assert tok.translation_bins == (16, 32, 8) and tok.rotation_bins == (16, 16, 16)
    assert tok.vocab_size == 16 * 32 * 8 + 16 ** 3 + 2 == 8194
    tokens = tok.encode(bridge_actions)
    assert tokens.shape == (len(bridge_actions), 3)
    assert tokens[:, 0].max() < 4096 <= tokens[:, 1].min() and tokens[:, 1].max() < 8192 <= tokens[:, 2].min()


def test_round_trip_within_one_bin(bridge_actions):
    rng = np.random.default_rng(0)
    random = np.clip(rng.normal(0, 0.4, (2000, 7)), -1, 1)
    random[:, 6] = rng.integers(0, 2, len(random))
    tok = SpatialActionTokenizer.fit(bridge_actions)
    for actions in (bridge_actions, random):
        tokens = tok.encode(actions)
        decoded = tok.decode(tokens)
        # a decoded action lies in the same bin of every coordinate, so it re-encodes identically, except where
        # the decoded translation was clipped to the [-1, 1] cube (upstream's rule: the sphere circumscribes it)
        inside = (np.abs(decoded[:, :3]) < 1.0).all(1)
        assert inside.mean() > 0.8  # Bridge actions often sit at the q01/q99 bounds (+-1)
        np.testing.assert_array_equal(tok.bin_indices(decoded)[inside], tok.bin_indices(actions)[inside])
        np.testing.assert_array_equal(tok.bin_indices(decoded)[:, 3:], tok.bin_indices(actions)[:, 3:])
        # and every spherical / rotation coordinate is off by at most its bin's width
        coords = np.concatenate([to_spherical(actions[:, :3]), actions[:, 3:6]], 1)
        decoded_coords = np.concatenate([to_spherical(decoded[:, :3]), decoded[:, 3:6]], 1)
        names = ("theta", "phi", "r", "roll", "pitch", "yaw")
        for i, name in enumerate(names):
            edges = np.asarray(tok.edges[name])
            idx = tok.bin_indices(actions)[:, i]
            width = edges[idx + 1] - edges[idx]
            moving = to_spherical(actions[:, :3])[:, 2] > 1e-6 if name in ("theta", "phi") else slice(None)
            ok = inside[moving] if name in ("theta", "phi", "r") else slice(None)
            assert np.all(np.abs(coords[moving, i] - decoded_coords[moving, i])[ok] <= width[moving][ok] + 1e-9), name
        np.testing.assert_array_equal(decoded[:, 6], actions[:, 6] >= 0.5)


def test_decoding_is_upstreams_edge_midpoint_rule():
    """Token layout and decoding of upstream's action_tokenizer.py, on a hand-made grid."""
    policy = {"translation": {"theta_bins": np.linspace(0, np.pi, 17).tolist(),
                              "phi_bins": np.linspace(-np.pi, np.pi, 33).tolist(),
                              "r_bins": np.linspace(0, np.sqrt(3), 9).tolist()},
              "rotation": {k: np.linspace(-1, 1, 17).tolist() for k in ("roll_bins", "pitch_bins", "yaw_bins")}}
    tok = SpatialActionTokenizer.from_bin_policy(policy)
    theta_i, phi_i, r_i, roll_i, pitch_i, yaw_i = 3, 20, 5, 1, 15, 7
    tokens = np.array([theta_i * 256 + phi_i * 8 + r_i, 4096 + roll_i * 256 + pitch_i * 16 + yaw_i, 8193])
    mid = lambda e, i: 0.5 * (e[i] + e[i + 1])  # noqa: E731
    t, p, r = policy["translation"].values()
    theta, phi, rad = mid(t, theta_i), mid(p, phi_i), mid(r, r_i)
    xyz = np.clip([rad * np.sin(theta) * np.cos(phi), rad * np.sin(theta) * np.sin(phi), rad * np.cos(theta)], -1, 1)
    rot = [mid(policy["rotation"]["roll_bins"], roll_i), mid(policy["rotation"]["pitch_bins"], pitch_i),
           mid(policy["rotation"]["yaw_bins"], yaw_i)]
    np.testing.assert_allclose(tok.decode(tokens), [*xyz, *rot, 1.0], atol=1e-12)
    np.testing.assert_array_equal(tok.encode(tok.decode(tokens)), tokens)
    assert tok.to_bin_policy() == policy


def test_bins_are_gaussian_spaced(bridge_actions):
    tok = SpatialActionTokenizer.fit(bridge_actions)
    for name in ("roll", "r"):
        widths = np.diff(tok.edges[name])
        values = bridge_actions[:, 3] if name == "roll" else to_spherical(bridge_actions[:, :3])[:, 2]
        centre = int(np.argmin(np.abs(tok.centres[name] - values.mean())))
        # dense where the data are: the bin at the mean is narrower than the outermost ones
        assert widths[centre] < widths[0] and widths[centre] < widths[-1]
        counts = np.bincount(np.clip(np.searchsorted(tok.edges[name], values, "right") - 1, 0, len(widths) - 1),
                             minlength=len(widths))
        assert (counts > 0).sum() >= len(widths) // 2  # equal-mass bins: data spread over many of them


def test_spherical_round_trip():
    xyz = np.random.default_rng(1).normal(size=(100, 3))
    np.testing.assert_allclose(from_spherical(to_spherical(xyz)), xyz, atol=1e-9)


def test_save_load_and_bad_input(tmp_path, bridge_actions):
    tok = SpatialActionTokenizer.fit(bridge_actions)
    loaded = SpatialActionTokenizer.load(tok.save(tmp_path / "grid.json"))
    np.testing.assert_array_equal(loaded.encode(bridge_actions), tok.encode(bridge_actions))
    with pytest.raises(ActionTokenizerError, match=r"7-d"):
        tok.encode(np.zeros((4, 6)))
    with pytest.raises(ActionTokenizerError, match=r"\(N, 7\)"):
        SpatialActionTokenizer.fit(np.zeros((4, 8)))
    with pytest.raises(ActionTokenizerError, match="slot"):
        tok.decode(np.array([[5000, 5000, 8192]]))
    with pytest.raises(ActionTokenizerError, match="not found"):
        SpatialActionTokenizer.load(tmp_path / "missing.json")
    bad = tok.to_bin_policy()
    bad["rotation"]["yaw_bins"] = bad["rotation"]["yaw_bins"][::-1]
    with pytest.raises(ActionTokenizerError, match=r"rotation.yaw_bins: edges must be finite and increasing"):
        SpatialActionTokenizer.from_bin_policy(bad)


def test_first_format_grids_still_load(tmp_path, bridge_actions):
    """Grids saved before the upstream axis names (phi = polar, theta = azimuth) load unchanged."""
    import json

    tok = SpatialActionTokenizer.fit(bridge_actions)
    old = {"kind": "spatialvla_gaussian", "edges": {**tok.edges, "phi": tok.edges["theta"], "theta": tok.edges["phi"]},
           "centres": {}}
    (tmp_path / "old.json").write_text(json.dumps(old))
    np.testing.assert_array_equal(SpatialActionTokenizer.load(tmp_path / "old.json").encode(bridge_actions),
                                  tok.encode(bridge_actions))

"""SpatialVLA's spatial action tokenizer: 8194 tokens, Gaussian bins, round trip within one bin."""

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
        # the decoded action lies in the same bin of every coordinate, so re-encodes identically
        np.testing.assert_array_equal(tok.bin_indices(decoded), tok.bin_indices(actions))
        np.testing.assert_array_equal(tok.encode(decoded), tokens)
        # and every spherical / rotation coordinate is off by at most its bin's width
        coords = np.concatenate([to_spherical(actions[:, :3]), actions[:, 3:6]], 1)
        decoded_coords = np.concatenate([to_spherical(decoded[:, :3]), decoded[:, 3:6]], 1)
        names = ("phi", "theta", "r", "roll", "pitch", "yaw")
        for i, name in enumerate(names):
            edges = np.asarray(tok.edges[name])
            idx = tok.bin_indices(actions)[:, i]
            width = edges[idx + 1] - edges[idx]
            moving = to_spherical(actions[:, :3])[:, 2] > 1e-6 if name in ("phi", "theta") else slice(None)
            assert np.all(np.abs(coords[moving, i] - decoded_coords[moving, i]) <= width[moving] + 1e-9), name
        np.testing.assert_array_equal(decoded[:, 6], actions[:, 6] > 0.5)


def test_bins_are_gaussian_spaced(bridge_actions):
    tok = SpatialActionTokenizer.fit(bridge_actions)
    for name in ("roll", "r"):
        widths = np.diff(tok.edges[name])
        values = bridge_actions[:, 3] if name == "roll" else to_spherical(bridge_actions[:, :3])[:, 2]
        centre = int(np.argmin(np.abs(np.asarray(tok.centres[name]) - values.mean())))
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

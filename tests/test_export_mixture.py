"""BridgeV2 + synthetic: union statistics vs numpy, mixture proportions, the physical merge."""

from __future__ import annotations

import json

import numpy as np
import pytest

from export_clips import make_clips
from vla_finetune.bridge_schema import PROVENANCE_FIELDS, feature_signature
from vla_finetune.export import ExportConfig, export_clips
from vla_finetune.mixture import mixture_weights, sample_mixture, write_mixture


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    clips = make_clips(8, num_steps=10)
    result = export_clips(clips, tmp_path_factory.mktemp("synthetic"), ExportConfig(image_size=(64, 64)))
    return clips, result.path


@pytest.fixture(scope="module")
def mixture(tmp_path_factory, bridge_debug, synthetic):
    out = tmp_path_factory.mktemp("mixture")
    return out, write_mixture(bridge_debug, synthetic[1], out)


def _binarize(g):
    """Independent of vla_finetune: each in-between value takes the next decided one (or stays if none)."""
    out = []
    for i in range(len(g)):
        decided = [v for v in g[i:] if v > 0.95 or v < 0.05]
        out.append(float(decided[0] > 0.95) if decided else float(g[-1]))
    return np.array(out, np.float32)


def _direct(trajectories, framework):
    actions, proprio = [], []
    for states, acts in trajectories:
        if framework == "openvla":
            states, acts = states[1:], acts[1:]
        move = states[1:, :6] - states[:-1, :6]
        actions.append(np.concatenate([move, _binarize(acts[:, 6])[:-1, None]], 1))
        s = states[:-1]
        proprio.append(np.concatenate([s[:, :6], np.zeros((len(s), 1)), s[:, 6:]], 1) if framework == "openvla" else s)
    return np.concatenate(actions).astype(np.float64), np.concatenate(proprio).astype(np.float64)


def test_union_statistics_equal_direct_numpy(mixture, bridge_debug, synthetic):
    from orv_engine.data import RLDSReader

    out, description = mixture
    trajectories = []
    for split in ("train", "val"):
        trajectories += [(e.states, e.actions) for e in RLDSReader(bridge_debug, split=split, on_bad="raise")]
    assert len(trajectories) == 50
    trajectories += [(c.states, c.actions) for c in synthetic[0]]
    for framework, proprio_dim in (("octo", 7), ("openvla", 8)):
        stats = json.loads((out / f"dataset_statistics_{framework}.json").read_text())
        actions, proprio = _direct(trajectories, framework)
        assert stats["num_transitions"] == len(actions) and stats["num_trajectories"] == 58
        for key, values in (("action", actions), ("proprio", proprio)):
            assert len(stats[key]["mean"]) == (7 if key == "action" else proprio_dim)
            np.testing.assert_allclose(stats[key]["mean"], values.mean(0), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(stats[key]["std"], values.std(0), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(stats[key]["q01"], np.quantile(values, 0.01, axis=0), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(stats[key]["q99"], np.quantile(values, 0.99, axis=0), rtol=1e-5, atol=1e-7)
            np.testing.assert_allclose(stats[key]["min"], values.min(0), rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(stats[key]["max"], values.max(0), rtol=1e-6, atol=1e-7)
            assert stats[key]["p01"] == stats[key]["q01"] and stats[key]["p99"] == stats[key]["q99"]  # Octo's names
    run = json.loads((out / "dataset_statistics.json").read_text())  # OpenVLA's run-folder format
    assert set(run) == {"bridge_dataset", "orv_bridge"} and run["orv_bridge"] == run["bridge_dataset"]
    assert description["oxe_mixture"] == [["bridge_dataset", 1.0], ["orv_bridge", pytest.approx(1 / 3)]]
    shares = [d["sample_share"] for d in description["datasets"]]
    assert shares == pytest.approx([0.75, 0.25])


def test_mixture_weights():
    assert mixture_weights() == (1.0, pytest.approx(1 / 3))
    assert mixture_weights(0.5) == (1.0, 1.0)
    with pytest.raises(ValueError):
        mixture_weights(1.0)


@pytest.mark.parametrize("fraction", [0.25, 0.5])
def test_sampled_proportions_within_sampling_error(bridge_debug, synthetic, fraction):
    n = 4000
    counts = sample_mixture([bridge_debug, synthetic[1]], mixture_weights(fraction), n, seed=1)
    share = counts[1] / n
    sigma = np.sqrt(fraction * (1 - fraction) / n)
    assert counts.sum() == n and abs(share - fraction) < 4 * sigma, (share, fraction)


def test_physical_merge_via_cli(tmp_path, bridge_debug, synthetic, capsys):
    from orv_engine import import_order
    from vla_finetune.cli import main

    clips, path = synthetic
    assert main(["merge", "--bridge", str(bridge_debug), "--synthetic", str(path), "--out", str(tmp_path),
                 "--physical"]) == 0
    summary = json.loads(capsys.readouterr().out)
    merged = summary["merged"]
    # 0.25/0.75 * 450 Bridge transitions / 85 synthetic ones -> 2 copies of each synthetic episode
    assert merged["synthetic_repeat"] == 2
    assert merged["episodes"] == {"train": {"bridge": 25, "synthetic": 16}, "val": {"bridge": 25, "synthetic": 0}}
    assert abs(merged["synthetic_frame_share"] - 0.25) < 0.05
    ours = feature_signature(tmp_path / "bridge_orv_merged" / "1.0.0" / "features.json")
    real = feature_signature(bridge_debug / "features.json")
    assert {k: v for k, v in ours.items() if k in real} == real
    assert set(ours) - set(real) == {f"episode_metadata/{name}" for name in PROVENANCE_FIELDS}

    tfds = import_order.tensorflow_datasets()
    skip = {"steps": {"observation": {f"image_{k}": tfds.decode.SkipDecoding() for k in range(4)}}}

    def episodes(folder, split):
        builder = tfds.builder_from_directory(str(folder))
        ds = builder.as_dataset(split=split, decoders=skip, shuffle_files=False)
        ds = ds.map(lambda ep: {**ep, "steps": ep["steps"].batch(1 << 20).get_single_element()})
        return list(ds.as_numpy_iterator())

    merged_eps = episodes(tmp_path / "bridge_orv_merged" / "1.0.0", "train")
    assert len(merged_eps) == 41
    flags = [bool(e["episode_metadata"]["synthetic"]) for e in merged_eps]
    assert flags.count(True) == 16 and flags.count(False) == 25
    original = {f"train/{e['episode_metadata']['file_path'].decode()}#{e['episode_metadata']['episode_id']}": e
                for e in episodes(bridge_debug, "train")}
    for ep in merged_eps:
        if not ep["episode_metadata"]["synthetic"]:
            source = original[ep["episode_metadata"]["source_episode"].decode()]
            assert list(ep["steps"]["observation"]["image_0"]) == list(source["steps"]["observation"]["image_0"])
            np.testing.assert_array_equal(ep["steps"]["action"], source["steps"]["action"])
            assert ep["episode_metadata"]["source_dataset"] == b"bridge_dataset"
        else:
            assert json.loads(ep["episode_metadata"]["models"])["world_model"]["name"] == "orv-cogvideox-2b"
    stats = json.loads((tmp_path / "bridge_orv_merged" / "1.0.0" / "dataset_statistics_openvla.json").read_text())
    assert stats["num_trajectories"] == 25 + 16 + 25

"""RLDS mixture -> windows -> batches: alignment, padding masks, normalisation, sharding, mixing."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vla_finetune.policy_data import ActionNormalizer, PolicyWindowDataset, SourceSpec, StatisticsError


def _statistics(path):
    from vla_finetune.rlds_source import RLDSSource
    from vla_finetune.statistics import dataset_statistics

    return dataset_statistics([RLDSSource(path)], "openvla")


@pytest.fixture(scope="module")
def tiny_normalizer(tiny_bridge):
    return ActionNormalizer(_statistics(tiny_bridge))


def _step_of(image) -> int:  # rlds_fixtures.frame_for_step: value 10 + 8 * step
    return int(round((float(np.asarray(image).mean()) - 10) / 8))


def _key(sample) -> tuple:
    return (sample["instruction"], _step_of(sample["images"][-1]), round(float(sample["actions"][-1, 0, 0]), 5),
            round(float(sample["actions"][-1, 0, 1]), 5))


def test_windows_align_frames_actions_and_padding(tiny_bridge, tiny_normalizer):
    from vla_finetune.bridge_transforms import bridge_transform
    from vla_finetune.rlds_source import RLDSSource

    ds = PolicyWindowDataset([SourceSpec(str(tiny_bridge))], tiny_normalizer, history=3, chunk=4, shuffle=False)
    samples = list(ds)
    lengths = [20, 12, 9, 5, 16, 11]
    assert len(samples) == sum(n - 2 for n in lengths)  # OpenVLA's transform drops the first and last step
    expected = {}
    for states, actions in RLDSSource(tiny_bridge).trajectories(["train"]):
        _, relabelled, kept = bridge_transform(states, actions, "openvla")
        for i, step in enumerate(kept):
            expected.setdefault(int(step), []).append(tiny_normalizer.normalize(relabelled[i:i + 4]))
    for s in samples:
        assert s["images"].shape == (3, 32, 32, 3) and s["actions"].shape == (3, 4, 7)
        step = _step_of(s["images"][-1])
        assert step >= 1  # OpenVLA drops step 0
        mask = s["image_mask"].numpy()
        steps = [_step_of(im) for im in s["images"]]
        # history: consecutive kept steps, the padded ones repeat the first kept frame
        for h in range(3):
            assert steps[h] == (step - 2 + h if mask[h] else steps[list(mask).index(True)])
        assert mask[-1] and (not mask[0] or mask[1])
        # the last history step's chunk is the relabelled actions from this step on (valid part)
        valid = s["action_mask"][-1].numpy()
        assert valid[0]
        n = int(valid.sum())
        target = [e for e in expected[step]
                  if len(e) == n and np.allclose(e, s["actions"][-1][:n].numpy(), atol=1e-5)]
        assert target, f"no episode has the actions of the window at step {step}"
        # a chunk past the episode end repeats the last action and is masked
        if not valid.all():
            first_pad = int(np.argmin(valid))
            np.testing.assert_allclose(s["actions"][-1, first_pad:], s["actions"][-1, first_pad - 1].expand(
                4 - first_pad, 7))
        # chunk of history step h starts one action later than that of step h - 1
        if mask[-2]:
            np.testing.assert_allclose(s["actions"][-2, 1], s["actions"][-1, 0], atol=1e-6)
        assert np.abs(s["actions"][..., :6].numpy()).max() <= 1.0  # bounds_q99 normalised


def test_sharding_over_ranks_and_workers(tiny_bridge, tiny_normalizer):
    whole = sorted(_key(s) for s in PolicyWindowDataset([SourceSpec(str(tiny_bridge))], tiny_normalizer, seed=3))
    for world in (2, 4):  # 2 readers: whole shard files (3 files); 4 readers: single episodes
        parts = [sorted(_key(s) for s in PolicyWindowDataset([SourceSpec(str(tiny_bridge))], tiny_normalizer,
                                                               seed=3, rank=r, world_size=world))
                 for r in range(world)]
        assert sorted(k for p in parts for k in p) == whole
        assert all(len(p) > 0 for p in parts)
        for a in range(world):
            for b in range(a + 1, world):
                assert not set(parts[a]) & set(parts[b])


def test_shuffle_is_deterministic_per_epoch(tiny_bridge, tiny_normalizer):
    ds = PolicyWindowDataset([SourceSpec(str(tiny_bridge))], tiny_normalizer, shuffle_buffer=16, seed=5)
    first = [_key(s) for s in ds]
    assert [_key(s) for s in ds] == first
    ds.set_epoch(1)
    second = [_key(s) for s in ds]
    assert second != first and sorted(second) == sorted(first)


def test_mixture_samples_by_weight(tiny_bridge, bridge_debug):
    from vla_finetune.mixture import mixture_weights

    normalizer = ActionNormalizer(_statistics(bridge_debug))
    weights = mixture_weights(0.25)  # (1.0, 1/3): a quarter of the windows from the second dataset
    ds = PolicyWindowDataset([SourceSpec(str(bridge_debug), weights[0]), SourceSpec(str(tiny_bridge), weights[1])],
                             normalizer, image_size=32, seed=0, shuffle_buffer=32)
    sources = np.array([s["source"] for s in ds])
    assert (sources == 0).sum() == 25 * 8  # the epoch ends with the primary dataset, every window once
    share = (sources == 1).mean()
    assert 0.15 < share < 0.35, share


def test_batches_collate(bridge_debug):
    from torch.utils.data import DataLoader

    ds = PolicyWindowDataset([SourceSpec(str(bridge_debug))], ActionNormalizer(_statistics(bridge_debug)),
                             history=2, chunk=3)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["images"].shape == (4, 2, 64, 64, 3) and batch["actions"].shape == (4, 2, 3, 7)
    assert len(batch["instruction"]) == 4 and batch["action_mask"].dtype == __import__("torch").bool


def test_normalizer_round_trip_and_errors(tmp_path, bridge_debug):
    stats = _statistics(bridge_debug)
    normalizer = ActionNormalizer(stats)
    rng = np.random.default_rng(0)
    q01, q99 = (np.asarray(stats["action"][k]) for k in ("q01", "q99"))
    actions = (q01 + (q99 - q01) * rng.random((50, 7))).astype(np.float32)
    actions[:, 6] = rng.integers(0, 2, 50)
    normalized = normalizer.normalize(actions)
    assert np.abs(normalized[:, :6]).max() <= 1.0
    np.testing.assert_array_equal(normalized[:, 6], actions[:, 6])
    np.testing.assert_allclose(normalizer.unnormalize(normalized), actions, atol=1e-5)
    run_folder = tmp_path / "run_stats.json"  # OpenVLA's {dataset name: statistics}
    run_folder.write_text(json.dumps({"bridge_dataset": stats}))
    np.testing.assert_allclose(ActionNormalizer(run_folder).normalize(actions), normalized)

    with pytest.raises(StatisticsError, match="missing.json not found"):
        ActionNormalizer(tmp_path / "missing.json")
    (tmp_path / "empty.json").write_text(json.dumps({"proprio": {}}))
    with pytest.raises(StatisticsError, match="no 'action' statistics"):
        ActionNormalizer(tmp_path / "empty.json")
    with pytest.raises(StatisticsError, match="lack q01"):
        ActionNormalizer({"action": {"mean": [0] * 7}})
    with pytest.raises(ValueError, match="7-d"):
        normalizer.normalize(np.zeros((3, 6)))


def test_bad_dataset_path(tmp_path, tiny_normalizer):
    from orv_engine.data.errors import DatasetError

    with pytest.raises(DatasetError, match="not found"):
        PolicyWindowDataset([SourceSpec(str(tmp_path / "nope"))], tiny_normalizer)

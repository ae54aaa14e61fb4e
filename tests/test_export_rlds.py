"""Kept clips -> RLDS in BridgeV2's schema: round trip, schema, Octo/OpenVLA compatibility,
bad input, atomicity."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from export_clips import make_clip, make_clips
from vla_finetune.bridge_schema import PROVENANCE_FIELDS, feature_signature
from vla_finetune.bridge_transforms import binarize_gripper, bridge_transform, check_relabel
from vla_finetune.clip_record import ExportClip, ExportError, check_clip
from vla_finetune.export import ExportConfig, export_clips

SIZE = (64, 64)  # the shared fixture's image size (BridgeV2's release is 256x256, the default)


@pytest.fixture(scope="module")
def clips():
    return make_clips(6, size=(48, 40))  # not the export size: export resizes


@pytest.fixture(scope="module")
def exported(tmp_path_factory, clips):
    return export_clips(clips, tmp_path_factory.mktemp("export"), ExportConfig(image_size=SIZE))


def _read_all(path):
    from orv_engine import import_order

    tfds = import_order.tensorflow_datasets()
    builder = tfds.builder_from_directory(str(path))
    ds = builder.as_dataset(split="train", shuffle_files=False)
    ds = ds.map(lambda ep: {**ep, "steps": ep["steps"].batch(1 << 20).get_single_element()})
    return builder, list(ds.as_numpy_iterator())


def test_schema_equals_real_bridge_fixture_plus_provenance(exported, bridge_debug):
    ours = feature_signature(exported.path / "features.json")
    real = feature_signature(bridge_debug / "features.json")
    for path, signature in real.items():
        assert ours.get(path) == signature, f"{path}: {ours.get(path)} != BridgeV2 {signature}"
    extra = set(ours) - set(real)
    assert extra == {f"episode_metadata/{name}" for name in PROVENANCE_FIELDS}


def test_default_image_size_is_bridge_release_256():
    from vla_finetune.bridge_schema import bridge_export_features

    observation = bridge_export_features()["steps"].feature["observation"]
    assert all(observation[f"image_{k}"].shape == (256, 256, 3) for k in range(4))
    assert ExportConfig().image_size == (256, 256)


def test_round_trip(exported, clips):
    builder, episodes = _read_all(exported.path)
    assert builder.info.name == "orv_bridge" and exported.episodes == {"train": len(clips)}
    by_id = {int(ep["episode_metadata"]["episode_id"]): ep for ep in episodes}
    assert sorted(by_id) == list(range(len(clips)))
    for index, clip in enumerate(clips):
        ep = by_id[index]
        steps, meta = ep["steps"], ep["episode_metadata"]
        n = len(clip)
        assert len(steps["action"]) == n
        np.testing.assert_array_equal(steps["action"], clip.actions)
        np.testing.assert_array_equal(steps["observation"]["state"], clip.states)
        assert steps["observation"]["image_0"].shape == (n, *SIZE, 3)
        # step t's frame is 10 + 8t in the lower half (see export_clips.make_clip); JPEG keeps it within a few levels
        lower = steps["observation"]["image_0"][:, 40:, :, 1].reshape(n, -1).mean(1)
        np.testing.assert_allclose(lower, 10 + 8 * np.arange(n), atol=3)
        assert not steps["observation"]["image_1"].any()
        assert list(steps["is_first"]) == [True] + [False] * (n - 1)
        assert list(steps["is_last"]) == [False] * (n - 1) + [True]
        assert list(steps["is_terminal"]) == list(steps["is_last"])
        assert list(steps["reward"]) == [0.0] * (n - 1) + [1.0] and set(steps["discount"]) == {1.0}
        assert {s.decode() for s in steps["language_instruction"]} == {clip.caption}
        assert steps["language_embedding"].shape == (n, 512) and not steps["language_embedding"].any()
        p = clip.provenance
        assert meta["has_image_0"] and not meta["has_image_1"] and meta["has_language"] and meta["synthetic"]
        assert meta["source_dataset"].decode() == p.source_dataset
        assert meta["source_episode"].decode() == p.source_episode
        assert meta["first_frame_variant"].decode() == p.first_frame_variant
        assert int(meta["seed"]) == p.seed and int(meta["source_start_step"]) == p.source_start_step
        assert json.loads(meta["models"]) == p.models
        assert json.loads(meta["verdict_scores"]) == p.verdict_scores
        assert meta["verdict_score"] == pytest.approx(p.verdict_score)
        assert json.loads(meta["provenance"])["extra"] == {"run": "test"}
    # The project's own reader takes it as a Bridge dataset.
    from orv_engine.data import RLDSReader

    read = list(RLDSReader(exported.path, dataset="bridge", on_bad="raise"))
    assert len(read) == len(clips) and {e.instruction for e in read} == {clips[0].caption}
    assert (exported.path / "dataset_statistics_octo.json").is_file()
    assert json.loads((exported.path / "export.json").read_text())["episodes"] == {"train": len(clips)}


def _tf_bridge_transform(tf, trajectory, framework):
    """The frameworks' transform written with tf ops over a batched trajectory (the compatibility oracle):
    OpenVLA drops step 0; both binarize the gripper and relabel movement from reached states."""
    if framework == "openvla":
        trajectory = tf.nest.map_structure(lambda x: x[1:], trajectory)
    states, actions = trajectory["observation"]["state"], trajectory["action"]
    gripper = tf.numpy_function(binarize_gripper, [actions[:, -1]], tf.float32)
    movement = states[1:, :6] - states[:-1, :6]
    kept = tf.nest.map_structure(lambda x: x[:-1], trajectory)
    kept["action"] = tf.concat([movement, gripper[:-1, None]], axis=1)
    kept["observation"]["EEF_state"] = kept["observation"]["state"][:, :6]
    kept["observation"]["gripper_state"] = kept["observation"]["state"][:, -1:]
    return kept


@pytest.mark.parametrize("framework", ["octo", "openvla"])
def test_readable_by_bridge_transforms(exported, clips, framework):
    from orv_engine import import_order

    tf = import_order.tensorflow()
    tfds = import_order.tensorflow_datasets()
    builder = tfds.builder_from_directory(str(exported.path))
    # What their OXE config for bridge reads: image_0 (primary), image_1 (secondary), state, language_instruction.
    steps_spec = builder.info.features["steps"].feature
    assert steps_spec["language_instruction"].dtype == tf.string
    assert steps_spec["observation"]["state"].shape == (7,) and steps_spec["action"].shape == (7,)
    ds = builder.as_dataset(split="train", shuffle_files=False)
    # RLDS episode -> batched trajectory (as dlimp's from_rlds), then the transform
    ds = ds.map(lambda ep: (ep["episode_metadata"]["episode_id"],
                            _tf_bridge_transform(tf, ep["steps"].batch(1 << 20).get_single_element(), framework)))
    trajectories = {int(i): traj for i, traj in ds.as_numpy_iterator()}
    for index, clip in enumerate(clips):
        traj = trajectories[index]
        drop = 1 if framework == "openvla" else 0
        n = len(clip) - 1 - drop
        assert traj["action"].shape == (n, 7) and traj["observation"]["image_0"].shape[0] == n
        expected = clip.states[drop + 1:, :6] - clip.states[drop:-1, :6]
        np.testing.assert_allclose(traj["action"][:, :6], expected, atol=1e-6)
        np.testing.assert_array_equal(traj["action"][:, 6], binarize_gripper(clip.actions[drop:, 6])[:-1])
        # and the numpy transform used for the statistics says the same
        _, relabelled, _ = bridge_transform(clip.states, clip.actions, framework)
        np.testing.assert_allclose(traj["action"], relabelled, atol=1e-6)


def test_relabel_check_accepts_real_bridge_episodes(bridge_debug):
    from orv_engine.data import RLDSReader

    episodes = list(RLDSReader(bridge_debug, cameras=["image_0"], on_bad="raise"))
    assert len(episodes) == 25
    for episode in episodes:
        check_relabel(episode.states, episode.actions, episode.meta.episode_id)


def test_binarize_gripper_matches_the_frameworks_scan():
    raw = np.array([1.0, 0.6, 0.3, 0.02, 0.0, 0.5, 0.97, 1.0, 0.4], np.float32)
    # in-between values take the next decided value; a trailing in-between value stays as is
    np.testing.assert_array_equal(binarize_gripper(raw), np.array([1, 0, 0, 0, 0, 1, 1, 1, 0.4], np.float32))


def _bad(**changes) -> ExportClip:
    clip = make_clip(8, seed=3)
    for key, value in changes.items():
        setattr(clip, key, value)
    return clip


def _nan(array, index):
    array = np.array(array, copy=True)
    array[index] = np.nan
    return array


@pytest.mark.parametrize("changes, message", [
    (dict(actions=None), "no actions"),
    (dict(states=None), "no states"),
    (dict(actions=np.zeros((7, 7), np.float32)), "mismatched lengths: 8 frames but 7 actions"),
    (dict(states=np.zeros((9, 7), np.float32)), "mismatched lengths: 8 frames but 9 states"),
    (dict(actions=np.zeros((8, 6), np.float32)), "actions must be (T, 7)"),
    (dict(actions=_nan(make_clip(8, seed=3).actions, (4, 2))), "non-finite actions (NaN/inf) at step 4, dim 2"),
    (dict(states=_nan(make_clip(8, seed=3).states, (5, 0))), "non-finite states (NaN/inf) at step 5, dim 0"),
    (dict(frames=np.zeros((8, 16, 16, 3), np.float32)), "frames must be uint8"),
    (dict(frames=np.zeros((8, 16, 16), np.uint8)), "frames must be a (T, H, W, 3)"),
    (dict(caption="  "), "empty caption"),
])
def test_bad_clip_refused_with_clear_error(changes, message):
    with pytest.raises(ExportError) as err:
        check_clip(_bad(**changes))
    assert message in str(err.value)


def test_gripper_convention_checked():
    clip = make_clip(8, seed=3)
    clip.actions[:, 6] = np.where(clip.actions[:, 6] > 0.5, 1.0, -1.0)  # RT-1 style relative command
    with pytest.raises(ExportError, match="gripper action outside"):
        check_clip(clip)


@pytest.mark.parametrize("corrupt, message", [
    (lambda c: c.states.__setitem__(slice(None), c.states[0]), "states move 0x"),  # constant states
    (lambda c: c.states.__setitem__((slice(None), slice(0, 3)), -c.states[:, :3]), "correlate"),  # sign flipped
    (lambda c: c.states.__setitem__((slice(None), slice(0, 3)), 20 * c.states[:, :3]), "as far as"),  # scale
    (lambda c: c.states.__setitem__((4, 5), c.states[4, 5] + 2 * np.pi), "angle wrap"),
])
def test_states_inconsistent_with_relabelling_refused(corrupt, message):
    clip = make_clip(12, seed=5)
    check_relabel(clip.states, clip.actions, "ok")
    corrupt(clip)
    with pytest.raises(ExportError, match=message):
        check_relabel(clip.states, clip.actions, "bad")


def test_too_short_for_the_transforms_refused():
    clip = make_clip(2, seed=1)
    with pytest.raises(ExportError, match="at least 3"):
        check_relabel(clip.states, clip.actions, "short")


def _leftovers(out: Path) -> list[Path]:
    return [p for p in out.rglob("*")] if out.exists() else []


def test_failed_export_leaves_nothing_behind(tmp_path):
    def clips_then_crash():
        yield from make_clips(3)
        raise RuntimeError("rollout worker died")

    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(RuntimeError, match="worker died"):
        export_clips(clips_then_crash(), out, ExportConfig(image_size=(32, 32)))
    assert _leftovers(out) == []

    bad = make_clips(4)
    bad[2].actions[3, 1] = np.nan
    with pytest.raises(ExportError, match="non-finite actions"):
        export_clips(bad, out, ExportConfig(image_size=(32, 32)))
    assert _leftovers(out) == []


def test_existing_dataset_kept_unless_overwrite_and_intact_when_overwrite_fails(tmp_path):
    first = export_clips(make_clips(2), tmp_path, ExportConfig(image_size=(32, 32)))
    before = sorted(p.name for p in first.path.iterdir())
    with pytest.raises(ExportError, match="already exists"):
        export_clips(make_clips(3), tmp_path, ExportConfig(image_size=(32, 32)))
    broken = make_clips(3)
    broken[1].states = broken[1].states[:-1]
    with pytest.raises(ExportError, match="mismatched lengths"):
        export_clips(broken, tmp_path, ExportConfig(image_size=(32, 32), overwrite=True))
    assert sorted(p.name for p in first.path.iterdir()) == before
    assert sorted(p.name for p in (tmp_path / "orv_bridge").iterdir()) == ["1.0.0"]
    second = export_clips(make_clips(3), tmp_path, ExportConfig(image_size=(32, 32), overwrite=True))
    assert second.episodes == {"train": 3} and sorted(p.name for p in (tmp_path / "orv_bridge").iterdir()) == ["1.0.0"]


def test_clip_folder_round_trip_and_cli(tmp_path, capsys):
    from vla_finetune.cli import main

    clips = make_clips(3)
    for i, clip in enumerate(clips):
        clip.save(tmp_path / "clips" / f"clip_{i}")
    loaded = ExportClip.load(tmp_path / "clips" / "clip_1")
    np.testing.assert_array_equal(loaded.frames, clips[1].frames)
    assert loaded.provenance == clips[1].provenance and loaded.caption == clips[1].caption
    assert main(["export", str(tmp_path / "clips"), "--out", str(tmp_path / "rlds"), "--image-size", "32", "32",
                 "--val-fraction", "0.5"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert sum(summary["episodes"].values()) == 3 and summary["bytes_per_episode"] > 0
    # bad input: exit status 2 and the reason, nothing written
    bad = make_clip(5, seed=9)
    bad.actions = bad.actions[:4]
    np.savez(tmp_path / "bad.npz", frames=bad.frames, actions=bad.actions, states=bad.states)
    (tmp_path / "badclip").mkdir()
    (tmp_path / "bad.npz").rename(tmp_path / "badclip" / "clip.npz")
    (tmp_path / "badclip" / "clip.json").write_text(json.dumps({"caption": "x", "provenance": {}}))
    assert main(["export", str(tmp_path / "badclip"), "--out", str(tmp_path / "rlds2")]) == 2
    assert "mismatched lengths" in capsys.readouterr().err
    assert _leftovers(tmp_path / "rlds2") == []


def test_language_embedding_from_embed_fn_and_val_split_assignment():
    from vla_finetune.export import clip_to_rlds, split_indices

    clip = make_clip(4, seed=2)
    episode = clip_to_rlds(clip, 7, ExportConfig(image_size=(16, 16)), embed_fn=lambda text: np.full(512, len(text)))
    assert all(step["language_embedding"][0] == len(clip.caption) for step in episode["steps"])
    assert episode["episode_metadata"]["episode_id"] == 7
    with pytest.raises(ExportError, match=r"embed_fn returned shape \(3,\)"):
        clip_to_rlds(clip, 0, ExportConfig(image_size=(16, 16)), embed_fn=lambda text: np.zeros(3))
    assert split_indices(5, 0.0) == {"train": [0, 1, 2, 3, 4]}
    assert split_indices(10, 0.2) == {"train": [0, 1, 2, 3, 5, 6, 7, 8], "val": [4, 9]}
    assert split_indices(3, 0.2) == {"train": [0, 1, 2]}  # too few clips for a val split

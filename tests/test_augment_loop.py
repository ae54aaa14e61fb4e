"""orv-augment end to end on tiny real-format models: the whole loop, kill-and-resume, bad input."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

import augment  # noqa: F401  (import order)
from augment.cli import main as cli_main
from augment.config import config_from_dict, load_config
from augment.demo import DEMO_DATASET, write_demo_models
from augment.manifest import all_shards
from augment.runner import AugmentRun
from orv_engine.config_validation import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return write_demo_models(tmp_path_factory.mktemp("augment_models"))


def small_config(models: Path, replay: bool = False, **source) -> dict:
    """Two episodes x two painted variants (+ each episode's replay unit with ``replay``: off
    unless asked, since other test modules import this for runs of painted units alone)."""
    return {
        "device": "cpu",
        "source": {"path": str(DEMO_DATASET), "max_episodes": 2, "max_steps": 8, **source},
        "first_frames": {
            "flux": str(models / "flux"),
            "controlnets": [{"path": str(models / "controlnet-depth"), "condition": "depth"},
                            {"path": str(models / "controlnet-semantics"), "condition": "semantics", "scale": 0.5}],
            "variants_per_episode": 2, "num_inference_steps": 2, "max_sequence_length": 128, "replay": replay,
        },
        "rollout": {"model": str(models / "orv"), "height": 64, "width": 64, "chunk_frames": 8,
                    "num_inference_steps": 2},
        "score": {"checks_only": True, "filter": {"backend": "transformers", "checks": {
            "flicker_max": 50.0, "occupancy_min_agreement": 0.0}}},
        "export": {"name": "orv_aug_test", "image_size": [64, 64]},
    }


def rollout_frames(run_dir: Path) -> dict[str, np.ndarray]:
    out = {}
    for folder in sorted((run_dir / "rollouts").iterdir()):
        if folder.name.startswith("."):
            continue
        with np.load(folder / "clip.npz") as data:
            out[folder.name] = data["frames"]
    return out


@pytest.fixture(scope="module")
def finished_run(models, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("augment_run") / "run"
    summary = AugmentRun(config_from_dict(small_config(models, replay=True)), run_dir, progress=False).run()
    return run_dir, summary


def test_whole_loop_writes_rollouts_verdicts_export_and_report(finished_run):
    from orv_engine.data.rlds_reader import RLDSReader

    run_dir, summary = finished_run
    assert summary["units"] == {"scored": 6}  # 2 episodes x (2 painted variants + the replay)
    frames = rollout_frames(run_dir)
    assert len(frames) == 6
    for unit, video in frames.items():
        assert video.shape == (8, 64, 64, 3) and video.dtype == np.uint8
        record = json.loads((run_dir / "rollouts" / unit / "rollout.json").read_text())
        assert record["num_frames"] == 8 and (run_dir / record["conditions"]).is_file()
        assert (run_dir / record["first_frame"]).is_file() and (run_dir / "rollouts" / unit / "video.mp4").stat().st_size
        # the rollout starts from the painted first frame (the VAE round trip blurs it a little)
        painted = np.asarray(__import__("PIL.Image", fromlist=["Image"]).open(run_dir / record["first_frame"]))
        assert np.abs(video[0].astype(float) - painted).mean() < 60
    # variants of one episode differ (prompt and seed), and so do the episodes' actions
    names = sorted(frames)
    assert np.abs(frames[names[0]].astype(int) - frames[names[1]]).mean() > 1
    kept = (run_dir / "kept.txt").read_text().split()
    reader = RLDSReader(summary["export"], dataset="bridge", split="train")
    episodes = list(reader)
    assert len(episodes) == len(kept) > 0
    assert all(len(e) == 8 for e in episodes)
    html = (run_dir / "report.html").read_text()
    assert "Contact sheets" in html and html.count("<img src='report/sheet_") == 2
    assert "Time per stage" in html and "rollouts" in html


def test_rerun_of_a_finished_run_does_no_work(finished_run, models):
    run_dir, _ = finished_run
    before = {p: p.stat().st_mtime_ns for p in (run_dir / "rollouts").rglob("clip.npz")}
    runner = AugmentRun(config_from_dict(small_config(models, replay=True)), run_dir, progress=False)
    runner.run()
    assert runner._painter is None and runner._generator is None  # no model loaded
    assert {p: p.stat().st_mtime_ns for p in (run_dir / "rollouts").rglob("clip.npz")} == before


def test_a_copied_run_with_deleted_outputs_redoes_them_from_its_own_files(finished_run, models, tmp_path):
    run_dir, summary = finished_run
    state = json.loads((run_dir / "manifest" / "run.json").read_text())
    assert not Path(state["stages"]["export"]["result"]["path"]).is_absolute()  # relocatable
    copy = tmp_path / "moved" / "run"
    shutil.copytree(run_dir, copy)
    unit = sorted(p.name for p in (copy / "rollouts").iterdir() if "__v" in p.name)[0]
    shutil.rmtree(copy / "rollouts" / unit)
    (copy / "verdicts" / f"{sorted(p.stem for p in (copy / 'verdicts').iterdir())[-1]}.json").unlink()
    shutil.rmtree(copy / "export")
    logged = []
    runner = AugmentRun(config_from_dict(small_config(models, replay=True)), copy, progress=False, log=logged.append)
    resumed = runner.run()
    assert any(f"unit {unit}: scored outputs missing; back to first_frame" in m for m in logged), logged
    assert any(m.startswith("resume: export: redone") for m in logged), logged
    assert resumed["units"] == {"scored": 6} and Path(resumed["export"]).is_relative_to(copy)
    with np.load(copy / "rollouts" / unit / "clip.npz") as new, np.load(run_dir / "rollouts" / unit / "clip.npz") as old:
        assert np.abs(new["frames"].astype(int) - old["frames"]).mean() < 1.0  # same seed, same clip
    from orv_engine.data.rlds_reader import RLDSReader

    assert len(list(RLDSReader(resumed["export"], dataset="bridge", split="train"))) == len(
        list(RLDSReader(summary["export"], dataset="bridge", split="train")))


def _run_cli(args, **kw):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "augment.cli", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **kw)


def _wait_for(run_dir: Path, stage: str, proc, timeout: float = 240) -> None:
    """Until some unit of the run has reached ``stage`` (read from the manifest)."""
    end = time.time() + timeout
    while time.time() < end:
        assert proc.poll() is None, f"the run ended before any unit reached {stage}: {proc.stderr.read()[-2000:]}"
        shards = all_shards(run_dir) if (run_dir / "manifest").exists() else []
        if any(rec["stage"] == stage for s in shards for rec in s["units"].values()):
            return
        time.sleep(0.2)
    raise AssertionError(f"no unit reached {stage} in {timeout} s")


def test_sigkill_at_several_points_then_resume_gives_the_same_clips(finished_run, models, tmp_path):
    reference_dir, _ = finished_run
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(small_config(models, replay=True)))
    run_dir = tmp_path / "run"
    args = ["run", "--config", str(config), "--run-dir", str(run_dir), "--no-progress"]
    for stage in ("first_frame", "rollout"):  # killed mid first frames, then mid rollouts
        proc = _run_cli(args)
        _wait_for(run_dir, stage, proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    counts = {}
    for rec in all_shards(run_dir)[0]["units"].values():
        counts[rec["stage"]] = counts.get(rec["stage"], 0) + 1
    assert counts.get("scored", 0) < 6  # it really was interrupted
    proc = _run_cli(args)
    assert proc.wait(timeout=600) == 0, proc.stderr.read()[-3000:]
    got, want = rollout_frames(run_dir), rollout_frames(reference_dir)
    assert sorted(got) == sorted(want)
    for name in want:
        np.testing.assert_allclose(got[name].astype(int), want[name].astype(int), atol=2)
    assert (run_dir / "kept.txt").read_text() == (reference_dir / "kept.txt").read_text()
    assert not list(run_dir.rglob("*.partial")) and not list(run_dir.rglob(".*.tmp"))


def test_shards_split_the_episodes_and_together_cover_them(models, tmp_path):
    config = config_from_dict(small_config(models))
    owned = []
    for i in range(2):
        runner = AugmentRun(config, tmp_path / "run", (i, 2), progress=False)
        try:
            runner.run_sources()
        except ConfigError:  # a shard may own no episode of two
            pass
        owned.append(set(runner.manifest.episodes))
    assert not owned[0] & owned[1] and len(owned[0] | owned[1]) == 2


def test_config_errors_name_the_key(models, tmp_path):
    values = small_config(models)
    with pytest.raises(ConfigError, match=r"rollout\.chunk_framez: unknown key"):
        config_from_dict({**values, "rollout": {**values["rollout"], "chunk_framez": 8}})
    with pytest.raises(ConfigError, match=r"first_frames\.variants_per_episode: expected an integer"):
        config_from_dict({**values, "first_frames": {**values["first_frames"], "variants_per_episode": "three"}})
    with pytest.raises(ConfigError, match=r"controlnets\[0\]\.condition"):
        config_from_dict(values, ["first_frames.controlnets=[{path: x, condition: canny}]"])
    with pytest.raises(ConfigError, match="score.filter.model: required"):
        config_from_dict(values, ["score.checks_only=false"])
    path = tmp_path / "bad.yaml"
    path.write_text("source: [1, 2]\n")
    with pytest.raises(ConfigError, match="source: expected a mapping"):
        load_config(path)


def test_missing_checkpoint_fails_before_any_work(models, tmp_path, capsys):
    values = small_config(models)
    values["rollout"]["model"] = str(tmp_path / "no-such-orv")
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(values))
    code = cli_main(["run", "--config", str(config), "--run-dir", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "rollout.model" in err and "no-such-orv" in err
    assert not (tmp_path / "run" / "manifest").exists()  # nothing was started


def test_a_run_dir_refuses_another_config(models, tmp_path):
    AugmentRun(config_from_dict(small_config(models)), tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="another config"):
        AugmentRun(config_from_dict(small_config(models), ["seed=1"]), tmp_path / "run", progress=False)


def test_corrupt_source_file_is_counted_and_listed(models, tmp_path):
    dataset = tmp_path / "orv_tabletop" / "1.0.0"
    shutil.copytree(DEMO_DATASET, dataset)
    shard = next(dataset.glob("*-train.tfrecord-*"))
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 3])  # truncated mid-episode
    values = small_config(models, path=str(dataset), max_episodes=None)
    runner = AugmentRun(config_from_dict(values), tmp_path / "run", progress=False)
    runner.run_sources()
    skips = runner.manifest.data.get("reader_skips", {}).get("counts", {})
    skipped_keys = [k for k, e in runner.manifest.episodes.items() if e["status"] == "skipped"]
    assert sum(skips.values()) + len(skipped_keys) >= 1
    html = runner.run_report().read_text()
    assert "Unreadable source records" in html or "Skipped source episodes" in html


def test_help_explains_every_subcommand(capsys):
    for command in ("run", "sources", "first-frames", "rollouts", "score", "filter", "export", "merge", "report"):
        with pytest.raises(SystemExit) as exit_info:
            cli_main([command, "--help"])
        assert exit_info.value.code == 0
        text = capsys.readouterr().out
        assert "--run-dir" in text and "--shard" in text and "--ray" in text

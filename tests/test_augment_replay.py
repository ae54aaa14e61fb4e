"""The replay variant of orv-augment (each episode rolled out from its own real first frame),
its PSNR/SSIM in the scores and the report, export behaviour, resume, and the demo's choice
of world model. Tiny real-format models, one episode."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import augment  # noqa: F401  (import order)
import augment.demo
import augment.unit_work
from augment.config import config_from_dict
from augment.demo import resolve_world_model, run_demo, write_demo_models
from augment.exporting import export_kept
from augment.replay import replay_unit_id
from augment.runner import AugmentRun
from augment.score_stage import kept_units, load_verdict, select_units
from augment.sources import load_source
from filtering.table import read_verdicts
from orv_engine.evaluation.psnr_ssim import psnr_frames, ssim_frames
from orv_engine.testing.tiny_orv import save_tiny_orv_pipeline
from test_augment_loop import small_config

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return write_demo_models(tmp_path_factory.mktemp("replay_models"))


def one_episode(models: Path, **overrides) -> dict:
    values = small_config(models, replay=True, max_episodes=1)
    values["first_frames"]["variants_per_episode"] = 1
    for key, value in overrides.items():
        section, name = key.split(".")
        values[section][name] = value
    return values


def _interrupt_when(predicate, original, unit_arg: int):
    """``original`` raising KeyboardInterrupt (as a kill stops the run) when ``predicate(unit_id)``;
    ``unit_arg``: the position of the unit id among its arguments."""
    def wrapped(*args):
        if predicate(args[unit_arg]):
            raise KeyboardInterrupt(f"killed at {args[unit_arg]}")
        return original(*args)
    return wrapped


@pytest.fixture(scope="module")
def replay_run(models, tmp_path_factory):
    """One episode (v0 + replay), interrupted right after the replay unit's first frame and
    again right after its rollout, then resumed to the end. Returns (run_dir, key, mtimes)."""
    run_dir = tmp_path_factory.mktemp("replay_run") / "run"
    config = config_from_dict(one_episode(models))
    mp = pytest.MonkeyPatch()
    try:
        # 1. first frames: the replay unit (sorted first) is written, the painted one is "killed"
        mp.setattr(augment.unit_work, "paint_unit",
                   _interrupt_when(lambda u: True, augment.unit_work.paint_unit, 3))
        with pytest.raises(KeyboardInterrupt):
            AugmentRun(config, run_dir, progress=False).run()
        mp.undo()
        runner = AugmentRun(config, run_dir, progress=False)
        key = next(iter(runner.manifest.episodes))
        states = {u: rec["stage"] for u, rec in runner.manifest.units.items()}
        assert states == {replay_unit_id(key): "first_frame", f"{key}__v0": "planned"}
        replay_png = run_dir / "first_frames" / f"{replay_unit_id(key)}.png"
        mtimes = {"first_frame": replay_png.stat().st_mtime_ns}
        # 2. rollouts: the replay is rolled out, the painted one is "killed" mid-write
        mp.setattr(augment.unit_work, "write_rollout",
                   _interrupt_when(lambda u: not u.endswith("__replay"), augment.unit_work.write_rollout, 1))
        with pytest.raises(KeyboardInterrupt):
            runner.run()
        mp.undo()
        # 3. resumed to the end: nothing of the replay unit is redone
        clip = run_dir / "rollouts" / replay_unit_id(key) / "clip.npz"
        mtimes["rollout"] = clip.stat().st_mtime_ns
        resumed = AugmentRun(config, run_dir, progress=False)
        assert resumed.manifest.units[replay_unit_id(key)]["stage"] == "rollout"
        summary = resumed.run()
        assert summary["units"] == {"scored": 2}
        assert replay_png.stat().st_mtime_ns == mtimes["first_frame"] and clip.stat().st_mtime_ns == mtimes["rollout"]
    finally:
        mp.undo()
    return run_dir, key


def test_each_episode_has_a_replay_unit_started_from_its_own_resized_first_frame(replay_run):
    run_dir, key = replay_run
    source = load_source(run_dir, key)
    with np.load(run_dir / "rollouts" / replay_unit_id(key) / "clip.npz") as data:
        frames = data["frames"]
    # ground truth at exactly the rollout's size, and the replay starts from its frame 0
    assert source.frames.shape == frames.shape == (8, 64, 64, 3)
    first = np.asarray(Image.open(run_dir / "first_frames" / f"{replay_unit_id(key)}.png"))
    np.testing.assert_array_equal(first, source.frames[0])
    assert source.first_frame.shape == (128, 128, 3)  # recorded size: resized for the rollout
    record = json.loads((run_dir / "rollouts" / replay_unit_id(key) / "rollout.json").read_text())
    assert record["variant"] == "replay" and record["models"]["first_frame"].startswith("recorded frame 0")
    clip_json = json.loads((run_dir / "rollouts" / replay_unit_id(key) / "clip.json").read_text())
    assert clip_json["provenance"]["first_frame_variant"] == "replay"


def test_replay_psnr_ssim_are_recorded_in_the_rollout_and_the_scores(replay_run):
    run_dir, key = replay_run
    unit = replay_unit_id(key)
    source = load_source(run_dir, key)
    with np.load(run_dir / "rollouts" / unit / "clip.npz") as data:
        frames = data["frames"]
    metrics = json.loads((run_dir / "rollouts" / unit / "rollout.json").read_text())["replay"]
    psnr = psnr_frames(frames[1:], source.frames[1:])
    ssim = ssim_frames(frames[1:], source.frames[1:])
    assert metrics["frames_compared"] == 7 and metrics["skip_first_frames"] == 1
    assert metrics["psnr"] == pytest.approx(float(psnr.mean())) and metrics["ssim"] == pytest.approx(float(ssim.mean()))
    assert np.isfinite(metrics["psnr"]) and 0 < metrics["psnr"] < 60
    checks = {c.name: c for c in load_verdict(run_dir, unit).checks}
    assert checks["replay_psnr"].value == pytest.approx(metrics["psnr"]) and checks["replay_psnr"].passed
    assert checks["replay_ssim"].value == pytest.approx(metrics["ssim"])
    assert "replay_psnr" not in {c.name for c in load_verdict(run_dir, f"{key}__v0").checks}
    result = json.loads((run_dir / "manifest" / "run.json").read_text())["stages"]["filter"]["result"]
    assert result["replay"]["psnr"] == pytest.approx(metrics["psnr"]) and result["replay"]["units"] == 1
    assert result["clips"] == 1  # the selection saw the painted clip only


def test_report_shows_truth_replay_and_variants_side_by_side_with_psnr(replay_run):
    run_dir, key = replay_run
    metrics = json.loads((run_dir / "rollouts" / replay_unit_id(key) / "rollout.json").read_text())["replay"]
    html = (run_dir / "report.html").read_text()
    assert "Replay: ground truth vs rollout" in html
    assert f"run-wide mean over 1 replay clip(s): PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.3f}" in html
    assert f"<img src='report/compare_{key}.gif'>" in html and f"<img src='report/sheet_{key}.png'>" in html
    gif = Image.open(run_dir / "report" / f"compare_{key}.gif")
    assert gif.n_frames == 8 and gif.width > 3 * 128  # ground truth | replay | v0
    sheet = Image.open(run_dir / "report" / f"sheet_{key}.png")
    assert sheet.height >= 4 * 128  # source + maps, ground truth, replay, v0
    assert (run_dir / "report" / "replay_curves.png").is_file()
    assert "replay (evaluation)" in html


def test_replay_is_not_exported_by_default_and_is_with_export_replay(replay_run, models, tmp_path):
    run_dir, key = replay_run
    assert replay_unit_id(key) not in kept_units(run_dir)
    export = json.loads((run_dir / "manifest" / "run.json").read_text())["stages"]["export"]["result"]
    assert export["episodes"] in (1, {"train": 1})
    verdicts = {v.clip: v for v in read_verdicts(run_dir / "verdicts.parquet")}
    assert verdicts[replay_unit_id(key)].keep is False and "evaluation only" in verdicts[replay_unit_id(key)].reason
    # export.replay: the replay enters the selection like any clip and is exported if kept
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    config = config_from_dict(one_episode(models, **{"export.replay": True}))
    units = json.loads(next((copy / "manifest").glob("shard-*.json")).read_text())["units"]
    summary = select_units(config, copy, units)
    assert summary["clips"] == 2 and summary["replay"]["selected"]
    assert replay_unit_id(key) in kept_units(copy)
    result = export_kept(config, copy)
    assert result["episodes"] in (summary["kept"], {"train": summary["kept"]})


def test_demo_rolls_out_with_the_small_orv_when_available(models, tmp_path, monkeypatch):
    # a stand-in for orv_engine/pretrained/small_orv: a tiny pipeline recording its training
    # size, clip length and steps the way orv-train does
    folder = save_tiny_orv_pipeline(tmp_path / "small_orv", sample_size=64)
    config_path = folder / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config["preprocessing"] = {"height": 64, "width": 64, "num_frames": 17, "num_inference_steps": 2}
    config_path.write_text(json.dumps(config))
    assert resolve_world_model(folder).path == folder.resolve()
    monkeypatch.setattr(augment.demo, "small_orv_available", lambda: False)
    fallback = resolve_world_model()
    assert fallback.path is None and "tiny random" in fallback.description
    monkeypatch.setattr(augment.demo, "small_orv_available", lambda: True)
    monkeypatch.setattr(augment.demo, "SMALL_ORV_DIR", folder)
    assert resolve_world_model().path == folder

    out = tmp_path / "demo"
    shutil.copytree(models, out / "models", ignore=shutil.ignore_patterns("orv"))  # the painter, prebuilt
    lines = []
    summary = run_demo(out, episodes=1, variants=1, progress=False, log=lines.append)
    world_line = next(line for line in lines if "world model" in line or "small ORV" in line)
    assert "small ORV trained here" in summary["world_model"] and "small ORV trained here" in world_line
    assert "64x64, 16-frame chunks, 2 sampling steps" in world_line
    assert not (out / "models" / "orv").exists()  # no tiny random ORV written
    import yaml

    values = yaml.safe_load((out / "demo.yaml").read_text())
    assert values["rollout"]["model"] == str(folder)
    assert values["rollout"]["chunk_frames"] == 16 and values["source"]["max_steps"] == 31
    run_dir = Path(summary["run_dir"])
    assert summary["units"] == {"scored": 2}
    with np.load(next((run_dir / "rollouts").glob("*__replay")) / "clip.npz") as data:
        assert data["frames"].shape == (31, 64, 64, 3)  # two chained 16-frame chunks
    assert "Replay: ground truth vs rollout" in (run_dir / "report.html").read_text()
    with pytest.raises(Exception, match="not an ORVPipeline folder"):
        resolve_world_model(tmp_path / "nothing")

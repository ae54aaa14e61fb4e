"""The Table 1 command end to end on small clip folders written here."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from benchmarks.metrics.table1 import main
from orv_engine.data.clip_files import read_clip, write_clip
from metrics_helpers import fid_inception_weights, i3d_torchscript, noisy, smooth_clip

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_mp4_folders_with_fid(tmp_path, capsys):
    for i in range(2):
        gt = smooth_clip(2, 40, 56, seed=i)
        write_clip(tmp_path / "gt" / f"episode_{i}.mp4", gt)
        write_clip(tmp_path / "gen" / f"episode_{i}.mp4", noisy(gt, 12, seed=i))
    out = tmp_path / "out"
    code = main([str(tmp_path / "gen"), str(tmp_path / "gt"), "--inception", str(fid_inception_weights()),
                 "--device", "cpu", "--method", "ORV", "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| Method | PSNR↑ | SSIM↑ | FID↓ | FVD↓ |") and "| ORV |" in printed

    # The table's PSNR/SSIM are scikit-image's on the decoded frames, averaged per clip then over clips.
    psnr, ssim = [], []
    for i in range(2):
        g, t = read_clip(tmp_path / "gen" / f"episode_{i}.mp4"), read_clip(tmp_path / "gt" / f"episode_{i}.mp4")
        psnr.append(np.mean([peak_signal_noise_ratio(b, a, data_range=255) for a, b in zip(g, t)]))
        ssim.append(np.mean([structural_similarity(b, a, channel_axis=-1, data_range=255, gaussian_weights=True,
                                                   sigma=1.5, use_sample_covariance=False) for a, b in zip(g, t)]))
    result = json.loads((out / "table1.json").read_text())
    assert result["metrics"]["PSNR"] == pytest.approx(np.mean(psnr), abs=1e-9)
    assert result["metrics"]["SSIM"] == pytest.approx(np.mean(ssim), abs=1e-9)
    assert result["metrics"]["FID"] > 0 and result["metrics"]["FVD"] is None
    assert result["clips"] == 2 and result["frames_per_clip"] == [2]
    assert any("FVD not computed" in note for note in result["notes"])

    with open(out / "table1.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["method"] == "ORV" and float(rows[0]["PSNR"]) == pytest.approx(np.mean(psnr))
    assert rows[0]["FVD"] == ""
    assert (out / "table1.md").read_text() == printed
    with open(out / "per_clip.csv") as f:
        assert [r["name"] for r in csv.DictReader(f)] == ["episode_0", "episode_1"]


def test_identical_clips_give_zero_fvd_and_infinite_psnr(tmp_path, capsys):
    for i in range(2):
        clip = smooth_clip(16, 32, 32, seed=10 + i)
        write_clip(tmp_path / "gen" / f"c{i}.npy", clip)
        write_clip(tmp_path / "gt" / f"c{i}", clip)  # PNG frame folder
    out = tmp_path / "out"
    code = main([str(tmp_path / "gen"), str(tmp_path / "gt"), "--i3d", str(i3d_torchscript()),
                 "--fvd-lengths", "8", "16", "--device", "cpu", "--out", str(out), "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| inf | 1.000 | – | 0.000 | – | 0.000 |" in printed
    result = json.loads((out / "table1.json").read_text())
    metrics = result["metrics"]
    assert metrics["PSNR"] == "inf" and metrics["SSIM"] == pytest.approx(1.0)
    assert metrics["FVD"] == metrics["FVD@16"] == pytest.approx(0.0, abs=1e-6)
    assert metrics["FVD@8"] is None  # the I3D cannot take 8 frames: said so, not crashed
    notes = " ".join(result["notes"])
    assert "FVD@8 not computed" in notes and "32 frame(s) identical" in notes and "2 clip(s) entirely identical" in notes
    assert result["psnr_identical_frames"] == 32


def test_mismatched_folders_fail_with_the_clip_named(tmp_path, capsys):
    write_clip(tmp_path / "gen" / "a.npy", smooth_clip(4, 16, 16))
    write_clip(tmp_path / "gen" / "b.npy", smooth_clip(5, 16, 16))
    write_clip(tmp_path / "gt" / "a.npy", smooth_clip(4, 16, 16))
    assert main([str(tmp_path / "gen"), str(tmp_path / "gt"), "--quiet"]) == 2
    assert "generated clip(s) without ground truth: b" in capsys.readouterr().err
    write_clip(tmp_path / "gt" / "b.npy", smooth_clip(4, 16, 16))
    assert main([str(tmp_path / "gen"), str(tmp_path / "gt"), "--quiet"]) == 2
    assert "'b': frame counts differ" in capsys.readouterr().err


def test_runs_as_a_module_and_skips_first_frames(tmp_path):
    gt = smooth_clip(4, 24, 24)
    gen = np.concatenate([gt[:1], noisy(gt[1:], 10)])  # frame 0 = the given observation
    write_clip(tmp_path / "gen" / "x.npy", gen)
    write_clip(tmp_path / "gt" / "x.npy", gt)
    run = subprocess.run(
        [sys.executable, "-m", "benchmarks.metrics.table1", str(tmp_path / "gen"), str(tmp_path / "gt"),
         "--skip-first-frames", "1", "--out", str(tmp_path / "out"), "--quiet"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads((tmp_path / "out" / "table1.json").read_text())
    assert math.isfinite(result["metrics"]["PSNR"]) and result["psnr_identical_frames"] == 0
    assert result["per_clip"][0]["frames"] == 3

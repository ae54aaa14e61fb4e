"""The orv-data command on the real shared episodes (what `make demo` runs)."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from orv_engine.data.cli import main


def test_clips_command_writes_summary_and_contact_sheet(bridge_debug, tmp_path, capsys):
    assert main(["clips", str(bridge_debug.parent), "--preset", "bridge-tiny", "--out", str(tmp_path),
                 "--sheet-rows", "4"]) == 0
    out = capsys.readouterr().out
    assert "read 25 episodes" in out and "cut 75 clips" in out and "skipped: nothing" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["episodes"] == 25 and summary["clips"] == 75
    assert summary["clip_config"]["num_frames"] == 8 and len(summary["action_mean"]) == 7
    sheet = np.asarray(Image.open(tmp_path / "contact_sheet.png"))
    assert sheet.shape[0] == 4 * (96 + 14) and sheet.shape[1] == 8 * 96
    assert sheet.std() > 20  # real pixels, not a blank page


def test_paper_preset_on_short_episodes_reports_skips_and_fails(bridge_debug, tmp_path, capsys):
    assert main(["clips", str(bridge_debug), "--preset", "bridge", "--out", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "cut 0 clips" in out and "25 x episode shorter than one clip" in out


def test_errors_are_one_line_and_exit_2(tmp_path, capsys):
    assert main(["clips", str(tmp_path / "missing"), "--out", str(tmp_path)]) == 2
    assert "dataset directory not found" in capsys.readouterr().err
    assert main(["clips", str(tmp_path), "--frames", "15", "--out", str(tmp_path)]) == 2


def test_info_command(bridge_debug, capsys):
    assert main(["info", str(bridge_debug)]) == 0
    out = capsys.readouterr().out
    assert "split    train: 25 episodes in 1 file(s)" in out and "image_0 (64, 64, 3)" in out


def test_embedded_sim_dataset_with_condition_maps(tmp_path, capsys):
    """What `make demo` runs first: the shipped simulated episodes, with occupancy conditions."""
    from pathlib import Path

    import orv_engine

    demo = Path(orv_engine.__file__).parent / "demo_data" / "orv_tabletop"
    assert main(["clips", str(demo), "--preset", "sim", "--conditions", "--sheet-rows", "2",
                 "--out", str(tmp_path)]) == 0
    assert "read 12 episodes" in capsys.readouterr().out
    sheet = np.asarray(Image.open(tmp_path / "contact_sheet.png"))
    # 2 clips x (label + RGB + depth + semantics rows)
    assert sheet.shape[0] == 2 * (14 + 3 * 96)

"""The LeRobot export. lerobot cannot live in this project's environment (lerobot 0.4.4 needs
torch<2.11; lerobot>=0.5 needs Python>=3.12), so the round trip runs in the interpreter named by
.venv-lerobot (built by `make test`) or ORV_LEROBOT_PYTHON (a venv with lerobot==0.4.4, see
docs/export.md), and is skipped without either."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from export_clips import make_clips

ROOT = Path(__file__).resolve().parents[1]

ROUND_TRIP = r"""
import json, sys
import numpy as np
sys.path[:0] = [sys.argv[1], sys.argv[1] + "/tests"]
from export_clips import make_clips
from vla_finetune.bridge_transforms import bridge_transform
from vla_finetune.lerobot_export import export_lerobot
from lerobot.datasets.lerobot_dataset import LeRobotDataset

clips = make_clips(3)
summary = export_lerobot(clips, sys.argv[2], image_size=(32, 32))
ds = LeRobotDataset("local/orv_bridge", root=sys.argv[2])
assert ds.num_episodes == 3 and len(ds) == sum(len(c) - 1 for c in clips) == summary["frames"], (len(ds), summary)
i = 0
for e, clip in enumerate(clips):
    _, actions, kept = bridge_transform(clip.states, clip.actions, "octo")
    for j, t in enumerate(kept):
        item = ds[i]
        assert int(item["episode_index"]) == e and item["task"] == clip.caption
        np.testing.assert_allclose(item["action"].numpy(), actions[j], atol=1e-6)
        np.testing.assert_allclose(item["observation.state"].numpy(), clip.states[t], atol=1e-6)
        assert tuple(item["observation.images.image_0"].shape) == (3, 32, 32)
        i += 1
lines = [json.loads(l) for l in open(sys.argv[2] + "/meta/orv_provenance.jsonl")]
assert [l["source_episode"] for l in lines] == [c.provenance.source_episode for c in clips]
print(json.dumps(summary))
"""


def test_without_lerobot_the_error_says_why():
    if importlib.util.find_spec("lerobot") is not None:
        pytest.skip("lerobot is importable here")
    from vla_finetune.lerobot_export import export_lerobot

    with pytest.raises(ImportError, match="torch<2.11"):
        export_lerobot(make_clips(1), "/nonexistent/never-written")


def test_lerobot_round_trip(tmp_path):
    # `make test` builds .venv-lerobot (scripts/setup_lerobot_venv.sh); ORV_LEROBOT_PYTHON overrides.
    side_venv = ROOT / ".venv-lerobot" / "bin" / "python"
    python = os.environ.get("ORV_LEROBOT_PYTHON") or (str(side_venv) if side_venv.exists() else None)
    if not python:
        pytest.skip("no lerobot venv: run scripts/setup_lerobot_venv.sh or set ORV_LEROBOT_PYTHON (docs/export.md)")
    out = tmp_path / "lerobot_ds"
    run = subprocess.run([python, "-c", ROUND_TRIP, str(ROOT), str(out)], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["episodes"] == 3 and (out / "meta" / "info.json").is_file()
    assert not list(tmp_path.glob(".*partial*"))

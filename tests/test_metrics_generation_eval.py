"""Table 1's protocol end to end on CPU: a tiny random-weight ORV checkpoint on disk
generates clips for the held-out split of a small RLDS dataset, which are then scored."""

import json

import numpy as np
import pytest

from benchmarks.metrics.generation_eval import clip_name, held_out_clips, main
from orv_engine.data.clip_files import read_clip
from tiny_orv import tiny_pipeline


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("orv") / "orv-tiny"
    tiny_pipeline().save_pretrained(path)
    return path


def test_generates_the_held_out_split_and_scores_it(checkpoint, tiny_bridge, tmp_path, capsys):
    out = tmp_path / "run"
    code = main([str(checkpoint), str(tiny_bridge), "--preset", "bridge-tiny", "--split", "val", "--max-clips", "2",
                 "--steps", "2", "--gen-batch-size", "2", "--device", "cpu", "--out", str(out), "--quiet"])
    assert code == 0, capsys.readouterr().err
    generated = sorted((out / "generated").iterdir())
    assert [p.name for p in generated] == sorted(p.name for p in (out / "ground_truth").iterdir())
    assert len(generated) == 2
    clip = read_clip(generated[0])
    assert clip.shape == (8, 64, 64, 3)  # bridge-tiny: 8 frames at 64x64, the first one given
    truth = read_clip(out / "ground_truth" / generated[0].name)
    assert truth.shape == clip.shape and not np.array_equal(truth, clip)
    result = json.loads((out / "metrics" / "table1.json").read_text())
    assert result["clips"] == 2 and np.isfinite(result["metrics"]["PSNR"])
    assert json.loads((out / "metrics" / "generation.json").read_text())["clips"] == 2
    assert "| orv-tiny |" in capsys.readouterr().out

    # Seeds are per clip, so the batch size does not change the clips.
    assert main([str(checkpoint), str(tiny_bridge), "--preset", "bridge-tiny", "--max-clips", "2", "--steps", "2",
                 "--gen-batch-size", "1", "--device", "cpu", "--out", str(tmp_path / "single"), "--quiet"]) == 0
    for path in sorted((tmp_path / "single" / "generated").iterdir()):
        a, b = read_clip(path), read_clip(out / "generated" / path.name)
        assert np.abs(a.astype(int) - b).max() <= 1  # batched and single matmuls round differently


def test_condition_maps_from_a_folder(checkpoint, tiny_bridge, tmp_path, capsys):
    conditions = tmp_path / "conditions"
    conditions.mkdir()
    names = [clip_name(c, i) for i, c in enumerate(held_out_clips(tiny_bridge, "bridge-tiny", max_clips=2))]
    args = [str(checkpoint), str(tiny_bridge), "--preset", "bridge-tiny", "--max-clips", "2", "--steps", "2",
            "--conditions", str(conditions), "--device", "cpu", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "missing")]) == 2
    assert f"no condition maps for clip {names[0]!r}" in capsys.readouterr().err
    rng = np.random.default_rng(0)
    for name in names:
        np.savez(conditions / f"{name}.npz", depth=rng.random((8, 64, 64), dtype=np.float32),
                 semantics=rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8))
    assert main(args + ["--out", str(tmp_path / "occ")]) == 0
    assert len(list((tmp_path / "occ" / "generated").iterdir())) == 2

"""Reading and pairing clip folders (orv_engine.data.clip_files)."""

import numpy as np
import pytest

from orv_engine.data.clip_files import (
    ClipPairError,
    check_pairs,
    list_clips,
    pair_clips,
    read_clip,
    read_pair,
    write_clip,
)
from metrics_helpers import smooth_clip


@pytest.mark.parametrize("name", ["clip.npy", "clip", "clip.gif"])
def test_lossless_formats_round_trip(tmp_path, name):
    frames = smooth_clip(5, 20, 28)
    if name.endswith(".gif"):  # GIF is paletted: use few colours so it stays exact
        frames = (frames // 128 * 255).astype(np.uint8)
    np.testing.assert_array_equal(read_clip(write_clip(tmp_path / name, frames)), frames)


def test_mp4_round_trip_is_close(tmp_path):
    frames = smooth_clip(6, 32, 48)
    back = read_clip(write_clip(tmp_path / "clip.mp4", frames))
    assert back.shape == frames.shape and back.dtype == np.uint8
    assert np.abs(back.astype(int) - frames).mean() < 10  # H.264 4:2:0 blurs colour edges


def test_frame_folder_natural_order_and_grayscale_npy(tmp_path):
    from PIL import Image

    folder = tmp_path / "clip"
    folder.mkdir()
    for i in (0, 1, 2, 10):
        Image.fromarray(np.full((8, 8, 3), i * 20, np.uint8)).save(folder / f"f{i}.png")
    assert [int(v) for v in read_clip(folder)[:, 0, 0, 0]] == [0, 20, 40, 200]
    np.save(tmp_path / "gray.npy", np.zeros((2, 8, 8), np.uint8))
    assert read_clip(tmp_path / "gray.npy").shape == (2, 8, 8, 3)
    np.save(tmp_path / "float.npy", np.zeros((2, 8, 8, 3), np.float32))
    with pytest.raises(ClipPairError, match="uint8"):
        read_clip(tmp_path / "float.npy")


def _folders(tmp_path, gen_names, gt_names, gen_frames=4, gt_frames=4, gen_size=(16, 16)):
    for name in gen_names:
        write_clip(tmp_path / "gen" / f"{name}.npy", smooth_clip(gen_frames, *gen_size))
    for name in gt_names:
        write_clip(tmp_path / "gt" / name, smooth_clip(gt_frames, 16, 16))  # PNG frame folders
    return tmp_path / "gen", tmp_path / "gt"


def test_pairs_by_name_across_formats(tmp_path):
    gen, gt = _folders(tmp_path, ["b", "a"], ["a", "b"])
    pairs = pair_clips(gen, gt)
    assert [p.name for p in pairs] == ["a", "b"]
    assert check_pairs(pairs) == [(4, 16, 16), (4, 16, 16)]
    g, t = read_pair(pairs[0])
    np.testing.assert_array_equal(g, t)


def test_unpaired_clips_are_named(tmp_path):
    gen, gt = _folders(tmp_path, ["a", "extra_gen"], ["a", "lonely_gt"])
    with pytest.raises(ClipPairError) as error:
        pair_clips(gen, gt)
    assert "extra_gen" in str(error.value) and "lonely_gt" in str(error.value)


def test_frame_count_and_size_mismatches_are_named(tmp_path):
    gen, gt = _folders(tmp_path, ["ok"], ["ok", "short", "small"])
    write_clip(gen / "short.npy", smooth_clip(3, 16, 16))
    write_clip(gen / "small.npy", smooth_clip(4, 12, 16))
    with pytest.raises(ClipPairError) as error:
        check_pairs(pair_clips(gen, gt))
    message = str(error.value)
    assert "2 clip pair(s)" in message
    assert "'short': frame counts differ" in message and "3 frames" in message
    assert "'small': frame sizes differ" in message and "16x12" in message


def test_duplicate_and_unsupported_entries(tmp_path):
    write_clip(tmp_path / "d" / "a.npy", smooth_clip(2, 8, 8))
    write_clip(tmp_path / "d" / "a.mp4", smooth_clip(2, 8, 8))
    with pytest.raises(ClipPairError, match="two clips named 'a'"):
        list_clips(tmp_path / "d")
    (tmp_path / "e").mkdir()
    (tmp_path / "e" / "notes.txt").write_text("x")
    with pytest.raises(ClipPairError, match="notes.txt"):
        list_clips(tmp_path / "e")
    with pytest.raises(ClipPairError, match="not a folder"):
        list_clips(tmp_path / "missing")

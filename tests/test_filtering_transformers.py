"""End to end through the transformers backend: a tiny random Qwen2.5-VL built offline
(byte-level BPE tokenizer with Qwen's special tokens and chat template,
Qwen2_5_VLProcessor with image and video processors), saved, reloaded from its folder,
scoring real clips through the ``orv-filter`` command. A random model writes garbage: every
clip must come back recorded (unscored, raw text kept), none lost, the run not crashed."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

import filtering  # noqa: F401  (import order)
from filtering_models import SPECIAL_TOKENS, build_tiny_qwen2_5_vl


@pytest.fixture(scope="module")
def tiny_vl(tmp_path_factory):
    return build_tiny_qwen2_5_vl(tmp_path_factory.mktemp("tiny_qwen2_5_vl"))


def test_tiny_qwen2_5_vl_folder_reloads_as_the_real_classes(tiny_vl):
    from transformers import AutoProcessor, AutoTokenizer

    processor = AutoProcessor.from_pretrained(tiny_vl)
    assert type(processor).__name__ == "Qwen2_5_VLProcessor"
    assert "Qwen2VL" in type(processor.video_processor).__name__ and "Qwen2VL" in type(processor.image_processor).__name__
    tokenizer = AutoTokenizer.from_pretrained(tiny_vl)
    assert all(tokenizer.convert_tokens_to_ids(t) != tokenizer.unk_token_id for t in SPECIAL_TOKENS)
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Describe."}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|vision_start|><|video_pad|><|vision_end|>Describe.<|im_end|>\n<|im_start|>assistant\n")
    video = np.random.default_rng(0).integers(0, 255, (4, 56, 84, 3), dtype=np.uint8)
    inputs = processor(text=[text], videos=[video], return_tensors="pt", do_sample_frames=False)
    grid = inputs["video_grid_thw"][0].tolist()
    assert grid == [2, 4, 6]  # 4 frames / temporal patch 2; 56x84 / patch 14
    n_video_tokens = int((inputs["input_ids"] == tokenizer.convert_tokens_to_ids("<|video_pad|>")).sum())
    assert n_video_tokens == 2 * 4 * 6 // 4  # merged 2x2


def test_orv_filter_scores_real_clips_end_to_end(tiny_vl, shared_data, tmp_path):
    from filtering.cli import main

    clips = tmp_path / "clips"
    clips.mkdir()
    for mp4 in sorted((shared_data / "bridge_real").glob("*.mp4"))[:2]:
        shutil.copy(mp4, clips)
    # a third clip that the cheap checks reject before the VLM (a frozen grey video)
    np.save(clips / "frozen_grey.npy", np.full((9, 64, 64, 3), 128, np.uint8))
    (clips / "notes.txt").write_text("not a clip")
    out = tmp_path / "out"
    code = main([str(clips), "--out", str(out), "--backend", "transformers", "--model", str(tiny_vl),
                 "--set", "frame_height=56", "--set", "frame_width=84", "--set", "frames_per_clip=4",
                 "--set", "sampling.max_tokens_score=24", "--set", "sampling.max_tokens_caption=12",
                 "--set", "max_attempts=2"])
    assert code == 0
    rows = {r["clip"]: r for r in pq.read_table(out / "verdicts.parquet").to_pylist()}
    assert set(rows) == {"bridge_real_1", "bridge_real_2", "frozen_grey"}
    frozen = rows.pop("frozen_grey")
    assert frozen["score_status"] == "skipped" and not frozen["keep"] and "blur" in frozen["reason"]
    for row in rows.values():
        assert row["score_status"] == "unscored" and row["keep"] is False
        assert row["attempts"] == 2 and row["raw_score"]  # the model's garbage, kept
        assert "unparseable score" in row["error"] and "unscored" in row["reason"]
        assert row["check_blur_passed"] and row["check_jump_passed"] and row["check_flicker_passed"]
        assert row["seconds_vlm"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clips"] == 3 and summary["status"] == {"unscored": 2, "skipped": 1}
    # --resume: nothing to do again, same table
    assert main([str(clips), "--out", str(out), "--backend", "transformers", "--model", str(tiny_vl), "--resume"]) == 0
    assert pq.read_table(out / "verdicts.parquet").num_rows == 3

"""Prompts, schema, parsing, config, selection and the verdicts table (no models)."""

from __future__ import annotations

import json

import pytest

import filtering  # noqa: F401  (import order)
from filtering.config import FilterConfig
from filtering.parsing import ParseError, parse_caption, parse_score
from filtering.prompts import CAPTION_PROMPT, CRITERIA, check_weights, score_json_schema, scoring_prompt
from filtering.records import ERROR, SCORED, SKIPPED, UNSCORED, CheckResult, ClipVerdict
from filtering.selection import select, summarize
from filtering.table import append_jsonl, read_jsonl, read_verdicts, write_verdicts

W = {"clarity": 0.3, "physical_realism": 0.4, "overall_plausibility": 0.3}


def answer(c=4, p=3, o=5, **extra):
    data = {"clarity": {"score": c, "confidence": 0.9}, "physical_realism": {"score": p, "confidence": 0.6},
            "overall_plausibility": {"score": o, "confidence": 0.8}, "summary": "Slight blur  at the end.",
            "final_score": 9.9}
    data.update(extra)
    return json.dumps(data)


def test_prompts_follow_listings_2_and_3():
    assert CAPTION_PROMPT.startswith("Output only one sentence that describes what the robot arm or gripper is doing.")
    assert "Only output the instruction in imperative form." in CAPTION_PROMPT
    prompt = scoring_prompt({"clarity": 1, "physical_realism": 2, "overall_plausibility": 1})
    for line in ("A. clarity - sharpness, focus, absence of blur, no ghosting_artifacts.",
                 '5. Instead, provide ONE short "summary" (only 1 sentence) describing the main issues.',
                 "C. overall_plausibility - temporal/spatial consistency, lighting stability, no sudden jumps.",
                 "- physical_realism: 0.50", "- clarity: 0.25"):
        assert line in prompt
    schema = score_json_schema()
    assert schema["required"] == [*CRITERIA, "summary", "final_score"]
    assert schema["properties"]["clarity"]["properties"]["score"] == {"type": "integer", "minimum": 1, "maximum": 5}
    with pytest.raises(ValueError, match="missing"):
        check_weights({"clarity": 1.0})


def test_parse_score_accepts_the_schema_in_prose_or_fences_and_recomputes_the_final_score():
    result = parse_score(answer(), W)
    assert {k: v.score for k, v in result.criteria.items()} == {"clarity": 4, "physical_realism": 3, "overall_plausibility": 5}
    assert result.final_score == pytest.approx(0.3 * 4 + 0.4 * 3 + 0.3 * 5)
    assert result.model_final_score == 9.9 and result.summary == "Slight blur at the end."
    assert parse_score("Sure! ```json\n" + answer() + "\n``` done", W).final_score == result.final_score
    assert parse_score("Here: " + answer(c="4") + " hope it helps {x}", W).criteria["clarity"].score == 4
    heavy = parse_score(answer(), {"clarity": 1, "physical_realism": 0, "overall_plausibility": 0})
    assert heavy.final_score == 4


@pytest.mark.parametrize("text, message", [
    ("", "empty"), ("I think it is fine", "no JSON"), ('{"clarity": {"score": 4', "no JSON"),
    (answer(c=6), "1..5"), (answer(c=3.5), "1..5"), (answer(p=True), "number"),
    (answer(summary="  "), "summary"), (json.dumps({"clarity": 3}), "clarity"),
    (answer(overall_plausibility={"score": 3, "confidence": 1.5}), "confidence"),
])
def test_parse_score_rejects_garbage_with_a_reason(text, message):
    with pytest.raises(ParseError, match=message):
        parse_score(text, W)


def test_parse_caption_keeps_one_imperative_sentence():
    assert parse_caption('Instruction: "pick up the red cube and put it in the pot. Then stop."') == \
        "Pick up the red cube and put it in the pot."
    assert parse_caption("Move the gripper left") == "Move the gripper left."
    for bad in ("The robot arm is picking up a cube.", "I am moving the cube.", "  ", "123 !!", "ab\ufffdcd ef"):
        with pytest.raises(ParseError):
            parse_caption(bad)


def test_config_yaml_round_trip_overrides_and_errors(tmp_path):
    config = FilterConfig(backend="openai", model="Qwen/Qwen2.5-VL-7B-Instruct")
    path = config.save(tmp_path / "f.yaml")
    again = FilterConfig.load(path)
    assert again == config
    changed = again.override(["vllm.tensor_parallel_size=4", "selection.drop_percent=5", "prompts.weights.clarity=2"])
    assert changed.vllm.tensor_parallel_size == 4 and changed.selection.drop_percent == 5.0
    assert changed.prompts.weights["clarity"] == 2
    with pytest.raises(ValueError, match=r"^vllm\.tensor_parallel: unknown key \(known here: tensor_parallel_size"):
        again.override(["vllm.tensor_parallel=4"])  # the shared path's wording (orv_engine.config_validation)
    with pytest.raises(ValueError, match="backend"):
        FilterConfig(backend="tgi")
    (tmp_path / "bad.yaml").write_text("sampling: {temprature: 0.5}\n")
    with pytest.raises(ValueError, match="sampling.temprature"):
        FilterConfig.load(tmp_path / "bad.yaml")


def _scored(name, score, conf=0.8):
    return ClipVerdict(clip=name, score_status=SCORED, final_score=score, scores={k: 3 for k in CRITERIA},
                       confidences={k: conf for k in CRITERIA}, caption="Pick it up.", caption_status=SCORED)


def test_selection_drops_the_bottom_ten_percent_with_reasons():
    verdicts = [_scored(f"c{i:02d}", 1 + i * 0.2) for i in range(20)]
    verdicts.append(ClipVerdict(clip="blurry", score_status=SKIPPED,
                                checks=[CheckResult("blur", 3.0, False, 30.0, "variance of Laplacian 3.0 < 30")]))
    verdicts.append(ClipVerdict(clip="garbled", score_status=UNSCORED, error="unparseable score: no JSON object"))
    verdicts.append(ClipVerdict(clip="broken", score_status=ERROR, error="unreadable: OSError: truncated"))
    select(verdicts)
    dropped = [v.clip for v in verdicts if not v.keep]
    assert dropped == ["c00", "c01", "blurry", "garbled", "broken"]
    assert "bottom 10%" in verdicts[0].reason and "rank 1 of 20" in verdicts[0].reason
    assert "blur" in verdicts[20].reason and "no JSON" in verdicts[21].reason and "truncated" in verdicts[22].reason
    summary = summarize(verdicts)
    assert summary["kept"] == 18 and summary["failed_checks"] == {"blur": 1}
    from filtering.config import SelectionConfig
    select(verdicts, SelectionConfig(mode="threshold", min_score=4.0, keep_unscored=True))
    assert [v.clip for v in verdicts if v.keep and v.final_score is not None] == [f"c{i:02d}" for i in range(15, 20)]
    assert next(v for v in verdicts if v.clip == "garbled").keep


def test_verdicts_table_round_trip(tmp_path):
    v = _scored("a", 3.7)
    v.checks = [CheckResult("blur", 120.5, True, 30.0, "ok", 0.01), CheckResult("jump", 1.2, True, 4.0, "ok")]
    u = ClipVerdict(clip="b", score_status=UNSCORED, raw_score="not json", attempts=3, error="unparseable")
    select([v, u])
    path = write_verdicts([v, u], tmp_path / "verdicts.parquet")
    import pyarrow.parquet as pq
    table = pq.read_table(path)
    assert table.num_rows == 2 and table.column("check_blur").to_pylist() == [120.5, None]
    assert table.column("clarity_score").to_pylist() == [3, None]
    back = read_verdicts(path)
    assert back[0].checks == v.checks and back[0].scores == v.scores and back[1].raw_score == "not json"
    append_jsonl([v], tmp_path / "j.jsonl")
    with open(tmp_path / "j.jsonl", "a") as handle:
        handle.write('{"clip": "torn')  # a run killed mid-line
    assert [x.clip for x in read_jsonl(tmp_path / "j.jsonl")] == ["a"]


def test_cli_checks_only_write_config_and_bad_arguments(tmp_path, capsys):
    import numpy as np

    from filtering.cli import main

    assert main(["--write-config", str(tmp_path / "f.yaml")]) == 0
    assert FilterConfig.load(tmp_path / "f.yaml") == FilterConfig()
    clips = tmp_path / "clips"
    clips.mkdir()
    rng = np.random.default_rng(0)
    np.save(clips / "sharp.npy", np.repeat(rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8), 5, axis=0))
    np.save(clips / "flat.npy", np.full((5, 32, 32, 3), 90, np.uint8))
    (clips / "broken.npy").write_bytes(b"not an array")
    assert main([str(clips), "--checks-only", "--out", str(tmp_path / "out")]) == 0
    rows = {v.clip: v for v in read_verdicts(tmp_path / "out" / "verdicts.parquet")}
    assert rows["sharp"].keep and not rows["flat"].keep and "blur" in rows["flat"].reason
    assert not rows["broken"].keep and rows["broken"].score_status == "error" and "unreadable" in rows["broken"].reason
    assert main([str(clips), "--set", "bogus=1", "--checks-only"]) == 2
    assert main([str(clips)]) == 2  # no model
    assert main([str(tmp_path / "missing"), "--checks-only"]) == 2


def test_cli_names_a_folder_without_clips_and_reads_orv_augment_units(tmp_path, capsys):
    import numpy as np

    from filtering.cli import main
    from orv_engine.pipelines.video_io import save_mp4

    empty = tmp_path / "empty"
    (empty / "notes").mkdir(parents=True)
    (empty / "README.txt").write_text("no clips here")
    assert main([str(empty), "--checks-only", "--out", str(tmp_path / "out0")]) == 2
    assert f"no clip in {empty}" in capsys.readouterr().err
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "a.npy").write_bytes(b"not an array")
    (unreadable / "b.mp4").write_bytes(b"not a video")
    assert main([str(unreadable), "--checks-only", "--out", str(tmp_path / "out1")]) == 1
    assert f"none of the 2 clips in {unreadable} could be read" in capsys.readouterr().err
    # orv-augment's per-unit layout: rollouts/UNIT/{video.mp4, clip.npz, ...}
    rollouts = tmp_path / "run" / "rollouts"
    rng = np.random.default_rng(0)
    for unit in ("ep0__v0", "ep0__v1"):
        (rollouts / unit).mkdir(parents=True)
        frames = np.repeat(rng.integers(0, 255, (1, 32, 32, 3), dtype=np.uint8), 5, axis=0)
        save_mp4(frames, rollouts / unit / "video.mp4", fps=5)
        (rollouts / unit / "clip.json").write_text("{}")
    assert main([str(rollouts), "--checks-only", "--out", str(tmp_path / "out2")]) == 0
    assert sorted(v.clip for v in read_verdicts(tmp_path / "out2" / "verdicts.parquet")) == ["ep0__v0", "ep0__v1"]


def test_cli_names_an_unreachable_server(tmp_path, capsys):
    import numpy as np

    from filtering.cli import main
    from filtering_helpers import free_port

    clips = tmp_path / "clips"
    clips.mkdir()
    np.save(clips / "a.npy", np.zeros((5, 32, 32, 3), np.uint8))
    url = f"http://127.0.0.1:{free_port()}/v1"
    assert main([str(clips), "--backend", "openai", "--model", "qwen", "--set", f"openai.base_url={url}",
                 "--out", str(tmp_path / "out")]) == 2
    assert f"the VLM server at {url} cannot be used" in capsys.readouterr().err

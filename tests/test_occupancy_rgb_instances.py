"""Video instance segmenters (SAM3 video; Grounding DINO + SAM2 video) on tiny random models
saved in the real transformers on-disk format. Random weights make arbitrary masks, so the
segmenters are checked against independent references: the raw transformers video API run
here (SAM2 video from the same box; SAM3 video composited per pixel by score), controlled
thresholds (0 paints every object, above 1 paints none), and hand-made masks for the
painting order."""

import json
import re

import numpy as np
import pytest

from orv_engine.occupancy import OccupancyInputError
from orv_engine.occupancy.from_rgb.instances import (GroundedSam2VideoSegmenter, InstanceSegmenter,
                                                     Sam3VideoSegmenter, load_segmenter, paint_masks,
                                                     phrase_class)
from orv_engine.testing.tiny_segmenters import (build_tiny_grounding_dino, build_tiny_sam2_video,
                                                build_tiny_sam3_video)

CLASSES = ["cup", "table"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("segmenters")
    return {"sam3": build_tiny_sam3_video(root / "sam3"),
            "gdino": build_tiny_grounding_dino(root / "gdino", vocab=CLASSES),
            "sam2": build_tiny_sam2_video(root / "sam2")}


@pytest.fixture(scope="module")
def frames():
    return np.random.default_rng(0).integers(0, 255, (3, 48, 64, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def sam3(folders):
    return Sam3VideoSegmenter(folders["sam3"], score_threshold=0.0)


@pytest.fixture(scope="module")
def grounded(folders):
    return GroundedSam2VideoSegmenter(folders["gdino"], folders["sam2"], box_threshold=0.0, text_threshold=0.0,
                                      keyframe=1)


def test_tiny_folders_are_in_the_real_format(folders):
    expected = {"sam3": "sam3_video", "gdino": "grounding-dino", "sam2": "sam2_video"}
    for key, model_type in expected.items():
        folder = folders[key]
        assert json.loads((folder / "config.json").read_text())["model_type"] == model_type
        assert (folder / "model.safetensors").is_file()
        assert (folder / "processor_config.json").is_file() or (folder / "preprocessor_config.json").is_file()
    assert (folders["sam3"] / "tokenizer.json").is_file() and (folders["gdino"] / "tokenizer.json").is_file()
    from transformers import AutoProcessor
    tokenizer = AutoProcessor.from_pretrained(folders["gdino"], local_files_only=True).tokenizer
    assert tokenizer.unk_token_id not in tokenizer("cup. table.").input_ids  # the class words are known


def test_paint_order_background_and_skipped_classes():
    labels = np.full((4, 4), -1, dtype=np.int64)
    masks = np.zeros((3, 4, 4), dtype=bool)
    masks[0, :2, :] = True   # class 0, confident
    masks[1, :3, :] = True   # class 1, less confident, listed later: still loses the overlap
    masks[2, 3, :] = True    # names no class: skipped
    paint_masks(labels, masks, [0, 1, -1], [0.9, 0.2, 0.99])
    assert (labels[:2] == 0).all() and (labels[2] == 1).all() and (labels[3] == -1).all()
    with pytest.raises(OccupancyInputError, match="masks"):
        paint_masks(labels, masks, [0, 1], [0.9, 0.2, 0.99])


def test_grounding_phrases_map_to_classes():
    names = ["cup", "table", "cutting board"]
    assert phrase_class("Cup", names) == 0
    assert phrase_class("cup. table. [SEP]", names) == 1  # several classes: the longest name wins
    assert phrase_class("red cutting board cup", names) == 2
    assert phrase_class("[UNK] [SEP]", names) == -1 and phrase_class("cupboard", names) == -1


def _sam3_reference(segmenter, frames, class_names, threshold):
    """Raw SAM3 video API; each pixel takes the class of the highest-scoring object covering it."""
    model, processor = segmenter.model, segmenter.processor
    session = processor.init_video_session(video=frames, inference_device="cpu")
    processor.add_text_prompt(session, class_names)
    expected = np.full(frames.shape[:3], -1, dtype=np.int64)
    seen = 0
    for output in model.propagate_in_video_iterator(inference_session=session):
        result = processor.postprocess_outputs(session, output)
        classes = [class_names.index(session.prompts[session.obj_id_to_prompt_id[int(obj)]])
                   for obj in result["object_ids"]]
        scores = result["scores"].numpy()
        masks = result["masks"].numpy()
        keep = scores >= threshold
        seen += int(keep.sum())
        if keep.any():
            # rank = position in ascending score order (stable): the highest rank covering a pixel wins
            rank = np.empty(len(scores), dtype=np.int64)
            rank[np.argsort(scores, kind="stable")] = np.arange(len(scores))
            covering = np.where(masks & keep[:, None, None], rank[:, None, None], -1)
            winner_rank = covering.max(axis=0)
            by_rank = np.array(classes)[np.argsort(rank)]
            expected[output.frame_idx] = np.where(winner_rank >= 0, by_rank[np.maximum(winner_rank, 0)], -1)
    return expected, seen


def test_sam3_video_matches_the_raw_video_api(sam3, frames):
    assert isinstance(sam3, InstanceSegmenter) and sam3.name == "sam3_video"
    labels = sam3.segment(frames, CLASSES)
    assert labels.shape == frames.shape[:3] and labels.dtype == np.int64
    expected, seen = _sam3_reference(sam3, frames, CLASSES, threshold=0.0)
    assert seen > 0 and (expected >= 0).any()  # threshold 0: every reported object is painted
    np.testing.assert_array_equal(labels, expected)
    assert set(np.unique(labels)) <= {-1, 0, 1}


def test_sam3_video_threshold_above_one_paints_nothing(sam3, frames, monkeypatch):
    monkeypatch.setattr(sam3, "score_threshold", 1.5)
    labels = sam3.segment(frames[:2], CLASSES)
    assert labels.shape == (2, 48, 64) and labels.dtype == np.int64 and (labels == -1).all()


def _sam2_reference(folder, frames, box, keyframe):
    """Raw SAM2 video API for one box on the keyframe: {frame index: (H, W) bool mask}."""
    from transformers import Sam2VideoModel, Sam2VideoProcessor

    model = Sam2VideoModel.from_pretrained(folder, local_files_only=True).eval()
    processor = Sam2VideoProcessor.from_pretrained(folder, local_files_only=True)
    session = processor.init_video_session(video=frames, inference_device="cpu")
    processor.add_inputs_to_inference_session(inference_session=session, frame_idx=keyframe, obj_ids=7,
                                              input_boxes=[[box]])
    masks = {}
    for reverse in (False, True):
        for output in model.propagate_in_video_iterator(session, start_frame_idx=keyframe, reverse=reverse):
            mask = processor.post_process_masks([output.pred_masks], original_sizes=[list(frames.shape[1:3])])[0]
            masks.setdefault(output.frame_idx, mask[0, 0].numpy())
    return masks


def test_grounded_sam2_video_tracks_a_keyframe_box_like_the_raw_api(grounded, folders, frames, monkeypatch):
    box = [8.0, 6.0, 40.0, 30.0]
    calls = []

    def one_cup_on_the_keyframe(frame, class_names):
        calls.append(frame)
        return np.array([box], np.float32), np.array([0.8], np.float32), np.array([1])

    monkeypatch.setattr(grounded, "detect", one_cup_on_the_keyframe)
    labels = grounded.segment(frames, CLASSES)
    assert len(calls) == 1 and np.array_equal(calls[0], frames[1])  # detection on the keyframe only
    reference = _sam2_reference(folders["sam2"], frames, box, keyframe=1)
    assert sorted(reference) == [0, 1, 2]
    assert any(mask.any() for mask in reference.values())
    for t, mask in reference.items():
        np.testing.assert_array_equal(labels[t], np.where(mask, 1, -1), err_msg=f"frame {t}")


def test_grounded_sam2_video_detects_on_the_keyframe(grounded, frames):
    boxes, scores, class_ids = grounded.detect(frames[1], CLASSES)
    assert boxes.shape == (len(scores), 4) and len(class_ids) == len(scores) > 0
    assert set(class_ids.tolist()) <= {0, 1}
    labels = grounded.segment(frames, CLASSES)
    assert labels.shape == frames.shape[:3] and labels.dtype == np.int64
    assert set(np.unique(labels)) <= {-1, 0, 1}


def test_grounded_sam2_video_finding_nothing_is_all_background(grounded, frames, monkeypatch):
    monkeypatch.setattr(grounded, "box_threshold", 1.5)
    labels = grounded.segment(frames, CLASSES)
    assert labels.dtype == np.int64 and (labels == -1).all()


def test_inputs_are_validated(grounded, frames):
    with pytest.raises(OccupancyInputError, match="frames: expected dtype uint8"):
        grounded.segment(frames.astype(np.float32), CLASSES)
    with pytest.raises(OccupancyInputError, match=r"frames: expected shape \(T, H, W, 3\)"):
        grounded.segment(frames[0], CLASSES)
    with pytest.raises(OccupancyInputError, match="class_names: empty"):
        grounded.segment(frames, [])
    with pytest.raises(OccupancyInputError, match=r"class_names\[1\]"):
        grounded.segment(frames, ["cup", " "])
    with pytest.raises(OccupancyInputError, match="keyframe: 1 is outside a clip of 1 frames"):
        grounded.segment(frames[:1], CLASSES)


def test_load_segmenter_from_local_folders(folders):
    sam3 = load_segmenter("sam3_video", model_path=folders["sam3"])
    assert isinstance(sam3, Sam3VideoSegmenter) and sam3.score_threshold == 0.5
    grounded = load_segmenter("grounded_sam2_video", grounding_dino_path=folders["gdino"], sam2_path=folders["sam2"])
    assert isinstance(grounded, GroundedSam2VideoSegmenter) and grounded.name == "grounded_sam2_video"
    assert isinstance(grounded, InstanceSegmenter)


def test_load_segmenter_errors_name_the_field_and_path(folders, tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(OccupancyInputError, match=re.escape(f"model_path: {missing} is not a folder")):
        load_segmenter("sam3_video", model_path=missing)
    with pytest.raises(OccupancyInputError, match="model_path: facebook/sam3 is not a folder"):
        load_segmenter("sam3_video", model_path="facebook/sam3")  # a hub id: never downloaded
    with pytest.raises(OccupancyInputError, match="model_path: a local model folder is required"):
        load_segmenter("sam3_video")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OccupancyInputError, match=re.escape(f"grounding_dino_path: {empty} has no config.json")):
        load_segmenter("grounded_sam2_video", grounding_dino_path=empty, sam2_path=folders["sam2"])
    with pytest.raises(OccupancyInputError, match="model_path: .* holds model_type 'sam2_video', expected 'sam3_video'"):
        load_segmenter("sam3_video", model_path=folders["sam2"])
    with pytest.raises(OccupancyInputError, match="sam2_path: .* holds model_type 'grounding-dino'"):
        load_segmenter("grounded_sam2_video", grounding_dino_path=folders["gdino"], sam2_path=folders["gdino"])
    with pytest.raises(OccupancyInputError, match="kind: 'sam2' is not a segmenter"):
        load_segmenter("sam2", model_path=folders["sam3"])
    with pytest.raises(OccupancyInputError, match="sam2_video_path"):
        GroundedSam2VideoSegmenter(folders["gdino"], folders["sam3"])


def test_a_folder_without_the_video_weights_is_refused(folders, tmp_path):
    """An image-only SAM2 checkpoint (no memory weights) must not run with random memory."""
    import shutil

    from safetensors.torch import load_file, save_file

    image_only = tmp_path / "sam2_image_only"
    shutil.copytree(folders["sam2"], image_only)
    weights = load_file(image_only / "model.safetensors")
    save_file({k: v for k, v in weights.items() if not k.startswith("memory_")}, image_only / "model.safetensors",
              metadata={"format": "pt"})
    with pytest.raises(OccupancyInputError, match=r"sam2_video_path: .* lacks Sam2VideoModel weights: memory_"):
        GroundedSam2VideoSegmenter(folders["gdino"], image_only)
    with pytest.raises(OccupancyInputError, match=r"sam2_path: .* lacks Sam2VideoModel weights"):
        load_segmenter("grounded_sam2_video", grounding_dino_path=folders["gdino"], sam2_path=image_only)

"""The instance stage of 4D occupancy from RGB video: per-pixel class ids for every frame of
a clip, from text prompts (the dataset's object class names), with objects tracked through
the video so that labels stay consistent from frame to frame.

Two segmenters behind one small interface (``InstanceSegmenter``), both from local folders:

- ``Sam3VideoSegmenter`` (default): SAM3 video in transformers, one text prompt per class
  name; SAM3 detects the prompted concepts on every frame and tracks them with its memory.
- ``GroundedSam2VideoSegmenter`` (the paper's): Grounding DINO boxes for the class names on a
  keyframe, then SAM2 video tracks each box forwards (and backwards) through the clip.

Output: ``(T, H, W) int64``, the index into ``class_names``, ``-1`` where no object is.
Overlapping objects are resolved by confidence (the most confident object is painted last).
Finding nothing is not an error. Unlike ``orv_engine.occupancy.segmentation`` (frame by
frame), masks here come from video trackers, so an object keeps its mask through the clip.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterator, Protocol, runtime_checkable

import numpy as np
import torch

from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.model_folders import check_model_folder

SEGMENTER_KINDS = ("sam3_video", "grounded_sam2_video")


@runtime_checkable
class InstanceSegmenter(Protocol):
    """Text-prompted video segmentation into class ids (see the module docstring)."""

    name: str

    def segment(self, frames: np.ndarray, class_names: list[str]) -> np.ndarray:
        """frames (T, H, W, 3) uint8 -> (T, H, W) int64 index into class_names, -1 = no object."""
        ...


# ---------------------------------------------------------------- shared helpers

def check_inputs(frames, class_names) -> tuple[np.ndarray, list[str]]:
    """Validated ``frames`` (T, H, W, 3) uint8 and ``class_names`` (non-empty strings)."""
    if not isinstance(frames, np.ndarray):
        raise OccupancyInputError(f"frames: expected a numpy array, got {type(frames).__name__}")
    if frames.dtype != np.uint8:
        raise OccupancyInputError(f"frames: expected dtype uint8, got {frames.dtype}")
    if frames.ndim != 4 or frames.shape[-1] != 3 or min(frames.shape[:3]) < 1:
        raise OccupancyInputError(f"frames: expected shape (T, H, W, 3) with T, H, W >= 1, got {frames.shape}")
    if isinstance(class_names, str):
        raise OccupancyInputError("class_names: expected a list of names, got a single string")
    names = list(class_names) if class_names is not None else []
    if not names:
        raise OccupancyInputError("class_names: empty, nothing to prompt for")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            raise OccupancyInputError(f"class_names[{i}]: expected a non-empty string, got {name!r}")
    return np.ascontiguousarray(frames), [name.strip() for name in names]


def paint_masks(labels: np.ndarray, masks: np.ndarray, class_ids, scores) -> np.ndarray:
    """Paint boolean ``masks`` (N, H, W) into ``labels`` (H, W) in place with their
    ``class_ids``, least confident first so the most confident object wins overlaps (ties:
    the later object wins). Objects with a negative class id are skipped. Returns labels."""
    class_ids = np.asarray(class_ids, dtype=np.int64).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    masks = np.asarray(masks, dtype=bool)
    if not (len(masks) == len(class_ids) == len(scores)):
        raise OccupancyInputError(
            f"masks: {len(masks)} masks for {len(class_ids)} class ids and {len(scores)} scores")
    for i in np.argsort(scores, kind="stable"):
        if class_ids[i] >= 0:
            labels[masks[i]] = class_ids[i]
    return labels


def load_complete_model(model_class, field: str, folder: Path, device: str):
    """``model_class`` from a local folder, in eval mode on ``device``; an
    ``OccupancyInputError`` naming ``field`` when the folder lacks some of its weights (e.g. an
    image-only SAM2 checkpoint for the video model), rather than running half-random."""
    model, info = model_class.from_pretrained(folder, local_files_only=True, output_loading_info=True)
    missing = sorted(info.get("missing_keys") or ())
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise OccupancyInputError(f"{field}: {folder} lacks {model_class.__name__} weights: {shown}")
    return model.to(device).eval()


_SPECIAL_TOKENS = re.compile(r"\[(?:CLS|SEP|PAD|UNK|MASK)\]", re.IGNORECASE)


def phrase_class(phrase: str, class_names: list[str]) -> int:
    """Index of the class a Grounding DINO phrase names, or -1. The phrase is cleaned of
    BERT special tokens and punctuation; then an exact match, else the longest class name
    contained in it as whole words (ties: the first listed)."""
    cleaned = " ".join(re.sub(r"[^\w\s-]", " ", _SPECIAL_TOKENS.sub(" ", phrase.lower())).split())
    names = [" ".join(name.lower().split()) for name in class_names]
    if cleaned in names:
        return names.index(cleaned)
    best = -1
    for i, name in enumerate(names):
        if name and f" {name} " in f" {cleaned} " and (best < 0 or len(name) > len(names[best])):
            best = i
    return best


def _load_sam3_postprocessing_kernel_locally() -> None:
    """SAM3 video looks up a hub kernel (NMS, hole filling) on first use; look it up in the
    local cache only, so that loading stays local (without it those steps are skipped)."""
    try:
        from huggingface_hub import constants
        from transformers.models.sam3_video import modeling_sam3_video
    except ImportError:  # pragma: no cover - depends on the installed versions
        return
    load = getattr(modeling_sam3_video, "_load_cv_utils_kernel_once", None)
    if load is None or getattr(modeling_sam3_video, "cv_utils_kernel", None) is not None:
        return
    offline = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        load()
    finally:
        constants.HF_HUB_OFFLINE = offline


# ---------------------------------------------------------------- SAM3 video

class Sam3VideoSegmenter:
    """SAM3 video (``Sam3VideoModel`` + ``Sam3VideoProcessor``), one text prompt per class name.

    ``score_threshold`` drops tracked objects whose detection score is below it (0 keeps every
    object the model reports, above 1 keeps none); the model's own detection thresholds
    (``score_threshold_detection``, ``new_det_thresh`` in its config) apply before it.
    """

    name = "sam3_video"

    def __init__(self, model_path, device: str = "cpu", score_threshold: float = 0.5):
        from transformers import Sam3VideoModel, Sam3VideoProcessor

        folder = check_model_folder("model_path", model_path, ("sam3_video",))
        _load_sam3_postprocessing_kernel_locally()
        self.model = load_complete_model(Sam3VideoModel, "model_path", folder, device)
        self.processor = Sam3VideoProcessor.from_pretrained(folder, local_files_only=True)
        self.device = device
        self.score_threshold = float(score_threshold)

    def segment(self, frames: np.ndarray, class_names: list[str]) -> np.ndarray:
        frames, names = check_inputs(frames, class_names)
        prompt_to_class: dict[str, int] = {}
        for index, name in enumerate(names):
            prompt_to_class.setdefault(name, index)  # a repeated name keeps its first index
        labels = np.full(frames.shape[:3], -1, dtype=np.int64)
        with torch.inference_mode():
            session = self.processor.init_video_session(video=frames, inference_device=self.device,
                                                        video_storage_device=self.device)
            self.processor.add_text_prompt(session, list(prompt_to_class))
            for output in self.model.propagate_in_video_iterator(inference_session=session):
                result = self.processor.postprocess_outputs(session, output)
                object_class = {int(obj): prompt_to_class.get(text, -1)
                                for text, objs in result["prompt_to_obj_ids"].items() for obj in objs}
                object_ids = result["object_ids"].tolist()
                scores = result["scores"].float().cpu().numpy().reshape(-1)
                keep = scores >= self.score_threshold
                if not keep.any():
                    continue
                masks = result["masks"].cpu().numpy().astype(bool)
                class_ids = np.array([object_class.get(int(obj), -1) for obj in object_ids], dtype=np.int64)
                paint_masks(labels[output.frame_idx], masks[keep], class_ids[keep], scores[keep])
        return labels


# ---------------------------------------------------------------- Grounding DINO + SAM2 video

class GroundedSam2VideoSegmenter:
    """Grounding DINO boxes for the class names on a keyframe, tracked through the clip by
    SAM2 video (forwards from the keyframe, and backwards when the keyframe is not frame 0).

    Objects are detected once, on ``keyframe`` (negative counts from the end): what is not
    visible there is not tracked. Overlaps go to the higher Grounding DINO score.
    """

    name = "grounded_sam2_video"

    def __init__(self, grounding_dino_path, sam2_video_path, device: str = "cpu", box_threshold: float = 0.3,
                 text_threshold: float = 0.25, keyframe: int = 0):
        from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor, Sam2VideoModel, Sam2VideoProcessor

        detector_folder = check_model_folder("grounding_dino_path", grounding_dino_path, ("grounding-dino",))
        sam_folder = check_model_folder("sam2_video_path", sam2_video_path, ("sam2_video", "sam2"))
        if isinstance(keyframe, bool) or not isinstance(keyframe, (int, np.integer)):
            raise OccupancyInputError(f"keyframe: expected an integer frame index, got {keyframe!r}")
        self.detector = AutoModelForZeroShotObjectDetection.from_pretrained(
            detector_folder, local_files_only=True).to(device).eval()
        self.detector_processor = AutoProcessor.from_pretrained(detector_folder, local_files_only=True)
        self.tracker = load_complete_model(Sam2VideoModel, "sam2_video_path", sam_folder, device)
        self.tracker_processor = Sam2VideoProcessor.from_pretrained(sam_folder, local_files_only=True)
        self.device = device
        self.box_threshold = float(box_threshold)
        self.text_threshold = float(text_threshold)
        self.keyframe = int(keyframe)

    def keyframe_index(self, num_frames: int) -> int:
        """The keyframe as an index into a clip of ``num_frames`` frames."""
        if not -num_frames <= self.keyframe < num_frames:
            raise OccupancyInputError(f"keyframe: {self.keyframe} is outside a clip of {num_frames} frames")
        return self.keyframe % num_frames

    def detect(self, frame: np.ndarray, class_names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Grounding DINO on one (H, W, 3) frame: boxes (N, 4) xyxy pixels, scores (N,),
        class ids (N,); phrases that name no class are dropped."""
        prompt = ". ".join(name.lower() for name in class_names) + "."
        with torch.inference_mode():
            inputs = self.detector_processor(images=frame, text=prompt, return_tensors="pt").to(self.device)
            detections = self.detector_processor.post_process_grounded_object_detection(
                self.detector(**inputs), inputs.input_ids, threshold=self.box_threshold,
                text_threshold=self.text_threshold, target_sizes=[frame.shape[:2]],
            )[0]
        phrases = detections["text_labels"] if "text_labels" in detections else detections["labels"]
        class_ids = np.array([phrase_class(str(phrase), class_names) for phrase in phrases], dtype=np.int64)
        boxes = detections["boxes"].float().cpu().numpy().reshape(-1, 4)
        scores = detections["scores"].float().cpu().numpy().reshape(-1)
        found = class_ids >= 0
        return boxes[found], scores[found], class_ids[found]

    def track(self, frames: np.ndarray, boxes: np.ndarray, keyframe: int) -> Iterator[tuple[int, np.ndarray]]:
        """SAM2 video from ``boxes`` (N, 4) on ``keyframe``: yields (frame index, (N, H, W) bool
        masks in box order) once per frame, the keyframe and later frames first."""
        height, width = frames.shape[1:3]
        object_ids = list(range(len(boxes)))
        # (no inference_mode block around the yields: propagate_in_video_iterator runs in it)
        session = self.tracker_processor.init_video_session(video=frames, inference_device=self.device,
                                                            video_storage_device=self.device)
        self.tracker_processor.add_inputs_to_inference_session(
            inference_session=session, frame_idx=keyframe, obj_ids=list(object_ids),  # the session consumes it
            input_boxes=[np.asarray(boxes, dtype=np.float32).tolist()])
        for reverse in ((False, True) if keyframe > 0 else (False,)):
            for output in self.tracker.propagate_in_video_iterator(
                    inference_session=session, start_frame_idx=keyframe, reverse=reverse):
                if reverse and output.frame_idx == keyframe:
                    continue  # already yielded going forwards
                masks = self.tracker_processor.post_process_masks(
                    [output.pred_masks.detach().float().cpu()], original_sizes=[[height, width]], binarize=True)[0]
                order = [list(output.object_ids).index(obj) for obj in object_ids]
                yield output.frame_idx, masks[order, 0].numpy()

    def segment(self, frames: np.ndarray, class_names: list[str]) -> np.ndarray:
        frames, names = check_inputs(frames, class_names)
        keyframe = self.keyframe_index(len(frames))
        labels = np.full(frames.shape[:3], -1, dtype=np.int64)
        boxes, scores, class_ids = self.detect(frames[keyframe], names)
        if len(boxes) == 0:
            return labels
        for frame_idx, masks in self.track(frames, boxes, keyframe):
            paint_masks(labels[frame_idx], masks, class_ids, scores)
        return labels


# ---------------------------------------------------------------- factory

def load_segmenter(kind: str, *, model_path=None, grounding_dino_path=None, sam2_path=None,
                   device: str = "cpu") -> InstanceSegmenter:
    """``"sam3_video"`` (needs ``model_path``) or ``"grounded_sam2_video"`` (needs
    ``grounding_dino_path`` and ``sam2_path``), loaded from local folders."""
    if kind == "sam3_video":
        return Sam3VideoSegmenter(check_model_folder("model_path", model_path, ("sam3_video",)), device=device)
    if kind == "grounded_sam2_video":
        check_model_folder("grounding_dino_path", grounding_dino_path, ("grounding-dino",))
        check_model_folder("sam2_path", sam2_path, ("sam2_video", "sam2"))
        try:
            return GroundedSam2VideoSegmenter(grounding_dino_path, sam2_path, device=device)
        except OccupancyInputError as error:  # name this function's field, not the class's
            message = str(error)
            if message.startswith("sam2_video_path:"):
                raise OccupancyInputError("sam2_path:" + message[len("sam2_video_path:"):]) from error
            raise
    raise OccupancyInputError(f"kind: {kind!r} is not a segmenter, expected one of {', '.join(SEGMENTER_KINDS)}")

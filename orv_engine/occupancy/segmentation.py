"""Per-pixel semantic labels for occupancy: simulation segmentation ids mapped to names (and
on to the label set), or — for real videos — an open-vocabulary segmenter behind a small
interface.

``GroundedSam2Segmenter`` uses transformers' Grounding DINO (text-prompted boxes) and SAM2
(box-prompted masks), both from local folders, frame by frame. It is optional: nothing else
in the package imports it, and it is not needed on CPU-only machines.
"""

from __future__ import annotations


import numpy as np
import torch
from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor, Sam2Model, Sam2Processor

from orv_engine.occupancy.errors import OccupancyInputError
from orv_engine.occupancy.model_folders import read_model_folder

UNKNOWN = "unknown"


class SimulationLabels:
    """Simulation segmentation ids -> object names -> label ids of a label set.

    ``id_to_name`` comes from the simulator (e.g. ManiSkill's ``segmentation_id_map``);
    ``label_names`` is the label set; ``name_to_label`` optionally maps a simulator name to a
    label-set name (default: the name itself). Unmapped ids get the ``unknown`` label, which
    is appended to the label set when missing.
    """

    def __init__(self, id_to_name: dict[int, str], label_names, name_to_label: dict[str, str] | None = None):
        names = list(label_names)
        if UNKNOWN not in names:
            names.append(UNKNOWN)
        self.label_names = tuple(names)
        index = {name: i for i, name in enumerate(names)}
        name_to_label = name_to_label or {}
        max_id = max(id_to_name) if id_to_name else 0
        if min(id_to_name, default=0) < 0:
            raise OccupancyInputError("id_to_name: segmentation ids must be non-negative")
        self.table = np.full(max_id + 1, index[UNKNOWN], dtype=np.int64)
        for seg_id, name in id_to_name.items():
            self.table[seg_id] = index.get(name_to_label.get(name, name), index[UNKNOWN])

    def __call__(self, segmentation) -> np.ndarray:
        """Label ids for an integer segmentation array of any shape."""
        segmentation = np.asarray(segmentation)
        if not np.issubdtype(segmentation.dtype, np.integer):
            raise OccupancyInputError(f"segmentation: expected integer ids, got {segmentation.dtype}")
        out = np.empty(segmentation.shape, dtype=np.int64)
        known = (segmentation >= 0) & (segmentation < self.table.size)
        out[known] = self.table[segmentation[known]]
        out[~known] = self.label_names.index(UNKNOWN)
        return out


class GroundedSam2Segmenter:
    """Grounding DINO boxes for the class names, SAM2 masks inside them (local weights)."""

    def __init__(self, grounding_dino_path, sam2_path, device: str = "cpu",
                 box_threshold: float = 0.3, text_threshold: float = 0.25):
        grounding_dino_path = read_model_folder("grounding_dino_path", grounding_dino_path)[0]
        sam2_path = read_model_folder("sam2_path", sam2_path)[0]
        self.detector = AutoModelForZeroShotObjectDetection.from_pretrained(grounding_dino_path, local_files_only=True).to(device).eval()
        self.detector_processor = AutoProcessor.from_pretrained(grounding_dino_path, local_files_only=True)
        self.sam = Sam2Model.from_pretrained(sam2_path, local_files_only=True).to(device).eval()
        self.sam_processor = Sam2Processor.from_pretrained(sam2_path, local_files_only=True)
        self.device = device
        self.box_threshold = box_threshold
        self.text_threshold = text_threshold

    def segment(self, frames: np.ndarray, class_names: list[str]) -> np.ndarray:
        frames = np.asarray(frames)
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise OccupancyInputError(f"frames: expected (T, H, W, 3), got {frames.shape}")
        prompt = ". ".join(name.lower() for name in class_names) + "."
        out = np.full(frames.shape[:3], -1, dtype=np.int64)
        for t, frame in enumerate(frames):
            with torch.no_grad():
                inputs = self.detector_processor(images=frame, text=prompt, return_tensors="pt").to(self.device)
                detections = self.detector_processor.post_process_grounded_object_detection(
                    self.detector(**inputs), inputs.input_ids, threshold=self.box_threshold,
                    text_threshold=self.text_threshold, target_sizes=[frame.shape[:2]],
                )[0]
                if len(detections["boxes"]) == 0:
                    continue
                boxes = detections["boxes"].cpu().tolist()
                sam_inputs = self.sam_processor(images=frame, input_boxes=[boxes], return_tensors="pt").to(self.device)
                masks = self.sam_processor.post_process_masks(
                    self.sam(**sam_inputs, multimask_output=False).pred_masks.cpu(),
                    sam_inputs["original_sizes"],
                )[0][:, 0].numpy()
            scores = detections["scores"].cpu().numpy()
            phrases = detections["text_labels"] if "text_labels" in detections else detections["labels"]
            for i in np.argsort(scores):  # most confident painted last
                class_id = phrase_to_class(str(phrases[i]), class_names)
                if class_id >= 0:
                    out[t][masks[i] > 0] = class_id
        return out


def phrase_to_class(phrase: str, class_names: list[str]) -> int:
    """Index of the class a Grounding DINO phrase names (exact, else contained), or -1."""
    phrase = phrase.strip().lower()
    lowered = [name.strip().lower() for name in class_names]
    if phrase in lowered:
        return lowered.index(phrase)
    for i, name in enumerate(lowered):
        if name and name in phrase.split():
            return i
    return -1

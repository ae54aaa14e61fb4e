"""The one evaluation interface of the finetuned policies, and chunk-execution wrappers.

A :class:`VLAPolicy` sees one RGB image per step and returns one 7-d Bridge action
``[dx, dy, dz, droll, dpitch, dyaw, gripper]`` in the training data's physical units,
gripper in [0, 1] with 1 = open. Both recipes predict *chunks* of actions; a
:class:`ChunkPredictor` (what the models implement) becomes a ``VLAPolicy`` through

- :class:`ActionChunkExecutor`: predict a chunk, execute its first ``k`` actions, predict
  again (RoboVLMs/SpatialVLA's open-loop chunk execution);
- :class:`TemporalEnsembler`: predict a chunk every step and average, for the current step,
  all chunks that cover it with ACT's exponential weights ``w_i = exp(-m * i)``, ``i = 0``
  the oldest prediction (ACT, Zhao et al. 2023; also Octo's ensembling).

:func:`load_policy` opens any saved policy folder (RoboVLM or SpatialVLA) by its
``config.json`` ``model_type``.
"""

from __future__ import annotations

import json
from collections import deque
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from vla_finetune.policies.robovlm import RoboVLMPolicy
from vla_finetune.policies.spatialvla import SpatialVLAPolicy


@runtime_checkable
class VLAPolicy(Protocol):
    def reset(self, instruction: str) -> None: ...

    def act(self, image: np.ndarray) -> np.ndarray: ...
    # image: (H, W, 3) uint8 RGB of the current step. Returns one 7-d float action in Bridge
    # convention: [dx, dy, dz, droll, dpitch, dyaw, gripper], gripper in [0, 1] with 1 = open,
    # un-normalised (physical units of the training data).


@runtime_checkable
class ChunkPredictor(Protocol):
    """What a chunk-predicting model offers (both recipes implement it)."""

    chunk_size: int

    def reset(self, instruction: str) -> None: ...

    def predict_chunk(self, image: np.ndarray) -> np.ndarray: ...
    # (chunk_size, 7) un-normalised actions for the current and the next steps; the model
    # keeps its own observation history between calls, cleared by reset().


def check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
    return image


class ActionChunkExecutor:
    """Execute ``execute_steps`` actions of each predicted chunk before predicting again."""

    def __init__(self, model: ChunkPredictor, execute_steps: int | None = None):
        execute_steps = model.chunk_size if execute_steps is None else execute_steps
        if not 1 <= execute_steps <= model.chunk_size:
            raise ValueError(f"execute_steps must be in [1, {model.chunk_size}], got {execute_steps}")
        self.model, self.execute_steps = model, execute_steps
        self._queue: deque = deque()

    def reset(self, instruction: str) -> None:
        self.model.reset(instruction)
        self._queue.clear()

    def act(self, image: np.ndarray) -> np.ndarray:
        image = check_image(image)
        if not self._queue:
            chunk = self.model.predict_chunk(image)
            self._queue.extend(chunk[: self.execute_steps])
        else:
            if hasattr(self.model, "observe"):  # keep the history of models that have one
                self.model.observe(image)
        return np.asarray(self._queue.popleft(), np.float32)


class TemporalEnsembler:
    """ACT temporal ensembling: average every chunk's prediction for the current step.

    ``weight_decay`` is ACT's ``m``: the weight of the ``i``-th oldest prediction is
    ``exp(-m * i)`` (m = 0.01 in ACT: older predictions weigh slightly more). The gripper is
    averaged like the rest, then thresholded at 0.5 (Bridge gripper actions are 0/1).
    """

    def __init__(self, model: ChunkPredictor, weight_decay: float = 0.01, binarize_gripper: bool = True):
        self.model, self.weight_decay, self.binarize_gripper = model, weight_decay, binarize_gripper
        self._chunks: deque = deque(maxlen=model.chunk_size)

    def reset(self, instruction: str) -> None:
        self.model.reset(instruction)
        self._chunks.clear()

    def act(self, image: np.ndarray) -> np.ndarray:
        chunk = np.asarray(self.model.predict_chunk(check_image(image)), np.float64)
        self._chunks.append(chunk)
        # the chunk predicted j steps ago covers this step with its row j; oldest first
        rows = [c[len(self._chunks) - 1 - j] for j, c in enumerate(self._chunks)]
        weights = np.exp(-self.weight_decay * np.arange(len(rows)))
        action = (weights[:, None] * np.stack(rows)).sum(0) / weights.sum()
        if self.binarize_gripper:
            action[6] = float(action[6] > 0.5)
        return action.astype(np.float32)


class GripperOpenAfter:
    """Open the gripper only after ``count`` consecutive "open" predictions (> 0.5), closed
    otherwise: RoboVLMs' WidowX evaluation wrapper (``eval/simpler/model_wrapper.py``,
    ``late_close_gripper = 2``), which its released policy was scored with."""

    def __init__(self, policy: VLAPolicy, count: int):
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        self.policy, self.count, self._open_streak = policy, count, 0

    def reset(self, instruction: str) -> None:
        self.policy.reset(instruction)
        self._open_streak = 0

    def act(self, image: np.ndarray) -> np.ndarray:
        action = np.array(self.policy.act(image), np.float32)
        self._open_streak = self._open_streak + 1 if action[6] > 0.5 else 0
        action[6] = float(self._open_streak >= self.count)
        return action


UNCONVERTED = {  # released layouts that load_policy does not run as they are
    "spatialvla": "a SpatialVLA release (trust_remote_code layout); convert it once with "
                  "`orv-convert spatialvla SRC DST`",
}


def load_policy(path: str | Path, *, execution: str | None = None, execute_steps: int | None = None,
                weight_decay: float | None = None, gripper_open_after: int | None = None,
                device: str = "cpu") -> VLAPolicy:
    """Open a saved RoboVLM or SpatialVLA folder as a :class:`VLAPolicy`.

    ``execution``: "chunk" (:class:`ActionChunkExecutor`, ``execute_steps`` of each chunk) or
    "ensemble" (:class:`TemporalEnsembler`, ``weight_decay``). Each argument left ``None`` takes
    the policy's own convention from its config (``execution``, ``execute_steps``,
    ``ensemble_weight_decay``): RoboVLMs' Simpler wrapper executes the first action of each
    chunk, SpatialVLA's ensembles 4-step chunks with the newer ones weighted more; a config
    without them runs whole chunks (ensembling: ACT's m = 0.01). A config's
    ``gripper_open_after`` > 1 wraps the result in :class:`GripperOpenAfter` (RoboVLMs'
    WidowX gripper rule; ``gripper_open_after=1`` here turns it off).
    """
    path = Path(path)
    config = path / "config.json"
    if not config.is_file():
        raise FileNotFoundError(f"{path}: not a saved policy folder (no config.json)")
    model_type = json.loads(config.read_text()).get("model_type")
    if model_type in UNCONVERTED:
        raise ValueError(f"{config}: model_type {model_type!r} is {UNCONVERTED[model_type]}")
    classes = {"robovlm": RoboVLMPolicy, "spatialvla_orv": SpatialVLAPolicy}
    if model_type not in classes:
        raise ValueError(f"{config}: model_type {model_type!r} is neither 'robovlm' nor 'spatialvla_orv'")
    model = classes[model_type].from_pretrained(path).to(device).eval()
    own = model.config
    execution = execution or getattr(own, "execution", None) or "chunk"
    if execution == "chunk":
        policy = ActionChunkExecutor(model, execute_steps if execute_steps is not None
                                     else getattr(own, "execute_steps", None))
    elif execution == "ensemble":
        if weight_decay is None:
            weight_decay = getattr(own, "ensemble_weight_decay", None)
        policy = TemporalEnsembler(model, 0.01 if weight_decay is None else weight_decay)
    else:
        raise ValueError(f"execution must be 'chunk' or 'ensemble', not {execution!r}")
    if gripper_open_after is None:
        gripper_open_after = getattr(own, "gripper_open_after", 1)
    return GripperOpenAfter(policy, gripper_open_after) if gripper_open_after > 1 else policy

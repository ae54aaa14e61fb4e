"""Chunk execution and ACT temporal ensembling over a scripted chunk predictor (numbers known)."""

from __future__ import annotations

import numpy as np
import pytest

from vla_finetune.policies.interface import ActionChunkExecutor, ChunkPredictor, TemporalEnsembler, VLAPolicy


class ScriptedChunks:
    """Predicts at call ``c`` the chunk whose row ``j`` is ``100 * c + j`` (gripper: row parity)."""

    chunk_size = 3

    def __init__(self):
        self.calls, self.observed, self.instruction = 0, 0, None

    def reset(self, instruction: str) -> None:
        self.calls, self.observed, self.instruction = 0, 0, instruction

    def observe(self, image) -> None:
        self.observed += 1

    def predict_chunk(self, image) -> np.ndarray:
        chunk = np.zeros((self.chunk_size, 7), np.float32)
        chunk[:, 0] = 100 * self.calls + np.arange(self.chunk_size)
        chunk[:, 6] = np.arange(self.chunk_size) % 2
        self.calls += 1
        return chunk


IMAGE = np.zeros((8, 8, 3), np.uint8)


def test_protocols():
    assert isinstance(ScriptedChunks(), ChunkPredictor)
    assert isinstance(ActionChunkExecutor(ScriptedChunks()), VLAPolicy)
    assert isinstance(TemporalEnsembler(ScriptedChunks()), VLAPolicy)


def test_chunk_executor_runs_k_actions_per_prediction():
    model = ScriptedChunks()
    policy = ActionChunkExecutor(model, execute_steps=2)
    policy.reset("open the drawer")
    xs = [policy.act(IMAGE)[0] for _ in range(5)]
    assert xs == [0, 1, 100, 101, 200]
    assert model.calls == 3 and model.observed == 2  # the steps in between still reach the history
    policy.reset("close it")
    assert policy.act(IMAGE)[0] == 0 and model.instruction == "close it"
    with pytest.raises(ValueError, match="execute_steps"):
        ActionChunkExecutor(model, execute_steps=4)


def test_temporal_ensembling_weights():
    m = 0.5
    policy = TemporalEnsembler(ScriptedChunks(), weight_decay=m, binarize_gripper=False)
    policy.reset("x")
    assert policy.act(IMAGE)[0] == 0  # only chunk 0, row 0
    # step 1: chunk 0 row 1 (=1, oldest, weight 1) and chunk 1 row 0 (=100, weight e^-m)
    w = np.exp(-m * np.arange(2))
    assert policy.act(IMAGE)[0] == pytest.approx((w[0] * 1 + w[1] * 100) / w.sum(), rel=1e-6)
    # step 2: rows 2, 101, 200; step 3: chunk 0 has run out -> rows 102, 201, 300
    w = np.exp(-m * np.arange(3))
    assert policy.act(IMAGE)[0] == pytest.approx((w @ [2, 101, 200]) / w.sum(), rel=1e-6)
    assert policy.act(IMAGE)[0] == pytest.approx((w @ [102, 201, 300]) / w.sum(), rel=1e-6)


def test_ensembled_gripper_is_binary_and_images_are_checked():
    policy = TemporalEnsembler(ScriptedChunks())
    policy.reset("x")
    grippers = [policy.act(IMAGE)[6] for _ in range(4)]
    assert set(grippers) <= {0.0, 1.0}
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        policy.act(np.zeros((8, 8, 3), np.float32))


def test_gripper_opens_only_after_consecutive_open_predictions():
    from vla_finetune.policies.interface import GripperOpenAfter

    class Fixed:
        def __init__(self, grippers):
            self.grippers = list(grippers)

        def reset(self, instruction):
            self.i = 0

        def act(self, image):
            g = self.grippers[self.i]
            self.i += 1
            return np.array([0.1, 0, 0, 0, 0, 0, g], np.float32)

    policy = GripperOpenAfter(Fixed([1, 1, 1, 0, 1, 1]), 2)
    policy.reset("x")
    out = [policy.act(None) for _ in range(6)]
    assert [a[6] for a in out] == [0.0, 1.0, 1.0, 0.0, 0.0, 1.0]  # RoboVLMs' late_close_gripper = 2
    assert all(a[0] == np.float32(0.1) for a in out)
    policy.reset("x")
    assert policy.act(None)[6] == 0.0  # the streak starts over at reset

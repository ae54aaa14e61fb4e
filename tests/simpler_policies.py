"""Policies for the SimplerEnv harness tests (imported by module:Class in the simulator
process): one that misbehaves, and a probe that keeps the first image of each episode."""

import os
import uuid
from pathlib import Path

import numpy as np


class MisbehavingPolicy:
    """Episode 0: NaN actions; 1: wrong shape; 2: raises; 3+: zeros (a valid idle policy)."""

    def __init__(self):
        self.episode = -1

    def reset(self, instruction: str) -> None:
        self.episode += 1

    def act(self, image):
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.uint8
        if self.episode == 0:
            return np.full(7, np.nan)
        if self.episode == 1:
            return np.zeros(6)
        if self.episode == 2:
            raise RuntimeError("policy exploded")
        return np.array([0, 0, 0, 0, 0, 0, 1.0])


class FirstFrameProbe:
    """Saves the first image of each episode (what a policy sees, exactly) with its
    instruction to ``$ORV_SIMPLER_PROBE_DIR`` and idles (gripper open)."""

    def __init__(self):
        self.folder = Path(os.environ["ORV_SIMPLER_PROBE_DIR"])
        self.instruction, self.saved = "", True

    def reset(self, instruction: str) -> None:
        self.instruction, self.saved = instruction, False

    def act(self, image):
        if not self.saved:  # one file per episode; the simulator process is the only writer
            np.savez(self.folder / f"{uuid.uuid4().hex}.npz", image=image, instruction=self.instruction)
            self.saved = True
        return np.array([0, 0, 0, 0, 0, 0, 1.0])

"""Misbehaving policies for the SimplerEnv harness tests (imported by module:Class in the
simulator process)."""

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

"""Batching of network features over a stream of clips (benchmarks.metrics.features)."""

import numpy as np

from benchmarks.metrics.features import FeatureBank


def test_batches_of_the_given_size_in_order_and_mixed_sizes():
    calls = []

    def extract(batch):
        calls.append(batch.shape)
        return batch.reshape(len(batch), -1).mean(axis=1, keepdims=True)

    bank = FeatureBank(extract, batch_size=4)
    for value in range(6):
        bank.add(np.full((3, 2, 2), value, np.uint8))  # 18 items of 2x2
    bank.add(np.full((2, 5, 5), 9, np.uint8))  # another frame size
    features = bank.features()
    assert calls == [(4, 2, 2)] * 4 + [(2, 2, 2), (2, 5, 5)]
    np.testing.assert_array_equal(features[:, 0], [v for v in range(6) for _ in range(3)] + [9, 9])

"""``order_by_mean``: a partition renumbered by ascending mean value, whatever its input numbering."""

from __future__ import annotations

import numpy as np
import pytest

from monai_ext.baselines import order_by_mean


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_parts_are_numbered_by_ascending_mean_whatever_the_input_numbering(seed: int) -> None:
    rng = np.random.default_rng(seed)
    values = rng.random((2, 6, 7))  # channel-first: the mean over channels orders the parts
    labels = rng.integers(0, 5, size=(6, 7)) * 3  # sparse label values
    ordered = order_by_mean(labels, values, channel_first=True)
    by_loops = {}
    for label in np.unique(labels):
        by_loops[label] = np.mean([values[:, i, j].mean() for i, j in zip(*np.nonzero(labels == label), strict=True)])
    expected_rank = {label: rank for rank, label in enumerate(sorted(by_loops, key=by_loops.get))}
    np.testing.assert_array_equal(ordered, np.vectorize(expected_rank.get)(labels))
    permutation = rng.permutation(labels.max() + 1)
    np.testing.assert_array_equal(order_by_mean(permutation[labels], values, channel_first=True), ordered)


def test_labels_of_another_shape_are_refused() -> None:
    with pytest.raises(ValueError, match="spatial shape of the values"):
        order_by_mean(np.zeros((3, 3), dtype=int), np.zeros((3, 4)))

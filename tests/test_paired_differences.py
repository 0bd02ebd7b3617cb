"""``paired_differences``: the paired per-slice comparison of two methods with its bootstrap interval."""

from __future__ import annotations

import numpy as np
import pytest

from monai_ext.metrics import paired_differences


def test_two_slices_give_the_exact_bootstrap_interval() -> None:
    # differences 0 and 1: a resampled mean is 0, 0.5 or 1 with probabilities 1/4, 1/2, 1/4, so the 2.5 and 97.5
    # percentiles are 0 and 1
    found = paired_differences([0.5, 0.9], [0.5, -0.1])
    assert found == {"mean": 0.5, "ci95": [0.0, 1.0], "higher": 1, "n": 2}


def test_a_constant_difference_has_no_spread() -> None:
    found = paired_differences([0.7, 0.6, 0.9], [0.6, 0.5, 0.8])
    np.testing.assert_allclose([found["mean"], *found["ci95"]], [0.1, 0.1, 0.1])
    assert found["higher"] == 3


def test_mismatched_or_empty_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="of one length"):
        paired_differences([0.5], [0.5, 0.6])
    with pytest.raises(ValueError, match="non-empty"):
        paired_differences([], [])

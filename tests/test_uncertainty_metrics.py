"""Uncertainty scores of segmentation ensembles against brute-force computations."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from monai_ext.metrics import boundary_band, boundary_variance_ratio, error_auroc, expected_calibration_error


def test_error_auroc_equals_pair_counting_with_ties() -> None:
    rng = np.random.default_rng(0)
    scores = [rng.integers(0, 4, size=(5, 6)).astype(float) for _ in range(2)]  # many ties
    errors = [rng.random((5, 6)) < 0.3 for _ in range(2)]
    s, e = np.concatenate([a.ravel() for a in scores]), np.concatenate([a.ravel() for a in errors])
    wins = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in itertools.product(s[e], s[~e]))
    assert error_auroc(scores, errors) == pytest.approx(wins / (e.sum() * (~e).sum()))
    assert error_auroc(np.arange(4.0), np.array([0, 0, 1, 1])) == 1.0
    assert np.isnan(error_auroc(np.ones(4), np.zeros(4)))


def test_ece_equals_a_loop_over_bins() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(200)
    p[:3] = [0.0, 1.0, 0.1]  # bin edges
    y = (rng.random(200) < p).astype(float)
    expected = 0.0
    for b in range(10):
        lo, hi = b / 10, (b + 1) / 10
        inside = (p >= lo) & ((p < hi) if b < 9 else (p <= hi))
        if inside.any():
            expected += inside.sum() / p.size * abs(y[inside].mean() - p[inside].mean())
    assert expected_calibration_error(p, y) == pytest.approx(expected)
    assert expected_calibration_error(np.array([0.0, 1.0]), np.array([0.0, 1.0])) == 0.0
    assert np.isnan(expected_calibration_error([], []))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error(np.array([1.5]), np.array([1.0]))


def test_boundary_band_and_ratio() -> None:
    label = np.zeros((9, 9), dtype=bool)
    label[2:7, 2:7] = True
    band = boundary_band(label, width=1.5)
    # brute force: a pixel is in the band when a pixel of the other class lies within Euclidean distance 1.5
    # (diagonal neighbours count, unlike a taxicab distance)
    ii, jj = np.indices(label.shape)
    for i, j in zip(ii.ravel(), jj.ravel(), strict=True):
        other = label != label[i, j]
        near = ((ii - i) ** 2 + (jj - j) ** 2 <= 1.5**2) & other
        assert band[i, j] == near.any()
    assert not boundary_band(np.zeros((4, 4)), 2).any()
    assert band[1, 1] and not boundary_band(label, width=1)[1, 1]  # the corner's diagonal neighbour
    band = boundary_band(label, width=1)
    variance = np.where(band, 0.2, 0.05)
    region = np.ones_like(label)
    assert boundary_variance_ratio([variance], [label], [region], width=1) == pytest.approx(4.0)
    assert boundary_variance_ratio([np.where(band, 0.2, 0.0)], [label], [region], width=1) == np.inf
    assert np.isnan(boundary_variance_ratio([np.zeros_like(variance)], [label], [region], width=1))
    region[band] = False
    assert np.isnan(boundary_variance_ratio([variance], [label], [region], width=1))
    with pytest.raises(ValueError, match="one shape"):
        boundary_variance_ratio([variance], [label[:4]], [region], width=1)

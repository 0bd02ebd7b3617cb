"""The hint rule, the CUTS scores and the scikit-image baselines."""

from __future__ import annotations

import math

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from monai_ext.baselines.superpixels import BASELINES, otsu_watershed
from monai_ext.metrics.hint import binary_mask_scores, hint_dice, hint_mask, hint_scores


def test_hint_rule_picks_the_label_most_frequent_under_the_foreground() -> None:
    labels = np.array([[0, 0, 1, 1], [2, 2, 1, 1], [2, 2, 3, 3]])
    truth = np.array([[0, 0, 0, 1], [1, 1, 1, 1], [1, 0, 0, 0]])
    # under the foreground: label 1 three times, label 2 three times -> the smaller label wins the tie
    assert np.array_equal(hint_mask(labels, truth), labels == 1)
    truth[0, 2] = 0
    truth[2, 1] = 1
    assert np.array_equal(hint_mask(labels, truth), labels == 2)
    with pytest.raises(ValueError, match="empty"):
        hint_mask(labels, np.zeros_like(truth))


def test_scores_against_direct_computations() -> None:
    truth = np.zeros((16, 16), dtype=bool)
    truth[4:10, 4:10] = True
    mask = np.zeros_like(truth)
    mask[5:12, 4:10] = True
    scores = binary_mask_scores(mask, truth)
    overlap = (mask & truth).sum()
    assert scores["dice"] == pytest.approx(2 * overlap / (mask.sum() + truth.sum()))
    assert scores["rmse"] == pytest.approx(math.sqrt((mask ^ truth).mean()))
    assert scores["ssim"] == pytest.approx(structural_similarity(truth * 1.0, mask * 1.0, data_range=1.0))
    assert scores["hausdorff"] == pytest.approx(2.0)  # rows 10 and 11 are 2 rows from the truth's last row
    assert scores["ergas"] == pytest.approx(100 * math.sqrt((mask ^ truth).mean()) / truth.mean())
    empty = binary_mask_scores(np.zeros_like(truth), truth)
    assert empty["dice"] == 0 and empty["hausdorff"] == empty["hd95"] == pytest.approx(math.hypot(16, 16))
    with pytest.raises(ValueError, match="ground-truth mask is empty"):
        binary_mask_scores(mask, np.zeros_like(truth))


def test_hint_dice_is_the_dice_of_hint_scores() -> None:
    rng = np.random.default_rng(0)
    for _ in range(20):
        labels = rng.integers(0, 4, size=(12, 12))
        truth = rng.random((12, 12)) < 0.3
        assert hint_dice(labels, truth) == pytest.approx(hint_scores(labels, truth)["dice"], rel=1e-6)
    with pytest.raises(ValueError, match="empty"):
        hint_dice(labels, np.zeros_like(truth))


def test_baselines_label_every_pixel_and_find_the_bright_blobs() -> None:
    generator = np.random.default_rng(0)
    image = np.zeros((1, 40, 40))
    image[0, 5:15, 5:15] = 1.0
    image[0, 25:35, 22:32] = 1.0  # equal sizes: both distance maxima pass the 0.9 peak fraction
    image += 0.02 * generator.random(image.shape)
    watershed_labels = otsu_watershed(image)
    assert watershed_labels[10, 10] != watershed_labels[30, 28] and watershed_labels[10, 10] > 0
    assert watershed_labels[20, 20] == 0  # the dark background
    rgb = np.repeat(image, 3, axis=0)
    for name, baseline in BASELINES.items():
        labels = baseline(rgb)
        assert labels.shape == (40, 40) and labels.dtype == np.int64, name
        assert labels[10, 10] != labels[20, 20], name
    with pytest.raises(ValueError, match="constant"):
        otsu_watershed(np.ones((1, 8, 8)))
    with pytest.raises(ValueError, match=r"\(C, H, W\)"):
        otsu_watershed(np.ones((8, 8)))

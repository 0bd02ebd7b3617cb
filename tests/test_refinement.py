"""Potts refinement of label-map boundaries (iterated conditional modes, Besag 1986), checked against an
independently computed energy."""

from __future__ import annotations

from itertools import product

import numpy as np
import pytest
import torch

from monai_ext.transforms import PottsRefinement, PottsRefinementd, potts_refinement


def pooled_variance(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-channel variance of the intensities around their label's mean, over all pixels."""
    residuals = np.zeros_like(image)
    for label in np.unique(labels):
        inside = labels == label
        residuals[:, inside] = image[:, inside] - image[:, inside].mean(axis=1, keepdims=True)
    return (residuals**2).reshape(len(image), -1).mean(axis=1)


def energy(image: np.ndarray, labels: np.ndarray, means: dict, variance: np.ndarray, beta: float) -> float:
    """Gaussian negative log-likelihood under fixed label means and shared variances, plus beta per 8-connected pair
    of pixels with different labels."""
    total = labels.size / 2 * float(np.log(variance).sum())
    rows, columns = labels.shape
    for r, c in product(range(rows), range(columns)):
        total += float((((image[:, r, c] - means[labels[r, c]]) ** 2) / (2 * variance)).sum())
        for dr, dc in product((-1, 0, 1), repeat=2):
            inside = 0 <= r + dr < rows and 0 <= c + dc < columns
            if (dr, dc) != (0, 0) and inside and labels[r + dr, c + dc] != labels[r, c]:
                total += beta / 2  # each pair is seen from both ends
    return total


def noisy_regions(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A 2-channel 7 x 6 image of three intensity regions with noise, and a label map with a third of it wrong."""
    rng = np.random.default_rng(seed)
    truth = np.zeros((7, 6), dtype=np.int64)
    truth[:, 3:] = 1
    truth[4:, :2] = 2
    image = np.stack([truth * 1.0, (truth == 2) * 2.0]) + rng.normal(0, 0.4, (2, 7, 6))
    labels = np.where(rng.random(truth.shape) < 0.33, rng.integers(0, 3, truth.shape), truth)
    return image, labels


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("beta", [0.0, 0.5, 2.0])
def test_ends_in_a_local_minimum_of_a_lower_energy(seed: int, beta: float) -> None:
    image, labels = noisy_regions(seed)
    refined = potts_refinement(torch.as_tensor(labels), torch.as_tensor(image), beta).numpy()

    def fitted(label_map: np.ndarray) -> tuple[dict, np.ndarray]:
        means = {label: image[:, label_map == label].mean(axis=1) for label in np.unique(label_map)}
        return means, pooled_variance(image, label_map)

    reached = energy(image, refined, *fitted(refined), beta)
    assert reached <= energy(image, labels, *fitted(labels), beta) + 1e-9
    # no pixel lowers the energy by taking a label of its 3 x 3 neighbourhood (the parameters of the result fixed)
    means, variance = fitted(refined)
    for r, c in product(range(7), range(6)):
        for label in np.unique(refined[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]):
            moved = refined.copy()
            moved[r, c] = label
            assert energy(image, moved, means, variance, beta) >= reached - 1e-9
    assert len(np.unique(refined)) <= len(np.unique(labels))  # labels are never created


@pytest.mark.parametrize("spatial", [(16, 16), (12, 12, 12)])
def test_a_segment_spilt_over_its_edge_is_put_back(spatial: tuple[int, ...]) -> None:
    """A bright cube labelled two pixels too wide, as a patch embedding labels a thin structure."""
    inner = tuple(slice(n // 2 - 2, n // 2 + 2) for n in spatial)
    spilt = tuple(slice(n // 2 - 4, n // 2 + 4) for n in spatial)
    truth, labels = np.zeros(spatial, dtype=np.int64), np.zeros(spatial, dtype=np.int64)
    truth[inner], labels[spilt] = 1, 1
    rng = np.random.default_rng(0)
    image = (truth + rng.normal(0, 0.1, spatial))[None]
    refined = potts_refinement(torch.as_tensor(labels), torch.as_tensor(image), 0.5).numpy()
    np.testing.assert_array_equal(refined, truth)


def test_transforms_keep_the_metadata_and_check_their_input() -> None:
    image, labels = noisy_regions(0)
    refined = PottsRefinement(0.5)(torch.as_tensor(labels)[None], torch.as_tensor(image))
    assert refined.shape == (1, 7, 6)
    out = PottsRefinementd("pred", smoothness=0.5)({"pred": torch.as_tensor(labels)[None], "image": image})
    torch.testing.assert_close(out["pred"], refined)
    with pytest.raises(ValueError, match="smoothness must be >= 0"):
        PottsRefinement(-1.0)
    with pytest.raises(ValueError, match="max_iterations >= 1"):
        PottsRefinementd("pred", max_iterations=0)
    with pytest.raises(ValueError, match=r"key 'pred' on image 'image'.*on the labels' grid \(7, 6\)"):
        PottsRefinementd("pred")({"pred": torch.as_tensor(labels)[None], "image": torch.as_tensor(image)[:, :5]})
    nan_image = torch.as_tensor(image).clone()
    nan_image[0, 1, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        PottsRefinementd("pred")({"pred": torch.as_tensor(labels)[None], "image": nan_image})
    with pytest.raises(ValueError, match="integers >= 0"):
        potts_refinement(torch.as_tensor(labels) - 1, torch.as_tensor(image))
    for bad in (0.5, float("inf")):  # a fractional or infinite label (the shared check_integer_labels)
        fractional = torch.as_tensor(labels).double()
        fractional[0, 0] = bad
        with pytest.raises(ValueError, match="integers >= 0"):
            potts_refinement(fractional, torch.as_tensor(image))
    with pytest.raises(KeyError, match="needs the image under 'image'"):
        PottsRefinementd("pred")({"pred": torch.as_tensor(labels)[None]})

"""HierarchicalSegmenter's merged levels (over-clustering then merging) against an independent computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_ext.bundle import trained_label_keys
from monai_ext.networks import HierarchicalSegmenter, hierarchy_parts


def soft_centroid_linkage(probabilities: np.ndarray, image: np.ndarray, num_parts: int) -> np.ndarray:
    """Merged probabilities (num_parts, N), merging the closest probability-weighted mean intensities first; every
    group's mean taken afresh from the voxels and the probabilities of its members."""
    groups = [[k] for k in range(len(probabilities))]
    while len(groups) > num_parts:
        weights = [probabilities[g].sum(0) for g in groups]
        means = [float((w * image).sum() / w.sum()) for w in weights]
        pairs = [(a, b) for a in range(len(groups)) for b in range(a + 1, len(groups))]
        a, b = min(pairs, key=lambda p: (means[p[0]] - means[p[1]]) ** 2)
        groups[a] += groups.pop(b)
    return np.stack([probabilities[g].sum(0) for g in sorted(groups, key=min)])


def three_region_image() -> torch.Tensor:
    image = torch.rand(2, 1, 8, 8, 8) * 0.1
    image[:, :, :4] += 0.4
    image[:, :, 6:, 6:, 6:] += 1.0  # a small bright region
    return image


def test_merged_levels_match_an_independent_soft_centroid_linkage() -> None:
    torch.manual_seed(0)
    merged = HierarchicalSegmenter(num_parts=(6,), channels=(4, 8), strides=(2,), merged_parts=(2, 3)).eval()
    plain = HierarchicalSegmenter(num_parts=(6,), channels=(4, 8), strides=(2,)).eval()
    plain.load_state_dict(merged.state_dict())  # merging adds no weights
    image = three_region_image()
    with torch.no_grad():
        two, three, finest = merged.split(merged(image))
        torch.testing.assert_close(finest, plain(image))
    for b in range(2):
        probabilities = finest[b].flatten(1).double().numpy()
        for level, k in ((two, 2), (three, 3)):
            expected = soft_centroid_linkage(probabilities, image[b, 0].flatten().double().numpy(), k)
            np.testing.assert_allclose(level[b].flatten(1).double().numpy(), expected, rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(level[b].sum(0), torch.ones(8, 8, 8))


def test_output_level_counts_the_merged_levels() -> None:
    torch.manual_seed(0)
    full = HierarchicalSegmenter(num_parts=(4, 6), channels=(4, 8), strides=(2,), merged_parts=(3,)).eval()
    image = three_region_image()
    with torch.no_grad():
        levels = full.split(full(image))
        assert [level.shape[1] for level in levels] == [3, 4, 6]
        for number, expected in enumerate(levels, start=1):
            served = HierarchicalSegmenter(
                num_parts=(4, 6), channels=(4, 8), strides=(2,), merged_parts=(3,), output_level=number
            ).eval()
            served.load_state_dict(full.state_dict())
            torch.testing.assert_close(served(image), expected)


def test_a_merged_level_between_trained_levels_takes_its_place_by_k() -> None:
    """K = 2 and 6 trained, 3 merged: the levels are 2 / 3 / 6; the trained ones are the plain network's, the merged
    one the independent linkage of the finest, and ``output_level`` serves each of them alone."""
    torch.manual_seed(0)
    options = {"num_parts": (2, 6), "channels": (4, 8), "strides": (2,)}
    hybrid = HierarchicalSegmenter(**options, merged_parts=(3,)).eval()
    plain = HierarchicalSegmenter(**options).eval()
    plain.load_state_dict(hybrid.state_dict())
    image = three_region_image()
    assert hybrid.output_parts == hierarchy_parts((2, 6), (3,)) == [2, 3, 6] and hybrid.trained_levels == [0, 2]
    with torch.no_grad():
        levels = hybrid.split(hybrid(image))
        coarse, finest = plain.split(plain(image))
        torch.testing.assert_close(levels[0], coarse)
        torch.testing.assert_close(levels[2], finest)
        for number, expected in enumerate(levels, start=1):
            served = HierarchicalSegmenter(**options, merged_parts=(3,), output_level=number).eval()
            served.load_state_dict(hybrid.state_dict())
            torch.testing.assert_close(served(image), expected)
    for b in range(2):
        expected = soft_centroid_linkage(
            finest[b].flatten(1).double().numpy(), image[b, 0].flatten().double().numpy(), 3
        )
        np.testing.assert_allclose(levels[1][b].flatten(1).double().numpy(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("merged_parts", [(6,), (3, 2), (1,), (3, 3), (True,)])
def test_merged_parts_must_increase_below_the_finest_level(merged_parts) -> None:
    with pytest.raises(ValueError, match="merged_parts"):
        HierarchicalSegmenter(num_parts=(6,), merged_parts=merged_parts)


@pytest.mark.parametrize(
    ("num_parts", "merged_parts", "match"),
    [
        ((2, 6), (2,), "none equal to a trained level's K"),
        ((2, 6), (7,), "below the finest trained level's 6 parts"),
        ((6, 2), (3,), "num_parts must increase"),
    ],
)
def test_merged_parts_must_differ_from_the_trained_levels(num_parts, merged_parts, match) -> None:
    with pytest.raises(ValueError, match=match):
        HierarchicalSegmenter(num_parts=num_parts, merged_parts=merged_parts)


def test_training_validation_reads_the_labels_of_the_trained_levels() -> None:
    """``validation_label_keys``: one label per level keeps those of the trained levels; a single label stays."""
    keys = ["label_l1", "label_l2", "label_l3"]
    assert trained_label_keys(keys, [8], [2, 4]) == ["label_l3"]
    assert trained_label_keys(keys, [2, 8], [4]) == ["label_l1", "label_l3"]
    assert trained_label_keys(keys, [2, 4, 8]) == keys
    assert trained_label_keys(["label"], [6], [3]) == ["label"] and trained_label_keys([], [8], [2, 4]) == []
    with pytest.raises(ValueError, match=r"label_keys must name one label map per level \(3: K = \[2, 4, 8\]"):
        trained_label_keys(keys[:2], [8], [2, 4])


def test_output_level_range_includes_the_merged_levels() -> None:
    HierarchicalSegmenter(num_parts=(6,), merged_parts=(3,), output_level=2)
    with pytest.raises(ValueError, match=r"output_level must be a 1-based level in 1 \.\. 2"):
        HierarchicalSegmenter(num_parts=(6,), merged_parts=(3,), output_level=3)


class _DistanceTo(torch.nn.Module):
    """Values |x - centre|, with a weight of its own, which must stay out of the segmenter's state dict."""

    def __init__(self, centre: float) -> None:
        super().__init__()
        self.centre = centre
        self.scale = torch.nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (x - self.centre).abs()


def test_merge_values_sets_the_means_merged_by_and_adds_no_state() -> None:
    """With ``merge_values`` the linkage compares the part means of its output, not of the input (the independent
    computation gets the transformed values), and the state dict keys are those of the plain segmenter."""
    torch.manual_seed(0)
    options = {"num_parts": (6,), "channels": (4, 8), "strides": (2,), "merged_parts": (2, 3)}
    by_values = HierarchicalSegmenter(**options, merge_values=_DistanceTo(0.75)).eval()
    by_image = HierarchicalSegmenter(**options).eval()
    assert by_values.state_dict().keys() == by_image.state_dict().keys()
    by_image.load_state_dict(by_values.state_dict())
    image = three_region_image()
    values = _DistanceTo(0.75)(image).detach()
    with torch.no_grad():
        two, three, finest = by_values.split(by_values(image))
    for b in range(2):
        probabilities = finest[b].flatten(1).double().numpy()
        for level, k in ((two, 2), (three, 3)):
            expected = soft_centroid_linkage(probabilities, values[b, 0].flatten().double().numpy(), k)
            np.testing.assert_allclose(level[b].flatten(1).double().numpy(), expected, rtol=1e-5, atol=1e-6)


def test_merge_values_can_keep_a_bright_part_the_image_would_not() -> None:
    """Three hand-set parts, dark (0.05), mid (0.45) and bright (1.05): merged to 2 by the image, dark and mid join;
    by |x - 0.75| (0.7, 0.3, 0.3), mid and bright do."""
    image = three_region_image()
    dark, mid, bright = torch.ones_like(image, dtype=torch.bool), image > 0.3, image > 0.9
    finest = torch.cat([dark & ~mid & ~bright, mid & ~bright, bright], dim=1).float()
    options = {"num_parts": (3,), "channels": (4, 8), "strides": (2,), "merged_parts": (2,)}
    (by_image,) = HierarchicalSegmenter(**options).merge(image, finest)
    (by_values,) = HierarchicalSegmenter(**options, merge_values=_DistanceTo(0.75)).merge(image, finest)
    torch.testing.assert_close(by_image, torch.stack([finest[:, 0] + finest[:, 1], finest[:, 2]], dim=1))
    torch.testing.assert_close(by_values, torch.stack([finest[:, 0], finest[:, 1] + finest[:, 2]], dim=1))


def test_merge_values_must_be_callable_and_keep_the_grid() -> None:
    with pytest.raises(TypeError, match="merge_values must be callable"):
        HierarchicalSegmenter(num_parts=(6,), merged_parts=(3,), merge_values="denoised")
    shrink = HierarchicalSegmenter(
        num_parts=(6,), channels=(4, 8), strides=(2,), merged_parts=(3,), merge_values=lambda x: x[:, :, ::2]
    ).eval()
    with pytest.raises(ValueError, match=r"merge_values must keep the input's batch and spatial size \(2, 8, 8, 8\)"):
        shrink(three_region_image())

"""merge_by_means against a brute-force agglomeration that recomputes every part's mean from its voxels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_ext.transforms.agglomeration import agglomerate_means, merge_by_means


def brute_force_groups(labels: np.ndarray, values: np.ndarray, num_parts: int) -> list[set[int]]:
    """Greedy centroid linkage, each step's means taken afresh from the voxels of every candidate group."""
    groups = [{int(k)} for k in np.unique(labels)]
    points = values.reshape(values.shape[0], -1).T
    flat = labels.reshape(-1)
    while len(groups) > num_parts:
        means = [points[np.isin(flat, sorted(g))].mean(0) for g in groups]
        pairs = [(a, b) for a in range(len(groups)) for b in range(a + 1, len(groups))]
        a, b = min(pairs, key=lambda p: float(((means[p[0]] - means[p[1]]) ** 2).sum()))
        groups[a] |= groups.pop(b)
    return groups


@pytest.mark.parametrize("seed", range(5))
def test_matches_brute_force_on_random_maps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 7, size=(5, 6, 4))
    values = rng.normal(size=(2, 5, 6, 4)) + labels[None] * rng.normal(size=(2, 1, 1, 1))
    merged, mapping = merge_by_means(torch.as_tensor(labels), torch.as_tensor(values), 3)
    expected = brute_force_groups(labels, values, 3)
    got = [set(np.flatnonzero(mapping.numpy() == m).tolist()) for m in range(3)]
    assert sorted(map(sorted, got)) == sorted(map(sorted, expected))
    assert torch.equal(merged, mapping[torch.as_tensor(labels)])


def test_a_small_distinct_part_survives_where_similar_large_parts_merge() -> None:
    # parts 0 and 1: large, means 0 and 1; part 2: 1 voxel at 10. Ward's linkage would merge the small part first.
    labels = torch.tensor([0] * 50 + [1] * 50 + [2])
    values = torch.cat([torch.zeros(50), torch.ones(50), torch.tensor([10.0])])[None]
    merged, mapping = merge_by_means(labels, values, 2)
    assert mapping.tolist() == [0, 0, 1]
    assert merged.tolist() == [0] * 100 + [1]


def test_labels_no_voxel_has_map_to_minus_one_and_fewer_parts_are_kept() -> None:
    labels = torch.tensor([[0, 0, 3, 3]])
    merged, mapping = merge_by_means(labels, torch.tensor([[[0.0, 0.0, 5.0, 5.0]]]), 3)
    assert mapping.tolist() == [0, -1, -1, 1]
    assert merged.tolist() == [[0, 0, 1, 1]]


@pytest.mark.parametrize(
    "labels, values, num_parts, message",
    [
        (torch.zeros(2, 2, dtype=torch.long), torch.zeros(1, 2, 2), 0, "num_parts"),
        (torch.zeros(2, 2, dtype=torch.long), torch.zeros(1, 2, 2), True, "num_parts"),
        (torch.tensor([[-1, 0]]), torch.zeros(1, 1, 2), 1, "integers >= 0"),
        (torch.zeros(2, 2, dtype=torch.long), torch.zeros(2, 2), 1, r"\(C, \*spatial\)"),
        (torch.zeros(2, 2, dtype=torch.long), torch.full((1, 2, 2), float("nan")), 1, "finite"),
        (torch.zeros(0, dtype=torch.long), torch.zeros(1, 0), 1, "non-empty"),
    ],
)
def test_bad_input_is_an_error(labels, values, num_parts, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        merge_by_means(labels, values, num_parts)


def test_soft_parts_merge_by_their_weighted_means() -> None:
    # three soft parts over 4 voxels of values 0, 0, 1, 9: parts 0 and 1 hold the low voxels, part 2 the high one
    probabilities = torch.tensor([[0.9, 0.1, 0.5, 0.0], [0.1, 0.9, 0.5, 0.0], [0.0, 0.0, 0.0, 1.0]])
    values = torch.tensor([0.0, 0.0, 1.0, 9.0])
    sums, sizes = probabilities @ values[:, None], probabilities.sum(1)
    assert agglomerate_means(sums, sizes, 2).tolist() == [0, 0, 1]
    with pytest.raises(ValueError, match=r"\(K, C\)"):
        agglomerate_means(sums[:, 0], sizes, 2)

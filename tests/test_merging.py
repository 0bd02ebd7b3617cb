"""merge_adjacent_parts against a reference that recounts the boundaries from the label map after every merge, hand
cases, and bad input."""

from collections import Counter

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_ext.transforms import MergeAdjacentParts, MergeAdjacentPartsd, merge_adjacent_parts
from monai_ext.transforms.merging import part_contacts
from monai_ext.transforms.persistence import relabel_by_first_appearance

OUTSIDE = -1


def boundary_counts(labels: np.ndarray) -> dict[int, Counter]:
    """Per part, how many of its pixels' face neighbours (OUTSIDE beyond the image) lie in each other part, counted
    pixel by pixel."""
    counts: dict[int, Counter] = {int(p): Counter() for p in np.unique(labels)}
    for index in np.ndindex(labels.shape):
        for axis in range(labels.ndim):
            for step in (-1, 1):
                other = list(index)
                other[axis] += step
                inside = 0 <= other[axis] < labels.shape[axis]
                neighbour = int(labels[tuple(other)]) if inside else OUTSIDE
                if neighbour != labels[index]:
                    counts[int(labels[index])][neighbour] += 1
    return counts


def first_appearance(labels: np.ndarray) -> list[int]:
    _, first = np.unique(labels.ravel(), return_index=True)
    return [int(labels.ravel()[i]) for i in sorted(first)]


def reference_merge(labels: np.ndarray, boundary_share: float, size_ratio: float) -> np.ndarray:
    """The merge rule applied literally: recount sizes and boundaries from the current map, merge one pair, repeat."""
    labels = labels.copy()
    while True:
        order = first_appearance(labels)  # ties in size and in contact go to the earlier label
        rank = {p: i for i, p in enumerate(order)}
        sizes = {p: int((labels == p).sum()) for p in order}
        counts = boundary_counts(labels)
        for part in sorted(order, key=lambda p: (sizes[p], rank[p])):
            boundary = sum(counts[part].values())
            neighbours = [p for p in order if counts[part][p] > 0]
            if not neighbours:
                continue
            neighbour = max(neighbours, key=lambda p: (counts[part][p], -rank[p]))
            if counts[part][neighbour] >= boundary_share * boundary and sizes[part] >= size_ratio * sizes[neighbour]:
                labels[labels == part] = neighbour
                break
        else:
            return labels


def voronoi_map(shape: tuple[int, ...], parts: int, seed: int) -> np.ndarray:
    """Labels of the nearest of ``parts`` random sites, weighted so that the parts differ in size."""
    rng = np.random.default_rng(seed)
    sites = rng.uniform(0, shape, size=(parts, len(shape)))
    weights = rng.uniform(0.5, 2.0, size=parts)
    grid = np.stack(np.indices(shape), -1).reshape(-1, len(shape))
    distance = ((grid[:, None] - sites[None]) ** 2).sum(-1) / weights**2
    return rng.permutation(parts)[distance.argmin(1)].reshape(shape)


@pytest.mark.parametrize("shape", [(7, 9), (5, 4, 6)])
def test_contacts_match_pixel_count(shape):
    labels = voronoi_map(shape, 5, seed=sum(shape))
    labels = relabel_by_first_appearance(torch.as_tensor(labels)).numpy()
    contacts = part_contacts(torch.as_tensor(labels)).numpy()
    k = int(labels.max()) + 1
    counts = boundary_counts(labels)
    expected = np.zeros((k + 1, k + 1), np.int64)
    for part, row in counts.items():
        for other, n in row.items():
            expected[part, k if other == OUTSIDE else other] = n
            if other == OUTSIDE:
                expected[k, part] = n
    np.testing.assert_array_equal(contacts, expected)


def rectangles_map(shape: tuple[int, ...], parts: int, seed: int) -> np.ndarray:
    """Random boxes of labels 1 .. parts - 1 painted in turn over a background 0: nested and overlapping pieces."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int64)
    for part in range(1, parts):
        low = rng.integers(0, np.array(shape) - 2)
        high = low + rng.integers(2, np.maximum(3, np.array(shape) // 2))
        labels[tuple(slice(a, b) for a, b in zip(low, high, strict=True))] = part
    return labels


@pytest.mark.parametrize("boundary_share, size_ratio", [(0.25, 0.3), (0.4, 0.0), (0.2, 0.8), (0.3, 0.6)])
def test_matches_reference_on_random_maps(boundary_share, size_ratio):
    merges = 0
    for seed in range(6):
        shape = (16, 18) if seed % 2 else (6, 7, 5)
        for labels in (voronoi_map(shape, 8, seed), rectangles_map(shape, 8, seed)):
            expected = reference_merge(labels, boundary_share, size_ratio)
            got = merge_adjacent_parts(torch.as_tensor(labels), boundary_share, size_ratio)
            assert torch.equal(got, relabel_by_first_appearance(torch.as_tensor(expected))), seed
            merges += len(np.unique(labels)) - len(torch.unique(got))
    assert merges > 0  # the options let some parts merge on these maps


def test_ties_follow_raster_order_on_tiny_maps():
    """Small maps with few labels tie often, in size and in contact: both ties go to the part that appears first,
    and a merged part ranks where the earlier of its two parts did."""
    rng = np.random.default_rng(0)
    merges = 0
    for _ in range(400):
        labels = rng.integers(0, rng.integers(2, 6), size=tuple(rng.integers(2, 7, size=2)))
        boundary_share, size_ratio = rng.uniform(0.25, 0.5), rng.uniform(0.0, 0.8)
        expected = relabel_by_first_appearance(torch.as_tensor(reference_merge(labels, boundary_share, size_ratio)))
        got = merge_adjacent_parts(torch.as_tensor(labels), boundary_share, size_ratio)
        assert torch.equal(got, expected), (labels, boundary_share, size_ratio)
        merges += len(np.unique(labels)) - len(torch.unique(got))
    assert merges > 0


def test_a_merged_part_keeps_the_earlier_rank():
    """Part 3 (5 pixels, first in raster order) joins the island 2, which holds a quarter of its boundary, the most.
    The merged part keeps part 3's first rank, so part 1 (the bottom-right pixel, touching it and part 0 once each)
    picks it on the tie and is too small to join it. Ranked as the island, the merged part would lose that tie to
    part 0, which part 1 would then join."""
    labels = torch.tensor([[3, 3, 3, 0], [3, 2, 3, 1]])
    expected = torch.tensor([[0, 0, 0, 1], [0, 0, 0, 2]])
    assert torch.equal(merge_adjacent_parts(labels, 0.25, 0.8), expected)


@pytest.mark.parametrize("core, size_ratio, merges", [(5, 0.9, True), (4, 0.9, False), (4, 0.8, True)])
def test_a_core_merges_with_a_ring_of_its_size(core, size_ratio, merges):
    """A core square inside a ring one pixel wide: the core's whole boundary is the ring's; a 5 x 5 core has 25
    pixels against the ring's 24, a 4 x 4 core 16 against 20 (0.8 of it: under 0.9, at 0.8 exactly)."""
    labels = np.zeros((12, 12), np.int64)
    labels[2 : core + 4, 2 : core + 4] = 1
    labels[3 : core + 3, 3 : core + 3] = 2
    merged = merge_adjacent_parts(torch.as_tensor(labels), size_ratio=size_ratio).numpy()
    assert (merged[4, 4] == merged[2, 2]) == merges
    assert merged[0, 0] != merged[2, 2]


def tumour_and_ventricle_map() -> np.ndarray:
    """0: tissue filling a 20 x 20 image; 1: an 'edema' square (rows and columns 2-9) minus a 4 x 4 'core' (2) on its
    right edge, which touches the tissue on its right side only; 3: a 2 x 2 'ventricle' island in the tissue."""
    labels = np.zeros((20, 20), np.int64)
    labels[2:10, 2:10] = 1
    labels[4:8, 6:10] = 2
    labels[14:16, 14:16] = 3
    return labels


def test_comparable_pieces_merge_and_an_island_stays():
    labels = tumour_and_ventricle_map()
    # core: 16 pixels, boundary 16, 12 along the edema (48 pixels), 4 along the tissue: share 0.75, size ratio 1 / 3
    merged = merge_adjacent_parts(torch.as_tensor(labels), boundary_share=0.75, size_ratio=0.3).numpy()
    assert merged[5, 7] == merged[3, 3] != merged[0, 0]  # the core joined the edema
    assert merged[14, 14] != merged[0, 0]  # the ventricle, all boundary along the much larger tissue, stayed
    assert len(np.unique(merged)) == 3


@pytest.mark.parametrize("boundary_share, size_ratio", [(0.8, 0.3), (0.75, 0.4)])
def test_a_short_shared_boundary_or_a_small_part_stays(boundary_share, size_ratio):
    merged = merge_adjacent_parts(torch.as_tensor(tumour_and_ventricle_map()), boundary_share, size_ratio).numpy()
    np.testing.assert_array_equal(merged, tumour_and_ventricle_map())  # already in first-appearance order


def test_a_part_holding_the_whole_image_and_first_appearance_numbering():
    assert torch.equal(merge_adjacent_parts(torch.full((4, 5), 7)), torch.zeros(4, 5, dtype=torch.long))
    labels = torch.tensor([[5, 5, 2], [5, 5, 2]])
    assert torch.equal(merge_adjacent_parts(labels, 1.0, 1.0), torch.tensor([[0, 0, 1], [0, 0, 1]]))


def test_array_and_dictionary_forms_keep_metadata():
    labels = MetaTensor(torch.as_tensor(tumour_and_ventricle_map())[None].float(), meta={"filename_or_obj": "a.png"})
    out = MergeAdjacentParts(0.75, 0.3)(labels)
    assert out.shape == (1, 20, 20) and out.dtype == labels.dtype
    assert out.meta["filename_or_obj"] == "a.png"
    assert len(torch.unique(out)) == 3
    d = MergeAdjacentPartsd("pred", boundary_share=0.75, size_ratio=0.3)({"pred": labels, "image": 1})
    assert torch.equal(d["pred"], out) and d["image"] == 1


@pytest.mark.parametrize("boundary_share, size_ratio", [(0.0, 0.5), (1.5, 0.5), (0.5, -0.1), (0.5, 1.2)])
def test_bad_options_are_refused(boundary_share, size_ratio):
    with pytest.raises(ValueError, match="boundary_share must be in \\(0, 1\\] and size_ratio in \\[0, 1\\]"):
        MergeAdjacentParts(boundary_share, size_ratio)


def test_bad_labels_are_refused_naming_the_key():
    for bad in ([[0.5, 1.0]], [[float("inf"), 0.0]], [[float("nan"), 0.0]]):
        with pytest.raises(ValueError, match="integers >= 0"):
            merge_adjacent_parts(torch.tensor(bad))
        with pytest.raises(ValueError, match="integers >= 0"):
            part_contacts(torch.tensor(bad))
    with pytest.raises(ValueError, match="integers >= 0"):
        merge_adjacent_parts(torch.tensor([[-1, 0]]))
    with pytest.raises(ValueError, match="\\(1, \\*spatial\\)"):
        MergeAdjacentParts()(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match="MergeAdjacentPartsd, key 'pred'"):
        MergeAdjacentPartsd("pred")({"pred": torch.full((1, 3, 3), -2)})

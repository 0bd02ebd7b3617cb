"""Persistent structures (CUTS sec. 3.2.2) on hand-made level series."""

from __future__ import annotations

import pytest
import torch

from monai_ext.transforms.condensation import DiffusionCondensation
from monai_ext.transforms.persistence import (
    PersistentStructures,
    PersistentStructuresd,
    persistent_structures,
    segment_lifetimes,
)

# 8 pixels; fine to coarse. Pixels 0-1 stay one segment from level 0 to 3; pixels 6-7 from level 1 to 2.
LEVELS = torch.tensor(
    [
        [0, 0, 1, 2, 3, 3, 4, 5],
        [0, 0, 1, 1, 2, 2, 3, 3],
        [0, 0, 1, 1, 1, 1, 2, 2],
        [0, 0, 1, 1, 1, 1, 1, 1],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ]
)


def lifetimes_by_brute_force(levels: torch.Tensor, clock: list[int]) -> dict[frozenset, int]:
    """Each distinct pixel set with the clock span of the consecutive levels it appears in, from the first."""
    spans: dict[frozenset, int] = {}
    for index, level in enumerate(levels):
        for label in torch.unique(level).tolist():
            members = frozenset(torch.nonzero(level == label).flatten().tolist())
            if members in spans:
                continue
            last = index
            while last + 1 < len(levels):
                next_level = levels[last + 1]
                if frozenset(torch.nonzero(next_level == next_level[min(members)]).flatten().tolist()) != members:
                    break
                last += 1
            end = clock[last + 1] if last + 1 < len(levels) else clock[-1] + 1
            spans[members] = end - clock[index]
    return spans


@pytest.mark.parametrize("steps", [None, [0, 3, 4, 10, 30]])
def test_lifetimes_match_a_direct_count(steps) -> None:
    clock = steps or list(range(len(LEVELS)))
    expected = lifetimes_by_brute_force(LEVELS, clock)
    found = {
        frozenset(torch.nonzero(LEVELS[s["level"]] == s["label"]).flatten().tolist()): s["persistence"]
        for s in segment_lifetimes(LEVELS, steps)
    }
    assert found == expected
    assert found[frozenset({0, 1})] == (4 if steps is None else 30)  # intact in levels 0-3, merged at level 4


def test_parents_form_the_condensation_tree() -> None:
    segments = segment_lifetimes(LEVELS)

    def members(segment: dict) -> frozenset:
        return frozenset(torch.nonzero(LEVELS[segment["level"]] == segment["label"]).flatten().tolist())

    for segment in segments:
        own = members(segment)
        # brute force: the set of the label that holds the segment's pixels at the first later level where they
        # are no longer a whole label
        later = [
            frozenset(torch.nonzero(level == level[min(own)]).flatten().tolist())
            for level in LEVELS[segment["level"] + 1 :]
        ]
        grown = next((m for m in later if m != own), None)
        if grown is None:
            assert segment["parent"] is None
        else:
            assert members(segments[segment["parent"]]) == grown
    assert sum(s["parent"] is None for s in segments) == 1  # the last level has one cluster: one root


def test_the_more_persistent_segment_is_painted_over_the_less() -> None:
    labels = persistent_structures(LEVELS, min_size=0.0, min_persistence=2)
    # persistent: {0,1} (4 levels), {2,3} and {4,5} (2 levels: 1-2), {6,7} (2 levels), {2..7} (1 level: dropped)
    assert labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    coarse = persistent_structures(LEVELS, min_size=0.0, min_persistence=3)  # only {0,1} survives the filter
    assert coarse.tolist() == [0, 0, 1, 1, 1, 1, 1, 1]  # the canvas: the coarsest level with two clusters
    most = persistent_structures(LEVELS, min_size=0.0, min_persistence=2, max_segments=1)  # {0,1} alone painted
    assert most.tolist() == coarse.tolist()


def test_full_label_map_from_a_condensation_with_metadata() -> None:
    generator = torch.Generator().manual_seed(0)
    image = torch.zeros(3, 12, 12)
    image[:, 3:9, 3:9] = 5.0
    image[:, 5:7, 5:7] = 10.0
    image += 0.2 * torch.randn(3, 12, 12, generator=generator)
    levels = DiffusionCondensation()(image)
    label_map = PersistentStructures()(levels)
    assert label_map.shape == (1, 12, 12) and label_map.dtype == torch.int64
    assert int(label_map.min()) == 0 and torch.unique(label_map).tolist() == list(range(int(label_map.max()) + 1))
    d = PersistentStructuresd("levels", output_key="pred")({"levels": levels})
    assert torch.equal(d["pred"], label_map)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="min_size"):
        PersistentStructures(min_size=1.5)
    with pytest.raises(ValueError, match="max_segments"):
        PersistentStructures(max_segments=0)
    with pytest.raises(ValueError, match="increasing"):
        segment_lifetimes(LEVELS, steps=[0, 1, 1, 2, 3])
    with pytest.raises(ValueError, match=r"\(L, N\)"):
        segment_lifetimes(torch.zeros(3, dtype=torch.long))

"""Persistent structures (CUTS sec. 3.2.2) on hand-made level series."""

from __future__ import annotations

import pytest
import torch

from monai_ext.transforms.condensation import DiffusionCondensation
from monai_ext.transforms.persistence import (
    PersistentStructures,
    PersistentStructuresd,
    lineage_lifetimes,
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


def random_nested_levels(seed: int, pixels: int = 40, counts: tuple[int, ...] = (14, 9, 6, 3, 2)) -> torch.Tensor:
    """Fine-to-coarse labels in which each level merges random groups of the previous level's labels."""
    generator = torch.Generator().manual_seed(seed)
    level = torch.cat([torch.arange(counts[0]), torch.randint(counts[0], (pixels - counts[0],), generator=generator)])
    levels = [level[torch.randperm(pixels, generator=generator)]]
    for count in counts[1:]:
        previous = int(levels[-1].max()) + 1
        merge = torch.cat([torch.arange(count), torch.randint(count, (previous - count,), generator=generator)])
        levels.append(merge[torch.randperm(previous, generator=generator)][levels[-1]])
    return torch.stack(levels)


def lineage_map_as_the_authors_code(
    levels: torch.Tensor, min_size: float, min_persistence: int, part_ratio: float | None = None
) -> torch.Tensor:
    """An independent reading of the authors' ``associate_frames`` + ``get_persistent_structures``: each label of a
    level takes the name of the previous level's (renamed) label it overlaps best (intersection over union, the
    lowest name on a tie); a name persists for the levels it appears in and is painted where its area is largest,
    largest first, over the coarsest level with two or more clusters. With ``part_ratio``, a name that vanishes is
    not painted when its last area is at least ``part_ratio`` times the area, in the same level, of the name its
    pixels take next."""
    named = [levels[0].clone()]
    for level in levels[1:]:
        previous, current = named[-1], level.clone()
        names = torch.unique(previous)
        for label in torch.unique(level):
            inside = level == label
            iou = [((previous == n) & inside).sum() / ((previous == n) | inside).sum() for n in names]
            current[inside] = names[int(torch.stack(iou).argmax())]
        named.append(current)
    named = torch.stack(named)
    pixels = levels.shape[1]
    found = []
    for name in torch.unique(named):
        areas = (named == name).sum(dim=1)
        persistence, frame = int((areas > 0).sum()), int(areas.argmax())
        if part_ratio is not None and persistence < len(levels):
            last = persistence - 1
            taker = named[last + 1][named[last] == name][0]
            if areas[last] >= part_ratio * (named[last] == taker).sum():
                continue
        if min_size * pixels <= areas[frame] < pixels and persistence >= min_persistence:
            found.append((-int(areas[frame]), -persistence, frame, name))
    coarse = [index for index, level in enumerate(levels) if int(level.max()) >= 1]
    canvas = levels[coarse[-1]].clone() + 1000
    for _, _, frame, name in sorted(found, key=lambda f: (f[0], f[1])):
        canvas[named[frame] == name] = name
    return canvas


def same_partition(a: torch.Tensor, b: torch.Tensor) -> bool:
    pairs = torch.unique(torch.stack([a.flatten(), b.flatten()]), dim=1)
    return len(torch.unique(pairs[0])) == len(torch.unique(pairs[1])) == pairs.shape[1]


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("min_size, min_persistence", [(0.0, 1), (0.05, 2), (0.1, 3)])
def test_lineage_rule_matches_the_authors_code(seed: int, min_size: float, min_persistence: int) -> None:
    levels = random_nested_levels(seed)
    found = persistent_structures(levels, None, min_size, min_persistence, rule="lineage")
    assert same_partition(found, lineage_map_as_the_authors_code(levels, min_size, min_persistence))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("part_ratio", [0.3, 0.6, 1.0])
def test_lineage_parts_match_an_independent_reading(seed: int, part_ratio: float) -> None:
    levels = random_nested_levels(seed)
    found = persistent_structures(levels, None, 0.05, 2, rule="lineage", part_ratio=part_ratio)
    assert same_partition(found, lineage_map_as_the_authors_code(levels, 0.05, 2, part_ratio))


def test_comparable_halves_show_whole_and_a_swallowed_structure_stays() -> None:
    # 24 pixels: halves A, B (6 each) merge at level 1, as V (2) into W (10); everything merges at level 2
    a, b, v, w = [0] * 6, [1] * 6, [2] * 2, [3] * 10
    levels = torch.tensor([a + b + v + w, [0] * 12 + [1] * 12, [0] * 24])
    whole = persistent_structures(levels, None, 0.0, 1, rule="lineage", part_ratio=0.5)
    assert torch.equal(whole, torch.tensor([0] * 12 + [1] * 2 + [2] * 10))
    split = persistent_structures(levels, None, 0.0, 1, rule="lineage")
    assert torch.equal(split, torch.tensor([0] * 6 + [1] * 6 + [2] * 2 + [3] * 10))


def test_lineage_parts_on_the_hand_made_series() -> None:
    def parts(part_ratio: float) -> set[tuple[int, int]]:
        return {(s["level"], s["label"]) for s in lineage_lifetimes(LEVELS, None, part_ratio) if s["part"]}

    # the absorbed lineage's size : its carrier's, the level before each merge (keys as in the test below)
    assert parts(1.0) == {(0, 2), (0, 5), (1, 2)}  # 1 : 1, 1 : 1, 2 : 2
    assert parts(0.5) == {(0, 2), (0, 5), (1, 2), (2, 2)}  # and founder 4's 2 : 4 at level 3
    assert parts(0.3) == {(0, 2), (0, 5), (1, 2), (2, 2), (3, 0)}  # and founder 0's 2 : 6 at level 4
    assert not any(s["part"] for s in lineage_lifetimes(LEVELS))


def test_lineages_on_a_hand_made_series() -> None:
    found = {(s["level"], s["label"]): (s["size"], s["persistence"]) for s in lineage_lifetimes(LEVELS)}
    # worked by hand: each merge is won by the larger part, on a tie by the lower level-0 founder
    assert found == {
        (4, 0): (8, 5),  # founder 1 (pixel 2): wins 1 : 1 against pixel 3, 2 : 2 against 4-5, 4 : 2, 6 : 2
        (3, 0): (2, 4),  # founder 0 (pixels 0-1): absorbed at level 4
        (2, 2): (2, 3),  # founder 4 (pixel 6): wins against pixel 7, absorbed at level 3
        (1, 2): (2, 2),  # founder 3 (pixels 4-5): loses the 2 : 2 tie at level 2
        (0, 2): (1, 1),  # founder 2 (pixel 3)
        (0, 5): (1, 1),  # founder 5 (pixel 7)
    }
    with pytest.raises(ValueError, match="rule must be one of"):
        PersistentStructures(rule="largest")
    for rule, part_ratio in [("paper", 0.5), ("lineage", 0.0), ("lineage", 1.5)]:
        with pytest.raises(ValueError, match="part_ratio"):
            PersistentStructures(rule=rule, part_ratio=part_ratio)
    with pytest.raises(ValueError, match="part_ratio"):
        lineage_lifetimes(LEVELS, None, 2.0)

"""``excess_of_mass`` (HDBSCAN's selection on a condensation tree) against a brute force over every set of segments."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest
import torch

from monai_ext.transforms.persistence import excess_of_mass, segment_lifetimes

LEVELS = torch.tensor(
    [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        [0, 0, 1, 2, 3, 3, 4, 5, 6, 7],
        [0, 0, 1, 1, 2, 2, 3, 4, 5, 5],
        [0, 0, 0, 0, 1, 1, 2, 3, 3, 3],
        [0, 0, 0, 0, 1, 1, 1, 2, 2, 2],
        [0, 0, 0, 0, 0, 0, 0, 1, 1, 1],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    ]
)
STEPS = [0, 1, 3, 4, 9, 12, 20]


def members(segment: dict) -> frozenset:
    return frozenset(torch.nonzero(LEVELS[segment["level"]] == segment["label"]).flatten().tolist())


@pytest.mark.parametrize("size_power", [0.0, 0.5, 1.0])
@pytest.mark.parametrize("min_size", [0.0, 0.25])
def test_the_chosen_segments_have_the_largest_total_stability(size_power: float, min_size: float) -> None:
    segments = [s for s in segment_lifetimes(LEVELS, STEPS) if min_size * 10 <= s["size"] < 10]
    pixel_sets = [members(s) for s in segments]
    stability = [s["size"] ** size_power * s["persistence"] for s in segments]
    best = 0.0
    for count in range(1, len(segments) + 1):
        for chosen in combinations(range(len(segments)), count):
            if all(pixel_sets[a].isdisjoint(pixel_sets[b]) for a, b in combinations(chosen, 2)):
                best = max(best, sum(stability[i] for i in chosen))
    label_map = excess_of_mass(LEVELS.numpy(), STEPS, size_power, min_size)
    found = [frozenset(np.nonzero(label_map == label)[0].tolist()) for label in range(1, int(label_map.max()) + 1)]
    assert all(f in pixel_sets for f in found)  # every chosen part is a segment of the tree
    assert sum(stability[pixel_sets.index(f)] for f in found) == pytest.approx(best)

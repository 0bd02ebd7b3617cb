"""Nesting by construction: the argmax maps of nested probabilities break the hierarchy nowhere."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from monai_ext.transforms import NestLevelsd, assign_parents, hierarchy_tree, level_label_maps, nest_probabilities


def _random_probs(seed: int, num_parts, shape=(7, 6, 5)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    logits = [torch.randn(k, *shape, generator=generator) * 3 for k in num_parts]
    return torch.cat([torch.softmax(x, 0) for x in logits])


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("num_parts", [(2, 4, 8), (3, 3), (2, 5, 6)])
def test_nested_levels_break_the_nesting_nowhere_on_random_inputs(seed, num_parts):
    probs = _random_probs(seed, num_parts)
    nested = nest_probabilities(probs, num_parts)
    maps = level_label_maps(nested, num_parts)
    tree = hierarchy_tree(maps, num_parts)
    assert all(pair["break_share"] == 0 for pair in tree["pairs"])
    assert all(children for pair in tree["pairs"] for children in pair["children"]), "every coarse part has a child"
    torch.testing.assert_close(nested[: num_parts[0]], probs[: num_parts[0]])  # level 1 kept
    for level in torch.split(nested, list(num_parts)):
        torch.testing.assert_close(level.sum(0), torch.ones(level.shape[1:]))


def test_probabilities_that_already_nest_keep_their_label_maps():
    rng = np.random.default_rng(0)
    fine = rng.integers(0, 8, size=(6, 6, 6))
    coarse = fine // 2
    probs = torch.cat([torch.nn.functional.one_hot(torch.as_tensor(m), k).movedim(-1, 0).float()
                       for m, k in ((coarse, 4), (fine, 8))])  # fmt: skip
    maps = level_label_maps(nest_probabilities(probs, (4, 8)), (4, 8))
    assert np.array_equal(np.asarray(maps[1][0]), fine) and np.array_equal(np.asarray(maps[0][0]), coarse)


@pytest.mark.parametrize("seed", range(6))
def test_parents_maximise_overlap_with_a_child_for_every_coarse_part(seed):
    """Brute force: over every parent assignment that gives each coarse part a child, the chosen one has the
    largest total overlap."""
    overlap = np.random.default_rng(seed).random((5, 3))
    parents = assign_parents(overlap)
    assert set(parents) == {0, 1, 2}
    best = max(
        sum(overlap[f, c] for f, c in enumerate(choice))
        for choice in itertools.product(range(3), repeat=5)
        if set(choice) == {0, 1, 2}
    )
    assert sum(overlap[f, c] for f, c in enumerate(parents)) == pytest.approx(best)


def test_nesting_checks_its_levels_and_keeps_metadata():
    with pytest.raises(ValueError, match="do not decrease"):
        NestLevelsd(num_parts=(4, 2))
    with pytest.raises(ValueError, match="cannot give each"):
        assign_parents(np.ones((2, 3)))
    probs = MetaTensor(_random_probs(0, (2, 4)), meta={"filename_or_obj": "a.nii.gz"})
    out = NestLevelsd(num_parts=(2, 4))({"pred": probs})["pred"]
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "a.nii.gz"

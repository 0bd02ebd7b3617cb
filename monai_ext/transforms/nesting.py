"""Hierarchies nested by construction: every part of a finer level inside one part of the coarser level."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from itertools import pairwise

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from scipy.optimize import linear_sum_assignment

from monai_ext.transforms.hierarchy import parse_num_parts, split_levels


def nestable_parts(num_parts: Sequence[int]) -> list[int]:
    """``num_parts`` as a list, checked to allow nesting: K >= 2 on every level and never fewer parts than the
    level above (each coarse part needs a child)."""
    parts = parse_num_parts(num_parts)
    if any(fine < coarse for coarse, fine in pairwise(parts)):
        raise ValueError(f"nesting needs num_parts that do not decrease from level to level, got {parts}.")
    return parts


def assign_parents(overlap: np.ndarray) -> np.ndarray:
    """The coarse part (parent) of each fine part, so that every coarse part has at least one child.

    Maximises the total overlap of the fine parts with their parents under that constraint. In an optimal
    assignment, fine parts that are not the one child a coarse part needs go to the coarse part they overlap most,
    so the total is sum_f max_c overlap[f, c] minus what the needed children lose against their own best; that
    loss is minimised by a Hungarian assignment of one distinct child to each coarse part.

    Args:
        overlap: (K_fine, K_coarse) overlap of each fine part with each coarse part (e.g. the fine part's
            probability mass inside the coarse part), with K_fine >= K_coarse.

    Returns:
        the parent index of each fine part, shape (K_fine,).
    """
    overlap = np.asarray(overlap, dtype=np.float64)
    k_fine, k_coarse = overlap.shape
    if k_fine < k_coarse:
        raise ValueError(f"{k_fine} fine parts cannot give each of {k_coarse} coarse parts a child.")
    parents = overlap.argmax(axis=1)
    children, coarse = linear_sum_assignment(overlap.max(axis=1, keepdims=True) - overlap)
    parents[children] = coarse
    return parents


def nest_probabilities(probs: torch.Tensor, num_parts: Sequence[int]) -> torch.Tensor:
    """Per-level probabilities whose argmax maps nest exactly (not in Tursynbek & Niethammer, MICCAI 2023).

    Level 1 is kept. For each finer level, top-down: the coarse label map is the argmax of the (already nested)
    coarser level; each fine part gets a parent (:func:`assign_parents` on the fine probabilities' mass inside
    each coarse part); a voxel's fine probabilities are restricted to the children of its coarse label and
    renormalised. So the argmax of every level lies inside one part of the level above: ``hierarchy.json``'s
    ``break_share`` is 0.

    Args:
        probs: concatenated per-level probabilities (sum(num_parts), *spatial), each level summing to 1.
        num_parts: K of each level, coarse to fine, not decreasing.

    Returns:
        the nested probabilities, same shape and dtype.
    """
    parts = nestable_parts(num_parts)
    levels = split_levels(torch.as_tensor(probs), parts)
    nested = [levels[0]]
    for fine in levels[1:]:
        coarse_map = nested[-1].argmax(0)
        k_coarse = nested[-1].shape[0]
        inside = torch.stack([coarse_map == c for c in range(k_coarse)]).to(fine.dtype)  # Kc, *spatial
        overlap = torch.einsum("f...,c...->fc", fine.double(), inside.double())
        parents = torch.as_tensor(assign_parents(overlap.cpu().numpy()), device=fine.device)
        allowed = parents.view(-1, *([1] * coarse_map.ndim)) == coarse_map[None]  # Kf, *spatial
        restricted = torch.where(allowed, fine, torch.zeros_like(fine))
        total = restricted.sum(0, keepdim=True)
        # a voxel whose allowed children all have probability 0: spread it evenly over them
        even = allowed.to(fine.dtype) / allowed.sum(0, keepdim=True).to(fine.dtype)
        nested.append(torch.where(total > 0, restricted / total.clamp_min(torch.finfo(fine.dtype).tiny), even))
    return torch.cat(nested, dim=0)


class NestLevelsd(MapTransform):
    """Dictionary transform of :func:`nest_probabilities`: per-level probabilities (after ``Invertd``) whose label
    maps nest exactly, before ``SplitLevelsd`` and the metrics read them.

    Args:
        keys: keys of the concatenated per-level probabilities, default ``"pred"``.
        num_parts: K of each level, coarse to fine, not decreasing.
        allow_missing_keys: skip keys absent from the data.
    """

    def __init__(
        self, keys: KeysCollection = "pred", num_parts: Sequence[int] = (2, 4, 8), allow_missing_keys: bool = False
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_parts = nestable_parts(num_parts)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            nested = nest_probabilities(d[key], self.num_parts)
            d[key] = d[key].clone().copy_(nested) if isinstance(d[key], torch.Tensor) else nested
        return d

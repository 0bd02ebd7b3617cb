"""Over-clustering, then merging: the parts of a label map merged, closest means first, down to fewer parts.

A small, distinct structure (a tumour of 1 % of a brain) is rarely one of K = 3 clusters: with few parts a
clustering spends them on the large, varied tissues first. With more parts it gets a part of its own, and merging
parts whose mean values are closest (centroid linkage, as in agglomerative clustering) joins the similar tissues
before it joins a part that differs from all of them. Ward's linkage would not: it weighs a merge by the parts'
sizes, so a small part is merged first. This is the "over-clustering then merging" lever of issue 31; Tursynbek &
Niethammer (MICCAI 2023) train every level directly.
"""

from __future__ import annotations

import torch
from monai.utils import convert_to_tensor

from monai_ext.transforms.validation import check_integer_labels

__all__ = ["agglomerate_means", "merge_by_means"]


def merge_by_means(labels: torch.Tensor, values: torch.Tensor, num_parts: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Merge the parts of ``labels`` two at a time, the two whose means of ``values`` are closest first.

    The mean of a merged part is that of all its voxels. Merging stops at ``num_parts`` parts (a map with fewer
    parts is returned renumbered). Ties go to the lexicographically lowest pair of labels; a merged part keeps the
    lower label.

    Args:
        labels: (*spatial) integer part labels >= 0.
        values: (C, *spatial) what the parts are compared by, e.g. the image or the diffusion model's x0
            prediction; every value finite.
        num_parts: the parts left, >= 1.

    Returns:
        the merged (*spatial) int64 labels, numbered 0 .. num_parts - 1 in the order of their lowest input label,
        and the int64 map from each input label 0 .. max(labels) to its merged label (-1 for a label no voxel has).

    Raises:
        ValueError: ``num_parts`` < 1, ``labels`` is empty or not integers >= 0, ``values`` is not (C, *spatial)
            with the spatial shape of ``labels`` or is not finite.
    """
    _check_num_parts(num_parts)
    labels = convert_to_tensor(labels, track_meta=False)
    values = convert_to_tensor(values, track_meta=False)
    if labels.numel() == 0:
        raise ValueError(f"labels must be a non-empty (*spatial) map, got shape {tuple(labels.shape)}.")
    check_integer_labels(labels)
    if values.ndim != labels.ndim + 1 or values.shape[1:] != labels.shape:
        raise ValueError(
            f"values must be (C, *spatial) with the labels' spatial shape {tuple(labels.shape)}, "
            f"got {tuple(values.shape)}."
        )
    if not torch.isfinite(values).all():
        raise ValueError("values must be finite: they hold NaN or infinite values.")
    labels = labels.long().cpu().reshape(-1)
    points = values.double().cpu().reshape(values.shape[0], -1).T
    count = int(labels.max()) + 1
    sizes = torch.bincount(labels, minlength=count).double()
    sums = torch.zeros(count, points.shape[1], dtype=torch.float64).index_add_(0, labels, points)
    mapping = agglomerate_means(sums, sizes, num_parts)
    return mapping[labels].reshape(values.shape[1:]), mapping


def agglomerate_means(sums: torch.Tensor, sizes: torch.Tensor, num_parts: int) -> torch.Tensor:
    """Centroid linkage of parts given by the sums and the sizes of their members, the rule of :func:`merge_by_means`.

    Args:
        sums: (K, C) the sum of the values over each part (soft parts: weighted by its probabilities).
        sizes: (K,) the voxels of each part (soft parts: the sum of its probabilities); a part of size 0 is left out.
        num_parts: the parts left, >= 1.

    Raises:
        ValueError: ``num_parts`` < 1, or the shapes do not agree.

    Returns:
        the int64 map (K,) from each part to its merged part 0 .. num_parts - 1, numbered in the order of their
        lowest part, and -1 for a part of size 0.
    """
    _check_num_parts(num_parts)
    if sums.ndim != 2 or sizes.shape != sums.shape[:1]:
        raise ValueError(f"sums must be (K, C) and sizes (K,), got {tuple(sums.shape)} and {tuple(sizes.shape)}.")
    sums, sizes = sums.detach().double().cpu().clone(), sizes.detach().double().cpu().clone()
    count = len(sizes)
    alive = (sizes > 0).nonzero().flatten().tolist()
    target = torch.where(sizes > 0, torch.arange(count), -1)
    while len(alive) > num_parts:
        means = sums[alive] / sizes[alive, None]
        distances = torch.cdist(means, means).pow(2)
        distances.fill_diagonal_(float("inf"))
        first, second = divmod(int(distances.argmin()), len(alive))  # row-major: the lowest pair wins ties
        keep, drop = alive[min(first, second)], alive[max(first, second)]
        sums[keep] += sums[drop]
        sizes[keep] += sizes[drop]
        target[target == drop] = keep
        alive.remove(drop)
    renumber = torch.full((count,), -1, dtype=torch.long)
    renumber[alive] = torch.arange(len(alive))
    return torch.where(target >= 0, renumber[target.clamp(min=0)], -1)


def _check_num_parts(num_parts: int) -> None:
    if isinstance(num_parts, bool) or not isinstance(num_parts, int) or num_parts < 1:
        raise ValueError(f"num_parts must be an int >= 1, got {num_parts!r}.")

"""Label-map parts merged with a neighbour they are pieces of, by the geometry of the map alone: a part whose
boundary lies mostly along one neighbour and that is not much smaller than it joins it. A heterogeneous structure
(a tumour's necrosis, enhancing rim and edema) comes out of a clustering as comparable pieces that share long
boundaries, while a small structure inside larger tissue (a ventricle in white matter) is an island in a much
larger part. This is a region-adjacency-graph merge (as in superpixel merging), added by monai-ext to the CUTS
reading (Liu, Amodio et al.); the paper has no such step."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_tensor

from monai_ext.transforms.persistence import relabel_by_first_appearance
from monai_ext.transforms.validation import check_integer_labels

__all__ = ["MergeAdjacentParts", "MergeAdjacentPartsd", "merge_adjacent_parts", "part_contacts"]


def part_contacts(labels: torch.Tensor) -> torch.Tensor:
    """Contacts between the parts of a label map.

    Args:
        labels: (*spatial) integer labels 0 .. k - 1.

    Returns:
        (k + 1, k + 1) symmetric int64 counts: entry [a, b] is the number of face-neighbouring pixel pairs (2 D
        per pixel) of which one is in part a and the other in part b; index k stands for the outside of the image,
        so row a sums to the length of part a's boundary. The diagonal is 0.

    Raises:
        ValueError: ``labels`` is empty, or not integers >= 0.
    """
    labels = _checked_labels(labels)
    k = int(labels.max()) + 1
    padded = torch.nn.functional.pad(labels, (1, 1) * labels.ndim, value=k)
    counts = torch.zeros((k + 1) * (k + 1), dtype=torch.long)
    for axis in range(labels.ndim):
        first, second = padded.narrow(axis, 0, padded.shape[axis] - 1), padded.narrow(axis, 1, padded.shape[axis] - 1)
        differ = first != second
        counts += torch.bincount(first[differ] * (k + 1) + second[differ], minlength=(k + 1) ** 2)
    counts = counts.reshape(k + 1, k + 1)
    return counts + counts.T


def merge_adjacent_parts(labels: torch.Tensor, boundary_share: float = 0.6, size_ratio: float = 0.75) -> torch.Tensor:
    """Parts merged into the neighbour that holds most of their boundary, when they are not much smaller than it.

    Repeatedly, the smallest part a (ties: the earlier in raster order) whose neighbour b sharing the most of its
    boundary (ties: the earlier) holds at least ``boundary_share`` of it (the image's edge counts as boundary but
    is never a neighbour to merge with), and which has at least ``size_ratio`` times b's pixels, joins b; the
    merged part's contacts and size are the sums of the two, and it ranks where the earlier of the two did. It
    stops when no part qualifies. So comparable pieces of one structure along a long shared
    boundary join, a small island inside a much larger part stays, and a part whose boundary is spread over several
    neighbours stays.

    Args:
        labels: (*spatial) integer labels >= 0.
        boundary_share: the least share of a part's boundary along the neighbour it joins, in (0, 1].
        size_ratio: the least size of a part, as a share of the neighbour it joins, in [0, 1] (0: any size).

    Returns:
        (*spatial) int64 labels renumbered 0 .. k - 1 by first appearance in raster order.

    Raises:
        ValueError: an option is out of range, or ``labels`` is empty or not integers >= 0.
    """
    _check_merge_options(boundary_share, size_ratio)
    labels = relabel_by_first_appearance(_checked_labels(labels))
    contacts = part_contacts(labels)
    k = len(contacts) - 1
    sizes = torch.bincount(labels.reshape(-1), minlength=k)
    target = torch.arange(k)
    while (merge := _next_merge(contacts, sizes, boundary_share, size_ratio)) is not None:
        keep, drop = min(merge), max(merge)  # labels are in raster order: the merged part keeps the earlier's rank
        contacts[keep] += contacts[drop]
        contacts[:, keep] += contacts[:, drop]
        contacts[keep, keep] = 0
        contacts[drop], contacts[:, drop] = 0, 0
        sizes[keep] += sizes[drop]
        sizes[drop] = 0
        target[target == drop] = keep
    return relabel_by_first_appearance(target[labels])


def _next_merge(
    contacts: torch.Tensor, sizes: torch.Tensor, boundary_share: float, size_ratio: float
) -> tuple[int, int] | None:
    """The (part, neighbour) pair that merges next, or None."""
    for part in torch.argsort(sizes, stable=True).tolist():
        boundary = int(contacts[part].sum())
        if sizes[part] == 0 or boundary == 0:
            continue
        neighbour = int(contacts[part, :-1].argmax())
        along = int(contacts[part, neighbour]) >= boundary_share * boundary
        comparable = int(sizes[part]) >= size_ratio * int(sizes[neighbour])  # integers: exact at any size
        if along and comparable:
            return part, neighbour
    return None


def _check_merge_options(boundary_share: float, size_ratio: float) -> None:
    if not 0 < boundary_share <= 1 or not 0 <= size_ratio <= 1:
        raise ValueError(
            f"boundary_share must be in (0, 1] and size_ratio in [0, 1], got {boundary_share} and {size_ratio}."
        )


def _checked_labels(labels: torch.Tensor) -> torch.Tensor:
    labels = convert_to_tensor(labels, track_meta=False)
    if labels.ndim == 0 or labels.numel() == 0:
        raise ValueError(f"labels must be a non-empty (*spatial) map, got shape {tuple(labels.shape)}.")
    check_integer_labels(labels)
    return labels.long().cpu()


class MergeAdjacentParts(Transform):
    """Array form of :func:`merge_adjacent_parts`: a (1, *spatial) label map -> the merged (1, *spatial) label map
    (the metadata kept).

    Args:
        boundary_share: the least share of a part's boundary along the neighbour it joins, in (0, 1].
        size_ratio: the least size of a part, as a share of the neighbour it joins, in [0, 1].
    """

    def __init__(self, boundary_share: float = 0.6, size_ratio: float = 0.75) -> None:
        _check_merge_options(boundary_share, size_ratio)
        self.boundary_share = boundary_share
        self.size_ratio = size_ratio

    def __call__(self, labels: torch.Tensor) -> torch.Tensor:
        labels = torch.as_tensor(labels)
        if labels.ndim < 2 or len(labels) != 1:
            raise ValueError(f"labels must be (1, *spatial), got shape {tuple(labels.shape)}.")
        merged = merge_adjacent_parts(labels[0], self.boundary_share, self.size_ratio)
        meta = dict(getattr(labels, "meta", {}))
        return MetaTensor(merged[None].to(device=labels.device, dtype=labels.dtype), meta=meta)


class MergeAdjacentPartsd(MapTransform):
    """Dictionary form of :class:`MergeAdjacentParts`.

    Args:
        keys: keys of (1, *spatial) label maps.
        boundary_share: the least share of a part's boundary along the neighbour it joins, in (0, 1].
        size_ratio: the least size of a part, as a share of the neighbour it joins, in [0, 1].
        allow_missing_keys: skip an absent key.
    """

    def __init__(
        self,
        keys: KeysCollection,
        boundary_share: float = 0.6,
        size_ratio: float = 0.75,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.merging = MergeAdjacentParts(boundary_share, size_ratio)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                d[key] = self.merging(d[key])
            except ValueError as error:
                raise ValueError(f"MergeAdjacentPartsd, key {key!r}: {error}") from error
        return d

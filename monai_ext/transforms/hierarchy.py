"""Helpers for hierarchical part maps: per-level splitting, label maps and the discovered hierarchy tree.

The structure-discovery method of Tursynbek & Niethammer, "Unsupervised Discovery of 3D Hierarchical Structure
with Generative Diffusion Features" (MICCAI 2023, sec. 3), trains one segmentation network per hierarchy level
``l`` with ``K_l`` parts (``num_parts = [K_1, K_2, ...]``, coarse to fine). ``HierarchicalSegmenter`` concatenates
the per-level softmax probabilities along channels: level ``l`` (0-based index) occupies channels
``sum(num_parts[:l]) .. sum(num_parts[:l + 1])``. Ground-truth labels, when a dataset has them, are one tensor
with one channel per level (channel ``l`` is the integer label map of level ``l``).

Level numbers are 1-based in everything written for users (output keys ``pred_l1``, ``pred_l2``, ... and
``hierarchy.json``) and 0-based where Python indexes a list (the ``level`` argument of
:func:`level_output_transform`).

The paper does not force the parts of consecutive levels to nest; :func:`hierarchy_tree` measures how far they do.
For each fine part, its parent is the coarse part that contains most of its voxels, and the share of voxels that
break the nesting is the share whose coarse label differs from the parent of their fine label.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from itertools import pairwise
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import decollate_batch
from monai.handlers import from_engine
from monai.transforms import MapTransform
from monai.utils import convert_to_tensor

__all__ = [
    "HierarchyAccumulator",
    "SplitLevelsd",
    "contingency_tables",
    "hierarchy_tree",
    "level_label_maps",
    "level_output_transform",
    "level_slices",
    "parse_num_parts",
    "split_levels",
    "tree_from_tables",
]

ArrayLike = np.ndarray | torch.Tensor


def parse_num_parts(num_parts: Sequence[int], min_levels: int = 1) -> list[int]:
    """Return ``num_parts`` as a list of ints, or raise ValueError unless it lists ``min_levels`` or more K >= 2."""
    parts = list(num_parts)
    if (
        len(parts) < min_levels
        or any(isinstance(k, bool) or not isinstance(k, int | np.integer) for k in parts)
        or any(k < 2 for k in parts)
    ):
        raise ValueError(
            f"num_parts must list an integer K >= 2 for each of at least {min_levels} level(s), got {num_parts!r}."
        )
    return [int(k) for k in parts]


def level_slices(num_parts: Sequence[int]) -> list[slice]:
    """The channel range of each level in the concatenated per-level probabilities.

    Args:
        num_parts: number of parts ``K_l`` of each level, coarse to fine; non-empty, each ``K_l >= 2``.

    Returns:
        one ``slice(sum(num_parts[:l]), sum(num_parts[:l + 1]))`` per level.

    Raises:
        ValueError: ``num_parts`` is empty or holds a value that is not an integer >= 2.
    """
    parts = parse_num_parts(num_parts)
    ends = np.cumsum(parts).tolist()
    return [slice(end - k, end) for k, end in zip(parts, ends, strict=True)]


def split_levels(probs: ArrayLike, num_parts: Sequence[int]) -> list[ArrayLike]:
    """Split the concatenated per-level probabilities of one item into one array per level.

    Args:
        probs: channel-first probabilities of a single item, ``(sum(num_parts), *spatial)``, without batch
            dimension (MONAI engines decollate batches into such items). A MetaTensor keeps its metadata.
        num_parts: number of parts ``K_l`` of each level, coarse to fine.

    Returns:
        one ``(K_l, *spatial)`` view of ``probs`` per level, of ``probs``'s type.

    Raises:
        ValueError: ``num_parts`` is invalid, or ``probs`` has no spatial dimension or not ``sum(num_parts)``
            channels.
    """
    slices = level_slices(num_parts)
    if probs.ndim < 2 or probs.shape[0] != slices[-1].stop:
        raise ValueError(
            f"probs must be channel-first (sum(num_parts), *spatial) = ({slices[-1].stop}, ...) for "
            f"num_parts={list(num_parts)}, got shape {tuple(probs.shape)}."
        )
    return [probs[s] for s in slices]


def level_label_maps(
    probs: ArrayLike, num_parts: Sequence[int], dtype: torch.dtype = torch.uint8
) -> list[torch.Tensor]:
    """Per-level integer label maps of one item: the argmax over each level's channels.

    Args:
        probs: channel-first probabilities of a single item, ``(sum(num_parts), *spatial)``.
        num_parts: number of parts ``K_l`` of each level, coarse to fine.
        dtype: integer dtype of the maps; it must hold ``max(num_parts) - 1`` (uint8 holds up to 256 parts).

    Returns:
        one ``(1, *spatial)`` tensor of part indices ``0 .. K_l - 1`` per level; a MetaTensor input gives
        MetaTensors with its metadata (affine, filename), so ``SaveImaged`` can write them.

    Raises:
        ValueError: invalid ``num_parts`` or shape (see :func:`split_levels`), or ``dtype`` is not an integer
            type that holds ``max(num_parts) - 1``.
    """
    parts = parse_num_parts(num_parts)
    _check_label_dtype(dtype, max(parts))
    return [p.argmax(dim=0, keepdim=True).to(dtype) for p in split_levels(torch.as_tensor(probs), parts)]


def _check_label_dtype(dtype: torch.dtype, max_parts: int) -> None:
    if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool or torch.iinfo(dtype).max < max_parts - 1:
        raise ValueError(
            f"dtype must be an integer type that holds part index {max_parts - 1} (e.g. torch.uint8 for up to "
            f"256 parts, torch.int64), got {dtype}."
        )


def level_output_transform(
    num_parts: Sequence[int], level: int, label: bool = True
) -> Callable[[Any], tuple[list[ArrayLike], list[ArrayLike] | None]]:
    """An ``output_transform`` that scores one hierarchy level with a MONAI / Ignite metric handler.

    The engine output is a decollated list of dicts, one per item, as MONAI engines produce (a batched dict is
    decollated first), holding
    ``"pred"`` (concatenated probabilities ``(sum(num_parts), *spatial)``) and, when ``label`` is True,
    ``"label"`` (one channel per level). Example::

        MeanDice(output_transform=level_output_transform([2, 4, 8], level=1))  # the 4-part level

    Args:
        num_parts: number of parts ``K_l`` of each level, coarse to fine.
        level: 0-based index of the level into ``num_parts``.
        label: also return the level's label channel; when False the label is ``None`` (for metrics that
            need no ground truth).

    Returns:
        a callable mapping the engine output to ``([level probabilities (K_l, *spatial) per item],
        [label channel (1, *spatial) per item] or None)``.

    Raises:
        ValueError: ``num_parts`` is invalid or ``level`` is not in ``0 .. len(num_parts) - 1``; the returned
            callable raises ValueError on an item whose ``"pred"`` has the wrong number of channels or whose
            ``"label"`` has no channel ``level``.
    """
    parts = parse_num_parts(num_parts)
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level < len(parts):
        raise ValueError(f"level must be a 0-based level index in 0 .. {len(parts) - 1}, got {level!r}.")

    def _transform(output: Any) -> tuple[list[ArrayLike], list[ArrayLike] | None]:
        items = output_items(output)
        if not label:
            return [split_levels(p, parts)[level] for p in from_engine(["pred"])(items)], None
        preds, labels = from_engine(["pred", "label"])(items)
        for y in labels:
            if y.ndim < 2 or 1 < y.shape[0] <= level:
                raise ValueError(
                    f"label must be channel-first with one channel per level, or one channel for every level; level "
                    f"{level} needs at least {level + 1} channels, got shape {tuple(y.shape)}."
                )
        channels = [level if y.shape[0] > 1 else 0 for y in labels]
        level_labels = [y[c : c + 1] for y, c in zip(labels, channels, strict=True)]
        return [split_levels(p, parts)[level] for p in preds], level_labels

    return _transform


class SplitLevelsd(MapTransform):
    """Write the per-level label maps of concatenated per-level probabilities to one key per level.

    For each key, the ``(sum(num_parts), *spatial)`` probabilities are split by level and argmaxed over each
    level's channels (:func:`level_label_maps`); level ``l`` (1-based) goes to ``f"{key}{postfix}"`` with
    ``postfix.format(level=l)``, e.g. ``pred_l1``, ``pred_l2``, ``pred_l3``. The maps are ``(1, *spatial)``
    tensors of ``dtype`` (default uint8) holding part indices ``0 .. K_l - 1``; MetaTensor metadata is kept, so
    ``SaveImaged(keys=["pred_l1", ...], output_dtype=np.uint8)`` can write them. The input key is left as is.

    Args:
        keys: keys of the concatenated probabilities (after any ``Invertd``), default ``"pred"``.
        num_parts: number of parts ``K_l`` of each level, coarse to fine; each >= 2.
        postfix: pattern of the output key postfix; must contain ``{level}``.
        dtype: integer dtype of the maps; must hold ``max(num_parts) - 1``.
        allow_missing_keys: skip keys absent from the data.
    """

    def __init__(
        self,
        keys: KeysCollection = "pred",
        num_parts: Sequence[int] = (2, 4, 8),
        postfix: str = "_l{level}",
        dtype: torch.dtype = torch.uint8,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.num_parts = parse_num_parts(num_parts)
        if "{level}" not in postfix:
            raise ValueError(f"postfix must contain '{{level}}' so that each level gets its own key, got {postfix!r}.")
        _check_label_dtype(dtype, max(self.num_parts))
        self.postfix = postfix
        self.dtype = dtype

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            for level, label_map in enumerate(level_label_maps(d[key], self.num_parts, self.dtype), start=1):
                d[f"{key}{self.postfix.format(level=level)}"] = label_map
        return d


def _label_tensor(x: ArrayLike, num_parts: int, name: str) -> torch.Tensor:
    """``x`` as a flat int64 tensor of part indices below ``num_parts``, or raise ValueError."""
    t = convert_to_tensor(x, track_meta=False)
    if t.is_floating_point():
        if not torch.isfinite(t).all() or not torch.equal(t, t.round()):
            raise ValueError(f"{name} holds non-integer values; integer part indices are required (argmax first).")
    elif t.is_complex():
        raise ValueError(f"{name} has dtype {t.dtype}; integer part indices are required.")
    t = t.reshape(-1).long()
    if t.min() < 0 or t.max() >= num_parts:
        raise ValueError(
            f"{name} holds part indices {int(t.min())} .. {int(t.max())}; they must lie in 0 .. {num_parts - 1}."
        )
    return t


def contingency_tables(level_maps: Sequence[ArrayLike], num_parts: Sequence[int]) -> list[np.ndarray]:
    """Voxel counts of every (fine part, coarse part) pair, for each pair of consecutive levels of one volume.

    Args:
        level_maps: one integer label map per level (coarse to fine), all of the same shape (any shape: a
            leading channel of size 1 is fine), with part indices ``0 .. K_l - 1``.
        num_parts: number of parts ``K_l`` of each level; at least two levels.

    Returns:
        for levels ``(l, l + 1)``, an int64 array ``C`` of shape ``(K_{l+1}, K_l)``: ``C[f, c]`` is the number
        of voxels in fine part ``f`` and coarse part ``c``.

    Raises:
        ValueError: fewer than two levels, a map per level missing, shapes differ, a map is empty or holds values
            that are not part indices of its level.
    """
    parts = parse_num_parts(num_parts, min_levels=2)
    if len(level_maps) != len(parts):
        raise ValueError(f"one label map per level is required: {len(parts)} levels, got {len(level_maps)} maps.")
    shapes = [tuple(m.shape) for m in level_maps]
    if len(set(shapes)) > 1 or int(np.prod(shapes[0])) == 0:
        raise ValueError(f"level maps must be non-empty and of one shape, got shapes {shapes}.")
    maps = [
        _label_tensor(m, k, f"level {level + 1} map")
        for level, (m, k) in enumerate(zip(level_maps, parts, strict=True))
    ]
    return [
        torch.bincount(fine * kc + coarse, minlength=kf * kc).reshape(kf, kc).cpu().numpy()
        for (coarse, fine), (kc, kf) in zip(pairwise(maps), pairwise(parts), strict=True)
    ]


def tree_from_tables(tables: Sequence[np.ndarray], num_parts: Sequence[int]) -> dict[str, Any]:
    """The hierarchy tree from the contingency tables of :func:`contingency_tables` (see :func:`hierarchy_tree`).

    Raises:
        ValueError: the tables do not match ``num_parts`` or count no voxel.
    """
    parts = parse_num_parts(num_parts, min_levels=2)
    expected = [(kf, kc) for kc, kf in pairwise(parts)]
    if [np.shape(t) for t in tables] != expected:
        raise ValueError(f"tables of shapes {expected} are required, got {[np.shape(t) for t in tables]}.")
    voxels = int(np.sum(tables[0]))
    if voxels == 0:
        raise ValueError("the contingency tables count no voxel: add at least one volume.")
    pairs = []
    for coarse_level, table in enumerate(tables, start=1):
        table = np.asarray(table, dtype=np.int64)
        fine_parts, broken = [], 0
        for f, row in enumerate(table):
            size = int(row.sum())
            if size == 0:
                fine_parts.append({"part": f, "parent": None, "voxels": 0, "outside_share": None})
                continue
            parent = int(row.argmax())
            outside = size - int(row[parent])
            broken += outside
            fine_parts.append({"part": f, "parent": parent, "voxels": size, "outside_share": outside / size})
        pairs.append(
            {
                "coarse_level": coarse_level,
                "fine_level": coarse_level + 1,
                "contingency": table.tolist(),
                "parts": fine_parts,
                "children": [[p["part"] for p in fine_parts if p["parent"] == c] for c in range(table.shape[1])],
                "break_share": broken / voxels,
            }
        )
    return {"num_parts": parts, "voxels": voxels, "pairs": pairs}


def hierarchy_tree(level_maps: Sequence[ArrayLike], num_parts: Sequence[int]) -> dict[str, Any]:
    """The tree the discovered parts form across levels, and how far they nest, for one volume.

    Parts of consecutive levels are linked through their contingency table ``C[f, c]`` (voxels in fine part
    ``f`` and coarse part ``c``): the parent of fine part ``f`` is ``argmax_c C[f, c]``, the coarse part that
    contains most of it (ties go to the lowest index). The share of voxels that break the nesting is
    ``sum_f (|f| - C[f, parent(f)]) / N``: the voxels whose coarse label differs from the parent of their
    fine label, over all ``N`` voxels; it is 0 when every fine part lies inside one coarse part.

    The result is plain JSON (ints, floats, lists, dicts, ``None``); it is the format of the trees in
    ``hierarchy.json`` (see :class:`monai_ext.engines.HierarchyWriter`)::

        {
          "num_parts": [2, 4, 8],        # K of each level, coarse to fine
          "voxels": 13824,               # N, voxels counted (per level)
          "pairs": [                     # one entry per pair of consecutive levels
            {
              "coarse_level": 1, "fine_level": 2,       # 1-based, as in the output keys pred_l1, pred_l2
              "contingency": [[c0, c1], ...],           # C[f][c]: voxels in fine part f and coarse part c
              "parts": [                                # one entry per fine part f
                {"part": 0, "parent": 1, "voxels": 5000, "outside_share": 0.02},
                ...                                     # a part with no voxel: parent and outside_share null
              ],
              "children": [[1, 3], [0, 2]],             # fine parts whose parent is coarse part c
              "break_share": 0.013                      # share of the N voxels that break the nesting
            },
            ...
          ]
        }

    ``outside_share`` of a fine part is the share of its voxels outside its parent.

    Args:
        level_maps: one integer label map per level (coarse to fine), all of the same shape, with part indices
            ``0 .. K_l - 1`` (e.g. the outputs of :func:`level_label_maps`).
        num_parts: number of parts ``K_l`` of each level; at least two levels.

    Raises:
        ValueError: see :func:`contingency_tables`.
    """
    return tree_from_tables(contingency_tables(level_maps, num_parts), num_parts)


class HierarchyAccumulator:
    """Sum the contingency tables of many volumes and build the dataset-level hierarchy tree from the sums.

    The dataset tree weighs every voxel equally (a large volume counts more than a small one); it equals the tree
    of all volumes' voxels taken together.

    Args:
        num_parts: number of parts ``K_l`` of each level, coarse to fine; at least two levels, each >= 2.

    Example::

        acc = HierarchyAccumulator([2, 4, 8])
        for maps in volumes:  # maps: one label map per level
            acc.add(maps)
        tree = acc.tree()  # format of hierarchy_tree
    """

    def __init__(self, num_parts: Sequence[int]) -> None:
        self.num_parts = parse_num_parts(num_parts, min_levels=2)
        self.reset()

    def reset(self) -> None:
        """Forget every volume added."""
        self.tables = [np.zeros((kf, kc), dtype=np.int64) for kc, kf in pairwise(self.num_parts)]

    def add(self, level_maps: Sequence[ArrayLike]) -> list[np.ndarray]:
        """Add one volume (one label map per level, see :func:`contingency_tables`); returns its own tables."""
        tables = contingency_tables(level_maps, self.num_parts)
        for total, table in zip(self.tables, tables, strict=True):
            total += table
        return tables

    def tree(self) -> dict[str, Any]:
        """The tree of the summed tables, in the format of :func:`hierarchy_tree`.

        Raises:
            ValueError: no volume was added.
        """
        return tree_from_tables(self.tables, self.num_parts)


def output_items(output: Any) -> list[Mapping[Hashable, Any]]:
    """The per-item dicts of an engine output: a decollated list as is, a batched dict decollated."""
    return decollate_batch(output) if isinstance(output, Mapping) else list(output)

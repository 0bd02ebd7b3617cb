"""Persistent structures: one label map from the fine-to-coarse levels of a diffusion condensation (CUTS, Liu,
Amodio et al., sec. 3.2.2), by the paper's rule or by its authors' public code's."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from itertools import pairwise

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

__all__ = [
    "PERSISTENCE_RULES",
    "PersistentStructures",
    "PersistentStructuresd",
    "excess_of_mass",
    "lineage_lifetimes",
    "persistent_structures",
    "relabel_by_first_appearance",
    "segment_lifetimes",
]

PERSISTENCE_RULES = ("paper", "lineage")


def _clock(levels: torch.Tensor, steps: Sequence[int] | None) -> list[int]:
    """The condensation step of every level (its index without ``steps``), after checking both."""
    if levels.ndim != 2 or len(levels) < 1:
        raise ValueError(f"levels must be (L, N) with L >= 1, got shape {tuple(levels.shape)}.")
    if steps is not None and (len(steps) != len(levels) or any(b <= a for a, b in pairwise(steps))):
        raise ValueError(f"steps must be {len(levels)} increasing integers, one per level, got {list(steps)}.")
    return list(steps) if steps is not None else list(range(len(levels)))


def segment_lifetimes(levels: torch.Tensor, steps: Sequence[int] | None = None) -> list[dict]:
    """Every segment of a fine-to-coarse level series with how long it stays intact.

    A segment is a set of pixels with one label in a level. Condensation only merges, so the pixels of a segment
    share one label in the next level; the segment stays intact while that label covers exactly its pixels. Its
    persistence is the number of consecutive levels in which it is intact or, with ``steps`` (the condensation
    step of each level), the number of condensation steps from the level where it appears to the one where it is
    merged (the paper's "consecutive diffusion iterations"; a segment alive at the last level counts to it,
    inclusive).

    Args:
        levels: (L, N) labels, fine to coarse, each level's labels 0 .. c_l - 1.
        steps: increasing condensation steps of the L levels, or None.

    Returns:
        one dict per segment: ``level`` (where it appears), ``label`` (its label there), ``size`` (pixels),
        ``persistence`` and ``parent``, the index of the segment it is merged into (None for a segment alive at the
        last level): the segments and their parents form the condensation tree.
    """
    clock = _clock(levels, steps)
    sizes = [torch.bincount(level) for level in levels]
    segments, alive = [], {}  # alive: label at the current level -> index in segments of the segment it carries
    for index, level in enumerate(levels):
        if index == 0:
            alive = {label: label for label in range(len(sizes[0]))}
            segments = [{"level": 0, "label": label, "size": int(sizes[0][label])} for label in alive]
            continue
        parent = torch.zeros(len(sizes[index - 1]), dtype=torch.long)
        parent[levels[index - 1]] = level  # each previous label's label now (all its pixels share it)
        carried, merged = {}, []
        for label, segment in alive.items():
            new = int(parent[label])
            if int(sizes[index][new]) == segments[segment]["size"]:
                carried[new] = segment
            else:
                segments[segment]["end"] = clock[index]
                merged.append((segment, new))
        for label in range(len(sizes[index])):
            if label not in carried:
                carried[label] = len(segments)
                segments.append({"level": index, "label": label, "size": int(sizes[index][label])})
        for segment, new in merged:
            segments[segment]["parent"] = carried[new]
        alive = carried
    for segment in segments:
        end = segment.pop("end", clock[-1] + 1)
        segment["persistence"] = end - clock[segment["level"]]
        segment.setdefault("parent", None)
    return segments


def excess_of_mass(
    levels: np.ndarray | torch.Tensor, steps: Sequence[int], size_power: float, min_size: float
) -> np.ndarray:
    """The segments of a condensation tree chosen by excess of mass, as one label map.

    The cluster selection of HDBSCAN (Campello et al., "Density-based clustering based on hierarchical density
    estimates", PAKDD 2013), on the tree of :func:`segment_lifetimes`: a segment's stability is size^p x
    persistence (in condensation steps; HDBSCAN uses p = 1), and a segment is chosen when its stability exceeds the
    best total of the segments below it, so the chosen segments never overlap and have the largest total stability.
    Segments under ``min_size`` of the pixels, and the whole image, are never chosen.

    Args:
        levels: (L, *spatial) labels, fine to coarse.
        steps: increasing condensation steps of the L levels.
        size_power: p, the weight of a segment's size in its stability (>= 0).
        min_size: the smallest share of the pixels a chosen segment may hold.

    Returns:
        an int64 label map of shape ``spatial``: the chosen segments numbered from 1, pixels under none 0.
    """
    flat = torch.as_tensor(levels).long().reshape(len(levels), -1)
    pixels = flat.shape[1]
    segments = segment_lifetimes(flat, steps)
    children = defaultdict(list)
    for index, segment in enumerate(segments):
        if segment["parent"] is not None:
            children[segment["parent"]].append(index)
    best, chosen = {}, {}
    for index in sorted(range(len(segments)), key=lambda i: segments[i]["level"]):  # children before parents
        segment = segments[index]
        eligible = min_size * pixels <= segment["size"] < pixels
        own = segment["size"] ** size_power * segment["persistence"] if eligible else 0.0
        below = sum(best[child] for child in children[index])
        chosen[index] = eligible and (not children[index] or own > below)
        best[index] = own if chosen[index] else below
    label_map = np.zeros(pixels, dtype=np.int64)
    pending = [index for index, segment in enumerate(segments) if segment["parent"] is None]
    while pending:
        index = pending.pop()
        if chosen[index]:
            segment = segments[index]
            label_map[(flat[segment["level"]] == segment["label"]).numpy()] = int(label_map.max()) + 1
        else:
            pending.extend(children[index])
    return label_map.reshape(tuple(levels.shape[1:]))


def _check_part_ratio(part_ratio: float | None, rule: str) -> None:
    if part_ratio is not None and (rule != "lineage" or not 0 < part_ratio <= 1):
        raise ValueError(f"part_ratio must be None, or in (0, 1] with rule 'lineage', got {part_ratio} ({rule!r}).")


def lineage_lifetimes(
    levels: torch.Tensor, steps: Sequence[int] | None = None, part_ratio: float | None = None
) -> list[dict]:
    """The segments of a fine-to-coarse level series as the CUTS authors' public code tracks them
    (``get_persistent_structures`` after ``associate_frames``, github.com/ChenLiu-1996/CUTS): a label keeps its
    identity while it absorbs others. Where segments merge, the largest of them (the code's best overlap; on a tie,
    the lineage founded by the lowest finest-level label) carries its identity on, and the others end. So every
    lineage starts at the finest level and grows until it is absorbed or the series ends.

    With ``part_ratio``, a lineage absorbed by one less than ``1 / part_ratio`` times its size (compared at the
    level before the merge) is marked a ``part``: the two were comparable halves of the merged segment, a new whole
    rather than the larger one grown (a tumour's core meeting its edema), whereas a structure absorbed by a much
    larger one (a ventricle by the tissue around it) stays a structure of its own.

    Args:
        levels: (L, N) labels, fine to coarse, each level's labels 0 .. c_l - 1.
        steps: increasing condensation steps of the L levels, or None.
        part_ratio: in (0, 1], or None: no lineage is a part (the authors' code).

    Returns:
        one dict per lineage: its largest extent, its last segment, as ``level`` and ``label`` there, its ``size``
        (pixels), ``persistence``, from the finest level to the one where it is absorbed, in levels or in
        ``steps`` (a lineage alive at the last level counts to it, inclusive, as :func:`segment_lifetimes`), and
        ``part`` (see ``part_ratio``).
    """
    clock = _clock(levels, steps)
    _check_part_ratio(part_ratio, "lineage")
    sizes = torch.bincount(levels[0])
    lineages = [{"level": 0, "label": label, "size": int(sizes[label])} for label in range(len(sizes))]
    carrier = list(range(len(sizes)))  # label at the current level -> index of the lineage it carries
    for index in range(1, len(levels)):
        parent = torch.zeros(len(sizes), dtype=torch.long)
        parent[levels[index - 1]] = levels[index]
        merged_sizes = torch.bincount(levels[index])
        carried: list[int | None] = [None] * len(merged_sizes)
        carrier_size = torch.zeros(len(merged_sizes), dtype=torch.long)  # the carrier's size before the merge
        for label in sorted(range(len(sizes)), key=lambda old: (-int(sizes[old]), carrier[old])):
            new = int(parent[label])
            if carried[new] is None:
                carried[new], carrier_size[new] = carrier[label], sizes[label]
                lineages[carrier[label]].update(level=index, label=new, size=int(merged_sizes[new]))
            else:
                lineages[carrier[label]]["end"] = clock[index]
                is_part = part_ratio is not None and int(sizes[label]) >= part_ratio * int(carrier_size[new])
                lineages[carrier[label]]["part"] = is_part
        carrier, sizes = carried, merged_sizes
    for lineage in lineages:
        lineage["persistence"] = lineage.pop("end", clock[-1] + 1) - clock[0]
        lineage.setdefault("part", False)
    return lineages


def _check_persistence_options(
    min_size: float, min_persistence: int, max_segments: int | None, rule: str, part_ratio: float | None
) -> None:
    if not 0 <= min_size < 1 or min_persistence < 1 or (max_segments is not None and max_segments < 1):
        raise ValueError(
            f"min_size must be in [0, 1), min_persistence >= 1 and max_segments None or >= 1, got {min_size}, "
            f"{min_persistence}, {max_segments}."
        )
    if rule not in PERSISTENCE_RULES:
        raise ValueError(f"rule must be one of {PERSISTENCE_RULES}, got {rule!r}.")
    _check_part_ratio(part_ratio, rule)


def relabel_by_first_appearance(labels: torch.Tensor) -> torch.Tensor:
    """A label map renumbered 0 .. k - 1 in the order its labels first appear in raster order (same shape)."""
    flat = torch.as_tensor(labels).long().reshape(-1)
    _, inverse = torch.unique(flat, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), len(flat)).scatter_reduce(0, inverse, torch.arange(len(flat)), "amin")
    return torch.argsort(torch.argsort(first))[inverse].reshape(labels.shape)


def persistent_structures(
    levels: torch.Tensor,
    steps: Sequence[int] | None = None,
    min_size: float = 0.01,
    min_persistence: int = 2,
    max_segments: int | None = None,
    rule: str = "paper",
    part_ratio: float | None = None,
) -> torch.Tensor:
    """One label map from a fine-to-coarse level series (CUTS sec. 3.2.2). Segments under ``min_size`` of the
    pixels, shorter-lived than ``min_persistence`` or covering every pixel are dropped; the rest are painted on a
    canvas, the coarsest level with two or more clusters (one label when there is none), so every pixel gets a
    label. Two rules:

    - ``"paper"``: the intact segments of :func:`segment_lifetimes`, ranked by persistence, the more persistent
      painted over the less (ties: the larger first, so the smaller stays visible), as the paper describes;
    - ``"lineage"``: the lineages of :func:`lineage_lifetimes` at their largest extent, painted largest first so
      the smaller stay visible, as the authors' public code does; with ``part_ratio``, a lineage that was a
      comparable part of a merged segment (see :func:`lineage_lifetimes`) is not painted, so the merged segment
      shows whole.

    Args:
        levels: (L, *spatial) labels, fine to coarse.
        steps: the condensation step of each level (persistence in steps), or None (persistence in levels).
        min_size: smallest kept segment, as a fraction of the pixels, in [0, 1).
        min_persistence: shortest kept persistence, >= 1.
        max_segments: paint only this many of the most persistent segments, >= 1; None: all. The map then has at
            most ``max_segments`` labels plus the canvas's (a bound for clients that name every label, e.g. a
            bundle's ``channel_def``).
        rule: ``"paper"`` or ``"lineage"``.
        part_ratio: the lineage rule's, as :func:`lineage_lifetimes`; None: every lineage is painted.

    Returns:
        (*spatial) int64 labels 0 .. k - 1, numbered by first appearance in raster order.
    """
    _check_persistence_options(min_size, min_persistence, max_segments, rule, part_ratio)
    flat = torch.as_tensor(levels).long().reshape(len(levels), -1)
    pixels = flat.shape[1]
    counts = [int(level.max()) + 1 for level in flat]
    split = [index for index, count in enumerate(counts) if count >= 2]
    canvas = flat[split[-1]].clone() if split else torch.zeros(pixels, dtype=torch.long)
    segments = segment_lifetimes(flat, steps) if rule == "paper" else lineage_lifetimes(flat, steps, part_ratio)
    kept = [
        s
        for s in segments
        if min_size * pixels <= s["size"] < pixels and s["persistence"] >= min_persistence and not s.get("part")
    ]
    ranked = sorted(kept, key=lambda s: (s["persistence"], -s["size"]))  # the paper's painting order
    ranked = ranked[-max_segments:] if max_segments else ranked
    painted = ranked if rule == "paper" else sorted(ranked, key=lambda s: (-s["size"], -s["persistence"]))
    offset = int(canvas.max()) + 1
    for rank, segment in enumerate(painted):
        canvas[flat[segment["level"]] == segment["label"]] = offset + rank
    return relabel_by_first_appearance(canvas).reshape(levels.shape[1:])


class PersistentStructures(Transform):
    """Array form of :func:`persistent_structures`: (L, *spatial) levels -> (1, *spatial) label map. The levels'
    ``steps`` metadata (set by ``DiffusionCondensation``) measures persistence in condensation steps.

    Args:
        min_size: smallest kept segment, as a fraction of the pixels, in [0, 1).
        min_persistence: shortest kept persistence, >= 1.
        use_steps: measure persistence in condensation steps when the levels carry them; False: in levels.
        max_segments: as :func:`persistent_structures`.
        rule: ``"paper"`` or ``"lineage"`` (the authors' code), as :func:`persistent_structures`.
        part_ratio: with the lineage rule, as :func:`persistent_structures`.
    """

    def __init__(
        self,
        min_size: float = 0.01,
        min_persistence: int = 2,
        use_steps: bool = True,
        max_segments: int | None = None,
        rule: str = "paper",
        part_ratio: float | None = None,
    ) -> None:
        _check_persistence_options(min_size, min_persistence, max_segments, rule, part_ratio)
        self.min_size = min_size
        self.min_persistence = min_persistence
        self.use_steps = use_steps
        self.max_segments = max_segments
        self.rule = rule
        self.part_ratio = part_ratio

    def __call__(self, levels: torch.Tensor) -> torch.Tensor:
        meta = dict(getattr(levels, "meta", {}))
        steps = meta.get("steps") if self.use_steps else None
        labels = persistent_structures(
            torch.as_tensor(levels),
            steps,
            self.min_size,
            self.min_persistence,
            self.max_segments,
            self.rule,
            self.part_ratio,
        )
        return MetaTensor(labels[None], meta=meta)


class PersistentStructuresd(MapTransform):
    """Dictionary form of :class:`PersistentStructures`: the levels under ``keys`` become the label map under
    ``output_key``.

    Args:
        keys: key of the levels (one key).
        output_key: key of the label map (e.g. ``"pred"``).
        allow_missing_keys: skip an absent key.
        kwargs: as :class:`PersistentStructures`.
    """

    def __init__(self, keys: KeysCollection, output_key: str = "pred", allow_missing_keys: bool = False, **kwargs):
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"PersistentStructuresd reads one key, got {self.keys}.")
        self.output_key = output_key
        self.transform = PersistentStructures(**kwargs)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.transform(d[key])
        return d

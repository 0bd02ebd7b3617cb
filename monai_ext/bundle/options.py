"""Checks of a bundle's config options that fail before anything is built or run, naming the config id."""

from __future__ import annotations

import math
from collections.abc import Sequence

from monai.utils import set_determinism

from monai_ext.networks.hierarchical import hierarchy_levels
from monai_ext.transforms.hierarchy import parse_num_parts


def check_num_parts(num_parts: Sequence[int], spatial_size: Sequence[int]) -> list[int]:
    """Refuse, before any network is built or run, more parts per level than the network input has voxels.

    Args:
        num_parts: K of each level (config id ``num_parts``).
        spatial_size: the network input grid (config id ``spatial_size``).

    Raises:
        ValueError: a K is not an integer >= 2 or exceeds the voxel count; the message names ``num_parts``.
    """
    parts = parse_num_parts(num_parts)
    voxels = math.prod(int(s) for s in spatial_size)
    if max(parts) > voxels:
        raise ValueError(
            f"num_parts must list integers K with 2 <= K <= {voxels} (the voxels of spatial_size "
            f"{list(spatial_size)}), got {list(num_parts)!r}."
        )
    return parts


def trained_label_keys(
    label_keys: Sequence[str], num_parts: Sequence[int], merged_parts: Sequence[int] = ()
) -> list[str]:
    """The label maps a training run's validation scores (config id ``validation_label_keys``): of ``label_keys``,
    one per level of the hierarchy (coarse to fine, merged levels included), those of the trained levels; a single
    label (e.g. a tumour mask) scores every level and is kept as it is.

    Args:
        label_keys: config id ``label_keys``: none, one, or one per level.
        num_parts: K of each trained level (config id ``num_parts``).
        merged_parts: K of each merged level (config id ``merged_parts``).

    Raises:
        ValueError: several label keys, but not one per level; the message names ``label_keys`` and the levels.
    """
    levels = hierarchy_levels(num_parts, merged_parts)
    keys = list(label_keys)
    if len(keys) <= 1:
        return keys
    if len(keys) != len(levels):
        raise ValueError(
            f"label_keys must name one label map per level ({len(levels)}: K = {[k for k, _ in levels]}, "
            f"merged_parts included) or a single one for all levels, got {keys!r}."
        )
    return [key for key, (_, merged) in zip(keys, levels, strict=True) if not merged]


def set_seed(seed: object) -> int:
    """Seed every generator (``monai.utils.set_determinism``) from config id ``seed``, refusing anything but an
    integer >= 0 with a message that names the id (``--seed abc`` failed inside MONAI without naming it)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"config id 'seed' must be an integer >= 0, got {seed!r}.")
    set_determinism(seed=seed)
    return seed


def check_spatial_size(spatial_size: Sequence[int], multiple: int, config_id: str = "spatial_size") -> list[int]:
    """Refuse a network input size that a U-Net cannot run: each side must be a positive multiple of ``multiple``
    (``2 ** (levels - 1)`` for a U-Net that halves the grid between its levels), checked before anything runs.

    Args:
        spatial_size: the network input grid (config id ``config_id``).
        multiple: what every side must be a multiple of, >= 1.
        config_id: the config id named in the error.

    Raises:
        ValueError: a side is not a positive integer multiple of ``multiple``; the message proposes the nearest size.
    """
    sides = list(spatial_size) if isinstance(spatial_size, list | tuple) else [spatial_size]
    if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 and s % multiple == 0 for s in sides):
        raise ValueError(
            f"config id '{config_id}' must list positive multiples of {multiple} (the network halves the grid "
            f"between its levels), got {spatial_size!r}."
        )
    return sides

"""Hausdorff distances from MONAI, without the warning MONAI's own code raises on every call."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import torch
from monai.metrics import compute_hausdorff_distance

# MONAI 1.5-1.6's surface distances pass get_mask_edges' deprecated argument themselves; a user cannot act on it
DEPRECATED_INSIDE_MONAI = r".*get_mask_edges:always_return_as_numpy"


def hausdorff_distance(
    y_pred: torch.Tensor,
    y: torch.Tensor,
    percentile: float | None = None,
    spacing: float | Sequence[float] | None = None,
) -> torch.Tensor:
    """MONAI's ``compute_hausdorff_distance`` of every channel (``include_background=True``), (B, C).

    Args:
        y_pred: one-hot or binary prediction (B, C, *spatial).
        y: the ground truth, same shape.
        percentile: the distance percentile (95: HD95); None: the maximum.
        spacing: the voxel spacing; None measures in voxels.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=DEPRECATED_INSIDE_MONAI, category=FutureWarning)
        return compute_hausdorff_distance(y_pred, y, include_background=True, percentile=percentile, spacing=spacing)

"""Label-free scores of a soft segmentation: the mean of the largest part probability, the parts it uses."""

from __future__ import annotations

import torch
from monai.utils import MetricReduction

from monai_ext.losses.part_usage import hard_shares
from monai_ext.metrics.per_volume import PerVolumeMetric


class MeanMaxProbabilityMetric(PerVolumeMetric):
    """Per volume, the mean over voxels of max_k M_ku, the probability of the most likely part.

    Tursynbek & Niethammer (MICCAI 2023, sec. 4.2) keep the epoch with the best average probability of the
    segmentation mask over all inputs (after Park et al., Cancers 2022): a confident, well-separated partition
    scores near 1, a hesitant one near 1/K. It needs no labels.

    Args:
        reduction: MONAI reduction over the buffered per-volume values (default mean).
    """

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN) -> None:
        super().__init__(reduction)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if y_pred.ndim < 3:
            raise ValueError(f"y_pred must be probabilities (B, K, *spatial), got shape {tuple(y_pred.shape)}.")
        if y_pred.shape[1] < 2:
            raise ValueError(f"y_pred needs at least 2 parts along the channel axis, got {y_pred.shape[1]}.")
        if not torch.isfinite(y_pred).all():
            raise ValueError("y_pred contains NaN or infinite values.")
        return y_pred.amax(dim=1).flatten(1).mean(dim=1, keepdim=True)


class PartsUsedMetric(PerVolumeMetric):
    """Per volume, how many of the K parts are used: a part is used when it is the most likely part (argmax) of at
    least ``min_share`` of the volume's voxels. A segmenter whose finer level repeats the coarser one, or leaves parts
    empty, uses fewer than K (issue 31 of monai-ext: collapsed parts). It needs no labels.

    Args:
        min_share: the share of the voxels a part must hold to count, in (0, 1) (default 0.5 %).
        reduction: MONAI reduction over the buffered per-volume counts (default mean).
    """

    def __init__(self, min_share: float = 0.005, reduction: MetricReduction | str = MetricReduction.MEAN) -> None:
        super().__init__(reduction)
        if not 0 < min_share < 1:
            raise ValueError(f"min_share must be in (0, 1), got {min_share}.")
        self.min_share = min_share

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        with torch.no_grad():
            return (hard_shares(y_pred) >= self.min_share).sum(1, keepdim=True).float()

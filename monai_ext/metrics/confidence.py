"""Label-free model selection: the mean of the largest part probability."""

from __future__ import annotations

import torch
from monai.utils import MetricReduction

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

"""Base of the metrics that buffer one score per volume, and summaries of such scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from monai.metrics import CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction
from monai.utils import MetricReduction, look_up_option


class PerVolumeMetric(CumulativeIterationMetric):
    """A MONAI cumulative metric whose ``_compute_tensor`` returns one score per batch item, shape ``(B, 1)``;
    ``aggregate`` reduces the buffered scores with ``do_metric_reduction`` (NaN scores are left out).

    Args:
        reduction: one of :py:class:`monai.utils.enums.MetricReduction`; default ``"mean"``.
        get_not_nans: whether ``aggregate()`` also returns the count of not-NaN values.
    """

    def __init__(self, reduction: MetricReduction | str = MetricReduction.MEAN, get_not_nans: bool = False) -> None:
        super().__init__()
        self.reduction = look_up_option(reduction, MetricReduction)
        self.get_not_nans = get_not_nans

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the buffered ``(N, 1)`` scores.

        Args:
            reduction: overrides ``self.reduction`` for this call.
        """
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("nothing to aggregate: the buffer is empty; call the metric on some outputs first.")
        value, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (value, not_nans) if self.get_not_nans else value


def finite_stats(values: np.ndarray | list[float]) -> dict[str, float]:
    """Mean, sd (population) and count of the finite values (an empty dict when there are none)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    return {"mean": float(values.mean()), "sd": float(values.std()), "n": int(values.size)} if values.size else {}


def paired_differences(
    ours: Sequence[float], theirs: Sequence[float], draws: int = 10000, seed: int = 0
) -> dict[str, float | int | list[float]]:
    """Paired per-case differences of two methods scored on the same cases (e.g. per-slice Dice).

    The percentile bootstrap resamples the cases with replacement ``draws`` times (``numpy`` generator seeded with
    ``seed``) and takes the 2.5 and 97.5 percentiles of the resampled means.

    Args:
        ours: the first method's score per case.
        theirs: the second method's score on the same cases, in the same order.
        draws: bootstrap resamples.
        seed: seed of the resampling.

    Returns:
        ``mean`` (of ours minus theirs), ``ci95`` (bootstrap 95 % interval of the mean), ``higher`` (cases where
        ours is higher) and ``n`` (cases).

    Raises:
        ValueError: the two lists differ in length or are empty.
    """
    if len(ours) != len(theirs) or not ours:
        raise ValueError(f"need two non-empty lists of per-slice scores of one length, got {len(ours)}, {len(theirs)}.")
    difference = np.asarray(ours, dtype=float) - np.asarray(theirs, dtype=float)
    resampled = np.random.default_rng(seed).integers(0, len(difference), (draws, len(difference)))
    means = difference[resampled].mean(axis=1)
    return {
        "mean": float(difference.mean()),
        "ci95": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))],
        "higher": int((difference > 0).sum()),
        "n": len(difference),
    }

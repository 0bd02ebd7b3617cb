"""Metrics MONAI core does not have, in MONAI's cumulative metric API.

- :func:`matched_dice` / :class:`MatchedDiceMetric`: Hungarian-matched Dice for unsupervised segmentation
  (Hsu et al., NeurIPS 2021; Tursynbek & Niethammer, MICCAI 2023, Table 1).
- :func:`ergas` / :class:`ERGASMetric`: ERGAS (Wald, 2000), for the reconstructions of CUTS.
- :class:`MatchedHausdorffDistanceMetric`: HD95 of matched parts (binary targets: the BraTS-style HD95).
- :class:`MeanMaxProbabilityMetric`: the label-free model-selection score of structure discovery;
  :class:`PartsUsedMetric`: how many of its parts a segmentation uses.
- :func:`finite_stats`, :func:`paired_differences`: summaries of per-volume (or per-slice) scores, and the paired
  difference of two methods with its bootstrap interval.
- :func:`boundary_variance_ratio`, :func:`error_auroc`, :func:`expected_calibration_error`: whether an ensemble's
  variance and mean maps can be trusted (diffusion segmentation ensembles, Wolleb et al., MIDL 2022).

HD95 and Jaccard (IoU) come from MONAI (``HausdorffDistanceMetric(percentile=95)``, ``MeanIoU``); to score
unsupervised parts with them, first map the parts to their matched classes with :func:`relabel`, then one-hot
encode (``K`` ground-truth classes, background included)::

    from monai.metrics import HausdorffDistanceMetric, MeanIoU
    from monai.networks import one_hot

    res = matched_dice(pred, gt)  # (H, W[, D]) label maps
    lab = relabel(pred, res, unmatched=K)  # unmatched parts -> channel K, dropped below
    y_pred = one_hot(torch.as_tensor(lab)[None, None], K + 1)[:, :K]
    y = one_hot(torch.as_tensor(gt)[None, None], K)
    hd95 = HausdorffDistanceMetric(include_background=True, percentile=95)(y_pred, y)
    iou = MeanIoU(include_background=True)(y_pred, y)

``DiceMetric(include_background=True)`` on the same tensors reproduces ``res.per_class``.
"""

from __future__ import annotations

from .confidence import MeanMaxProbabilityMetric, PartsUsedMetric
from .ergas import ERGASMetric, ergas
from .hint import best_level_scores, binary_mask_scores, hint_dice, hint_mask, hint_scores
from .matched_dice import MatchedDiceMetric, MatchedDiceResult, matched_dice, relabel, reported_dice
from .matched_hausdorff import MatchedHausdorffDistanceMetric
from .per_volume import finite_stats, paired_differences
from .uncertainty import boundary_band, boundary_variance_ratio, error_auroc, expected_calibration_error

__all__ = [
    "ERGASMetric",
    "MatchedDiceMetric",
    "MatchedDiceResult",
    "MatchedHausdorffDistanceMetric",
    "MeanMaxProbabilityMetric",
    "PartsUsedMetric",
    "best_level_scores",
    "binary_mask_scores",
    "boundary_band",
    "boundary_variance_ratio",
    "ergas",
    "error_auroc",
    "expected_calibration_error",
    "finite_stats",
    "hint_dice",
    "hint_mask",
    "hint_scores",
    "matched_dice",
    "paired_differences",
    "relabel",
    "reported_dice",
]

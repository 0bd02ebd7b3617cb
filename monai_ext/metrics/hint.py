"""The evaluation of CUTS (Liu, Amodio et al., sec. 4 and Table 1): a binary mask from a multi-class label map by
the "hint" rule, then Dice, Hausdorff distance and HD95, SSIM, ERGAS and RMSE against the ground-truth mask.

The hint rule looks at the ground truth once, to pick which part is the target: the label most frequent under
the ground-truth foreground. It is applied to every method alike, so label maps of any number of parts compare.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.metrics import compute_dice
from skimage.metrics import structural_similarity

from monai_ext.metrics.ergas import ergas
from monai_ext.metrics.surface import hausdorff_distance

__all__ = ["best_level_scores", "binary_mask_scores", "hint_dice", "hint_mask", "hint_scores"]


def hint_mask(label_map: np.ndarray | torch.Tensor, foreground: np.ndarray | torch.Tensor) -> np.ndarray:
    """The pixels of the label most frequent under ``foreground`` (ties: the smallest label), as a boolean mask.

    Raises:
        ValueError: shapes differ, or ``foreground`` is empty (no label can be picked; count the image apart).
    """
    labels, truth = np.asarray(label_map), np.asarray(foreground) > 0
    if labels.shape != truth.shape:
        raise ValueError(f"label map {labels.shape} and ground truth {truth.shape} differ in shape.")
    if not truth.any():
        raise ValueError("the ground-truth mask is empty: the hint rule has no foreground to pick a label from.")
    values, counts = np.unique(labels[truth], return_counts=True)
    return labels == values[np.argmax(counts)]


def hint_dice(label_map: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor) -> float:
    """The Dice of :func:`hint_scores` alone, without its distances and image scores: for choosing among many label
    maps (levels, rules), where only Dice is compared.

    Raises:
        ValueError: as :func:`hint_mask`.
    """
    mask, reference = hint_mask(label_map, truth), np.asarray(truth) > 0
    return float(2 * (mask & reference).sum() / (mask.sum() + reference.sum()))


def binary_mask_scores(mask: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Dice, Hausdorff distance (maximum) and HD95 in pixels, SSIM, ERGAS and RMSE of a binary 2D ``mask`` against a
    non-empty binary ``truth`` (CUTS Table 1; the masks are compared as 0 / 1 images for SSIM, ERGAS and RMSE).

    An empty ``mask`` scores Dice 0 and both distances the image diagonal (the authors' convention).

    Raises:
        ValueError: shapes differ, the masks are not 2D, or ``truth`` is empty.
    """
    pred, ref = np.asarray(mask) > 0, np.asarray(truth) > 0
    if pred.shape != ref.shape or pred.ndim != 2:
        raise ValueError(f"mask and truth must be 2D masks of one shape, got {pred.shape} and {ref.shape}.")
    if not ref.any():
        raise ValueError("the ground-truth mask is empty: Dice and ERGAS are undefined; count the image apart.")
    y_pred, y = (torch.as_tensor(a, dtype=torch.float32)[None, None] for a in (pred, ref))
    diagonal = math.hypot(*pred.shape)
    if pred.any():
        hausdorff = float(hausdorff_distance(y_pred, y))
        hd95 = float(hausdorff_distance(y_pred, y, percentile=95))
    else:
        hausdorff = hd95 = diagonal
    a, b = pred.astype(np.float64), ref.astype(np.float64)
    return {
        "dice": float(compute_dice(y_pred, y, include_background=True)) if pred.any() else 0.0,
        "hausdorff": hausdorff,
        "hd95": hd95,
        "ssim": float(structural_similarity(b, a, data_range=1.0)),
        "ergas": float(ergas(torch.as_tensor(a)[None], torch.as_tensor(b)[None])),
        "rmse": float(np.sqrt(np.mean((a - b) ** 2))),
    }


def hint_scores(label_map: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor) -> dict[str, float]:
    """:func:`binary_mask_scores` of the :func:`hint_mask` of a 2D multi-class ``label_map`` against ``truth``."""
    return binary_mask_scores(hint_mask(label_map, truth), truth)


def best_level_scores(levels: np.ndarray | torch.Tensor, truth: np.ndarray | torch.Tensor) -> tuple[int, dict]:
    """The oracle "best level" of CUTS Table 1: the level of ``levels`` (L, H, W) whose :func:`hint_scores` has the
    highest Dice (the first on ties), and those scores. It looks at the ground truth to choose the level: report it
    apart from the label-free methods."""
    scores = [hint_scores(level, truth) for level in np.asarray(levels)]
    best = int(np.argmax([s["dice"] for s in scores]))
    return best, scores[best]

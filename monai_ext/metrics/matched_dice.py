"""Hungarian-matched Dice for unsupervised (label-free) segmentation.

An unsupervised segmenter outputs ``K`` parts whose label values carry no meaning. Following Hsu et al.,
"Capturing implicit hierarchical structure in 3D biomedical images with self-supervised hyperbolic
representations" (NeurIPS 2021), and Tursynbek & Niethammer, "Unsupervised Discovery of 3D Hierarchical
Structure with Generative Diffusion Features" (MICCAI 2023, Table 1), each predicted part is matched to at
most one ground-truth class (background included) by the Hungarian algorithm on the part-by-class Dice
matrix, maximising the total Dice; the score of a volume is the mean matched Dice over the ground-truth
classes present in it, a class left without a part scoring 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from monai.utils import MetricReduction
from scipy.optimize import linear_sum_assignment

from monai_ext.metrics.per_volume import PerVolumeMetric

__all__ = ["MatchedDiceMetric", "MatchedDiceResult", "matched_dice", "relabel", "reported_dice"]

ArrayLike = np.ndarray | torch.Tensor


@dataclass(frozen=True)
class MatchedDiceResult:
    """Outcome of :func:`matched_dice` for one volume.

    Attributes:
        mean: mean of ``per_class`` over the ground-truth classes present in the target.
        per_class: ground-truth label -> Dice with its matched predicted part (0.0 when unmatched).
        matching: ground-truth label -> matched predicted label, ``None`` when no part was left for it.
    """

    mean: float
    per_class: dict[int, float]
    matching: dict[int, int | None]


def _to_numpy(x: ArrayLike) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu()
        if x.dtype == torch.bfloat16:
            x = x.float()
        return x.numpy()
    return np.asarray(x)


def _check_not_empty(shape: tuple[int, ...], name: str) -> None:
    if int(np.prod(shape)) == 0:
        raise ValueError(f"{name} is empty (shape {tuple(shape)}): at least one voxel is required.")


def _as_labels(x: ArrayLike, name: str) -> np.ndarray:
    """Return ``x`` as a flat int64 array of non-negative labels, or raise ValueError.

    Integer and bool arrays are accepted as they are; floating-point arrays are accepted when every value is
    a whole number (MONAI pipelines often carry label maps as float tensors).
    """
    arr = _to_numpy(x)
    _check_not_empty(arr.shape, name)
    if arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer):
        labels = arr.astype(np.int64, copy=False)
    elif np.issubdtype(arr.dtype, np.floating):
        if np.isnan(arr).any():
            raise ValueError(f"{name} contains NaN; a label map of non-negative integers is required.")
        if not np.isfinite(arr).all() or not np.array_equal(arr, np.round(arr)):
            raise ValueError(
                f"{name} holds non-integer values (dtype {arr.dtype}); a label map of non-negative integers "
                "is required (argmax probabilities over channels first)."
            )
        labels = arr.astype(np.int64)
    else:
        raise ValueError(f"{name} has dtype {arr.dtype}; an integer, bool or whole-valued float label map is required.")
    if labels.min() < 0:
        raise ValueError(f"{name} holds negative labels (min {int(labels.min())}); labels must be >= 0.")
    return labels.ravel()


def _compact(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return the sorted distinct values of ``labels`` and each voxel's index into them."""
    top = int(labels.max())
    if top < max(labels.size, 1 << 16):  # O(n) route: a label histogram plus a lookup table
        present = np.flatnonzero(np.bincount(labels, minlength=top + 1))
        lut = np.zeros(top + 1, dtype=np.int64)
        lut[present] = np.arange(present.size)
        return present, lut[labels]
    present, index = np.unique(labels, return_inverse=True)  # sparse, very large label values
    return present, index.ravel()


def _check_count(value: int | None, name: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1):
        raise ValueError(f"{name} must be a positive integer or None, got {value!r}.")


def _dice_matrix(
    pred: np.ndarray, target: np.ndarray, num_parts: int | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dice between every predicted part (rows) and every ground-truth class present (columns).

    The part-by-class confusion matrix comes from one ``np.bincount`` over ``pred_index * n_classes +
    target_index``; Dice(p, g) = 2 |P ∩ G| / (|P| + |G|) follows from its row and column sums.

    Returns:
        predicted labels (rows), ground-truth labels (columns), Dice matrix of shape (rows, columns).
    """
    if num_parts is None:
        pred_labels, pred_index = _compact(pred)
    else:
        pred_labels, pred_index = np.arange(num_parts), pred
    gt_labels, gt_index = _compact(target)
    n_pred, n_gt = pred_labels.size, gt_labels.size
    confusion = np.bincount(pred_index * n_gt + gt_index, minlength=n_pred * n_gt).reshape(n_pred, n_gt)
    sizes = confusion.sum(axis=1, keepdims=True) + confusion.sum(axis=0, keepdims=True)  # > 0: every class present
    return pred_labels, gt_labels, 2.0 * confusion / sizes


def matched_dice(
    pred: ArrayLike, target: ArrayLike, num_parts: int | None = None, num_classes: int | None = None
) -> MatchedDiceResult:
    """Hungarian-matched Dice of one predicted label map against one ground-truth label map.

    The Dice matrix between every predicted part and every ground-truth class present in ``target``
    (background included) is built from a confusion matrix; ``scipy.optimize.linear_sum_assignment`` on the
    negated matrix finds the one-to-one matching with the largest total Dice (Hsu et al., NeurIPS 2021;
    Tursynbek & Niethammer, MICCAI 2023, Table 1). Score = mean over the ground-truth classes present of the
    Dice with their matched part; with fewer parts than classes the unmatched classes score 0.

    Args:
        pred: predicted label map (numpy array or torch tensor of non-negative integers), no batch or channel
            dimension.
        target: ground-truth label map with the same shape as ``pred``.
        num_parts: number of predicted parts; labels ``0 .. num_parts - 1`` are candidates for matching, even
            those absent from ``pred`` (they have Dice 0 with every class). ``None``: the labels present in ``pred``.
        num_classes: number of ground-truth classes, background included; when given, ``target`` labels must be
            below it. The classes scored are always those present in ``target``.

    Returns:
        :class:`MatchedDiceResult` with the mean, the per-class Dice and the matching.

    Raises:
        ValueError: shapes differ, an input is empty, holds NaN, non-integer or negative values, or a label is
            not below ``num_parts`` / ``num_classes``.
    """
    _check_count(num_parts, "num_parts")
    _check_count(num_classes, "num_classes")
    pred, target = _to_numpy(pred), _to_numpy(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: pred {pred.shape}, target {target.shape}.")
    pred_flat, target_flat = _as_labels(pred, "pred"), _as_labels(target, "target")
    if num_parts is not None and pred_flat.max() >= num_parts:
        raise ValueError(f"pred holds label {int(pred_flat.max())}, not below num_parts={num_parts}.")
    if num_classes is not None and target_flat.max() >= num_classes:
        raise ValueError(f"target holds label {int(target_flat.max())}, not below num_classes={num_classes}.")

    pred_labels, gt_labels, dice = _dice_matrix(pred_flat, target_flat, num_parts)
    rows, cols = linear_sum_assignment(-dice)
    per_class: dict[int, float] = {int(g): 0.0 for g in gt_labels}
    matching: dict[int, int | None] = {int(g): None for g in gt_labels}
    for r, c in zip(rows, cols, strict=True):
        per_class[int(gt_labels[c])] = float(dice[r, c])
        matching[int(gt_labels[c])] = int(pred_labels[r])
    return MatchedDiceResult(mean=float(np.mean(list(per_class.values()))), per_class=per_class, matching=matching)


def relabel(pred: ArrayLike, matching: Mapping[int, int | None] | MatchedDiceResult, unmatched: int = -1) -> ArrayLike:
    """Map each predicted part to the ground-truth label it was matched to.

    After this, label-wise metrics from MONAI (``HausdorffDistanceMetric(percentile=95)``, ``MeanIoU``,
    ``DiceMetric``) score the matched parts, e.g.::

        res = matched_dice(pred, gt)
        lab = relabel(pred, res, unmatched=n_classes)  # unmatched parts -> an extra, dropped channel
        y_pred = one_hot(lab[None, None], n_classes + 1)[:, :n_classes]
        y = one_hot(gt[None, None], n_classes)

    Args:
        pred: predicted label map (numpy array or torch tensor of non-negative integers), any shape.
        matching: ground-truth label -> predicted label (``MatchedDiceResult.matching``), or the result itself.
        unmatched: value written for predicted parts matched to no class. The default -1 marks them clearly
            but cannot be one-hot encoded; pass the number of classes to get an extra channel to drop
            (those voxels then count as misses of the classes they cover, as in the matched Dice).

    Returns:
        int64 label map of ``pred``'s shape and type (a torch tensor stays on its device).

    Raises:
        ValueError: ``pred`` is not a non-negative integer label map, or two classes map to the same part.
    """
    if isinstance(matching, MatchedDiceResult):
        matching = matching.matching
    parts = [p for p in matching.values() if p is not None]
    if len(set(parts)) != len(parts):
        raise ValueError(f"matching maps two ground-truth classes to the same predicted part: {dict(matching)}.")
    flat = _as_labels(pred, "pred")
    lut = np.full(max([int(flat.max()), *parts]) + 1, unmatched, dtype=np.int64)
    for gt_label, part in matching.items():
        if part is not None:
            lut[part] = gt_label
    out = lut[flat].reshape(tuple(pred.shape))
    if isinstance(pred, torch.Tensor):
        return torch.as_tensor(out, device=pred.device)
    return out


class MatchedDiceMetric(PerVolumeMetric):
    """Hungarian-matched Dice of unsupervised segmentations, as a MONAI cumulative metric.

    Per batch item, :func:`matched_dice` matches predicted parts to ground-truth classes (background included)
    by the Hungarian algorithm on the Dice matrix and averages the matched Dice over the classes present
    (Hsu et al., NeurIPS 2021; Tursynbek & Niethammer, MICCAI 2023, Table 1). The usage follows
    :py:class:`monai.metrics.DiceMetric`: call on each batch, then ``aggregate()`` and ``reset()``.

    ``y_pred`` and ``y`` are batch-first: label maps ``(B, 1, *spatial)`` or one-hot / probabilities
    ``(B, K, *spatial)``, reduced by argmax over channels when ``K > 1``. There is no ``include_background``:
    background is a ground-truth class like any other and every part competes for it.

    The per-class scores and matchings of the most recent call are kept in ``last_results``, a list with one
    :class:`MatchedDiceResult` per batch item (cleared by ``reset()``). They are not part of the cumulative
    buffer, so they are neither synchronised across distributed ranks nor accumulated across calls.

    Args:
        num_parts: number of predicted parts (see :func:`matched_dice`); ``None``: the labels present.
        num_classes: number of ground-truth classes, used to validate ``y``; ``None``: no check.
        reduction: reduction of the buffered ``(N, 1)`` scores, one of
            :py:class:`monai.utils.enums.MetricReduction`; default ``"mean"``.
        get_not_nans: whether ``aggregate()`` also returns the count of not-NaN values.
        report_classes: ground-truth classes whose matched Dice is averaged (all parts still compete in the
            matching); None averages over every class present. ``[1]`` gives the tumour Dice of a
            background / tumour target, the "Dice WT" of the paper's Table 3. A volume without any of them
            scores NaN (left out by the mean reduction).

    Example:

    .. code-block:: python

        metric = MatchedDiceMetric()
        for batch in loader:
            metric(y_pred=parts, y=batch["label"])  # (B, 1) scores
            print(metric.last_results[0].matching)
        score = metric.aggregate().item()
        metric.reset()
    """

    def __init__(
        self,
        num_parts: int | None = None,
        num_classes: int | None = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
        report_classes: Sequence[int] | None = None,
    ) -> None:
        super().__init__(reduction, get_not_nans)
        _check_count(num_parts, "num_parts")
        _check_count(num_classes, "num_classes")
        if report_classes is not None and (not report_classes or any(c < 0 for c in report_classes)):
            raise ValueError(f"report_classes must be None or non-negative labels, got {report_classes}.")
        self.num_parts = num_parts
        self.num_classes = num_classes
        self.report_classes = None if report_classes is None else [int(c) for c in report_classes]

    def reset(self) -> None:
        """Clear the buffer and ``last_results``."""
        super().reset()
        self.last_results: list[MatchedDiceResult] = []

    def __call__(self, y_pred: Any, y: Any = None, **kwargs: Any) -> Any:
        """Score a batch (tensor or list of channel-first tensors), buffer it and refresh ``last_results``."""
        self.last_results = []
        return super().__call__(y_pred=y_pred, y=y, **kwargs)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        """Return the matched Dice of each batch item as a ``(B, 1)`` float32 tensor on ``y_pred``'s device."""
        if not isinstance(y_pred, torch.Tensor) or not isinstance(y, torch.Tensor):
            raise ValueError(f"y_pred and y must be torch tensors, got {type(y_pred)} and {type(y)}.")
        if y_pred.ndim < 3 or y.ndim < 3:
            raise ValueError(
                f"y_pred and y need (batch, channel, *spatial) dimensions, got shapes {tuple(y_pred.shape)} "
                f"and {tuple(y.shape)}."
            )
        if y_pred.shape[0] != y.shape[0] or y_pred.shape[2:] != y.shape[2:]:
            raise ValueError(
                f"y_pred and y must share batch and spatial sizes, got y_pred {tuple(y_pred.shape)} "
                f"and y {tuple(y.shape)}."
            )
        preds, targets = _label_maps(y_pred, "y_pred"), _label_maps(y, "y")
        results = [matched_dice(p, t, self.num_parts, self.num_classes) for p, t in zip(preds, targets, strict=True)]
        self.last_results.extend(results)
        return torch.tensor([[self._score(r)] for r in results], dtype=torch.float32, device=y_pred.device)

    def _score(self, result: MatchedDiceResult) -> float:
        return reported_dice(result, self.report_classes)


def reported_dice(result: MatchedDiceResult, report_classes: Sequence[int] | None = None) -> float:
    """The matched Dice of ``result`` averaged over ``report_classes`` present in the target (None: its ``mean``
    over every class present); NaN when none of them is present."""
    if report_classes is None:
        return result.mean
    values = [result.per_class[c] for c in report_classes if c in result.per_class]
    return float(np.mean(values)) if values else float("nan")


def _label_maps(x: torch.Tensor, name: str) -> torch.Tensor:
    """``(B, 1, *spatial)`` label maps or ``(B, K, *spatial)`` one-hot / probabilities -> ``(B, *spatial)``."""
    _check_not_empty(tuple(x.shape), name)
    if x.is_floating_point() and torch.isnan(x).any():
        raise ValueError(f"{name} contains NaN.")
    return x.argmax(dim=1) if x.shape[1] > 1 else x[:, 0]

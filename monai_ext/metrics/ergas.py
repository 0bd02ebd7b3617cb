r"""ERGAS, the relative dimensionless global error in synthesis (Wald, 2000).

L. Wald, "Quality of high resolution synthesised images: is there a simple criterion?", Proc. Fusion of
Earth Data, 2000, pp. 99-103. With ``C`` channels (bands), ``RMSE_c`` the root-mean-square error of channel
``c`` and ``mu_c`` the mean of the reference (target) channel ``c``:

.. math::
    \mathrm{ERGAS} = 100 \, \frac{h}{l} \sqrt{\frac{1}{C} \sum_{c=1}^{C}
    \left(\frac{\mathrm{RMSE}_c}{\mu_c}\right)^2}

``h / l`` is the ratio of the pixel sizes of the high- and low-resolution images (e.g. 1/4 for 4x
pan-sharpening), 1 when both images share a grid, as for the reconstructions of CUTS (Liu, Amodio et al.).
Lower is better; 0 for identical images. MONAI 1.6.1 has no ERGAS (it has RMSEMetric, PSNRMetric, SSIMMetric).
"""

from __future__ import annotations

import math

import numpy as np
import torch
from monai.metrics.regression import RegressionMetric
from monai.utils import MetricReduction

__all__ = ["ERGASMetric", "compute_ergas", "ergas"]


def _check_ratio_eps(ratio: float, eps: float | None) -> None:
    if isinstance(ratio, bool) or not isinstance(ratio, int | float) or not math.isfinite(ratio) or ratio <= 0:
        raise ValueError(f"ratio must be a positive finite number (pixel size h / l), got {ratio!r}.")
    if eps is not None and (not isinstance(eps, int | float) or not math.isfinite(eps) or eps <= 0):
        raise ValueError(f"eps must be None (raise on zero-mean channels) or a positive number, got {eps!r}.")


def _check_values(x: torch.Tensor, name: str) -> None:
    if x.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(x.shape)}): at least one voxel is required.")
    if torch.isnan(x).any():
        raise ValueError(f"{name} contains NaN.")
    if torch.isinf(x).any():
        raise ValueError(f"{name} contains infinite values.")


def compute_ergas(y_pred: torch.Tensor, y: torch.Tensor, ratio: float = 1.0, eps: float | None = None) -> torch.Tensor:
    """ERGAS (Wald 2000) of each batch item, computed in float64.

    Args:
        y_pred: synthesised / reconstructed images, batch-first ``(B, C, *spatial)``.
        y: reference images, same shape; its channel means are the denominators.
        ratio: pixel-size ratio ``h / l`` of the high- to the low-resolution image; 1 on a shared grid.
        eps: ``None`` raises ValueError when a reference channel has mean 0 (ERGAS is undefined there);
            a positive value instead divides by ``max(|mu_c|, eps)``.

    Returns:
        ``(B, 1)`` tensor in ``y_pred``'s floating dtype (float32 for integer inputs).

    Raises:
        ValueError: shapes differ or have fewer than 3 dimensions, an input is empty or not finite, ``ratio``
            or ``eps`` is invalid, or (``eps=None``) a reference channel has mean 0.
    """
    _check_ratio_eps(ratio, eps)
    if y_pred.shape != y.shape:
        raise ValueError(f"y_pred and y shapes differ: y_pred {tuple(y_pred.shape)}, y {tuple(y.shape)}.")
    if y_pred.ndim < 3:
        raise ValueError(f"inputs need (batch, channel, *spatial) dimensions, got shape {tuple(y_pred.shape)}.")
    _check_values(y_pred, "y_pred")
    _check_values(y, "y")
    pred, ref = y_pred.double(), y.double()
    spatial = tuple(range(2, pred.ndim))
    rmse = (pred - ref).pow(2).mean(dim=spatial).sqrt()  # (B, C)
    mu = ref.mean(dim=spatial).abs()  # (B, C); the sign vanishes in the square
    if eps is None:
        zero = (mu == 0).nonzero()
        if zero.numel():
            b, c = (int(v) for v in zero[0])
            raise ValueError(
                f"reference channel {c} of batch item {b} has mean 0, where ERGAS is undefined; rescale the images "
                "to a positive range or pass eps > 0."
            )
    else:
        mu = mu.clamp_min(eps)
    value = 100.0 * ratio * (rmse / mu).pow(2).mean(dim=1, keepdim=True).sqrt()
    out_dtype = y_pred.dtype if y_pred.is_floating_point() else torch.float32
    return value.to(out_dtype)


def ergas(
    pred: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor, ratio: float = 1.0, eps: float | None = None
) -> float:
    """ERGAS (Wald 2000) of one channel-first image; see :func:`compute_ergas` for the formula and arguments.

    Args:
        pred: synthesised / reconstructed image ``(C, *spatial)`` (add a leading axis to a grayscale image).
        target: reference image of the same shape.
        ratio: pixel-size ratio ``h / l``; 1 when both images share a grid.
        eps: ``None`` raises on a zero-mean reference channel; a positive value floors ``|mu_c|`` at ``eps``.

    Returns:
        ERGAS as a Python float (0 for identical images).
    """
    pred_t, target_t = torch.as_tensor(pred), torch.as_tensor(target)
    if pred_t.shape != target_t.shape:
        raise ValueError(f"pred and target shapes differ: pred {tuple(pred_t.shape)}, target {tuple(target_t.shape)}.")
    if pred_t.ndim < 2:
        raise ValueError(f"pred and target need (channel, *spatial) dimensions, got shape {tuple(pred_t.shape)}.")
    return float(compute_ergas(pred_t[None], target_t[None], ratio=ratio, eps=eps).item())


class ERGASMetric(RegressionMetric):
    """ERGAS (Wald, 2000) between reconstructions and reference images, as a MONAI regression metric.

    ``100 * ratio * sqrt(mean_c (RMSE_c / mu_c)^2)`` per batch item, ``mu_c`` the mean of reference channel
    ``c``. Used to compare CUTS reconstructions with their input images (Liu, Amodio et al.). Inputs are
    batch-first ``(B, C, *spatial)`` tensors or lists of channel-first tensors; each call returns ``(B, 1)``
    and the usage follows :py:class:`monai.metrics.metric.Cumulative`.

    Args:
        ratio: pixel-size ratio ``h / l`` of the high- to the low-resolution image (e.g. 0.25 for 4x
            pan-sharpening); 1 when prediction and reference share a grid. Scales the score linearly.
        eps: ``None`` (default) raises ValueError on a reference channel with mean 0, where ERGAS is undefined;
            a positive value divides by ``max(|mu_c|, eps)`` instead (a bounded but large score).
        reduction: reduction mode, see :py:class:`monai.utils.enums.MetricReduction`; default ``"mean"``.
        get_not_nans: whether ``aggregate()`` also returns the count of not-NaN values.
    """

    def __init__(
        self,
        ratio: float = 1.0,
        eps: float | None = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__(reduction=reduction, get_not_nans=get_not_nans)
        _check_ratio_eps(ratio, eps)
        self.ratio = ratio
        self.eps = eps

    def _compute_metric(self, y_pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return compute_ergas(y_pred, y, ratio=self.ratio, eps=self.eps)

"""A term against parts that copy each other (not in Tursynbek & Niethammer, MICCAI 2023).

The consistency loss (eq. 5) is a k-means objective, and a network descending it can settle where several parts
share one structure: on the brain phantoms six parts became the brain and five near-copies of the background, whose
mean intensities nearly coincide (``benchmarks/part_contents.py``). Splitting the background further costs the
objective nothing, so nothing moves a copy to the tissues it should split. This term penalises pairs of parts with
nearly equal means, so a copy is pushed to take voxels whose values differ.
"""

from __future__ import annotations

import torch
from torch.nn.modules.loss import _Loss

__all__ = ["PartSeparationLoss"]


class PartSeparationLoss(_Loss):
    """(1 / (K (K - 1))) sum_{a != b} exp(-||mu_a - mu_b||^2 / (2 scale^2)), averaged over the batch, where
    mu_k = sum_u M_ku x_u / sum_u M_ku is the soft mean of part k of the values x, each channel divided by its
    standard deviation over the volume. 1 when every part has the same mean, near 0 when any two means are several
    ``scale`` apart; its gradient pushes apart parts whose means lie within a few ``scale`` of each other.

    Args:
        scale: the distance between part means, in standard deviations of the values, below which two parts count
            as copies; > 0.
        eps: floor of the part sizes and of the standard deviations.
    """

    def __init__(self, scale: float = 0.1, eps: float = 1e-6) -> None:
        super().__init__()
        if not scale > 0 or not eps > 0:
            raise ValueError(f"scale and eps must be > 0, got {scale} and {eps}.")
        self.scale, self.eps = scale, eps

    def forward(self, masks: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """The term for soft masks (B, K, *spatial) and the values they are compared by (B, C, *spatial)."""
        if (
            masks.ndim < 3
            or masks.shape[1] < 2
            or values.shape[0] != masks.shape[0]
            or values.shape[2:] != masks.shape[2:]
        ):
            raise ValueError(
                f"masks must be (B, K >= 2, *spatial) and values (B, C, *spatial) of the same B and spatial shape, got "
                f"{tuple(masks.shape)} and {tuple(values.shape)}."
            )
        m, x = masks.flatten(2).float(), values.flatten(2).float()
        x = x / x.detach().std(-1, keepdim=True).clamp_min(self.eps)
        means = torch.einsum("bkn,bcn->bkc", m, x) / m.sum(-1, keepdim=True).clamp_min(self.eps)
        squared = (means[:, :, None] - means[:, None]).pow(2).sum(-1)
        kernel = torch.exp(-squared / (2 * self.scale**2))
        k = masks.shape[1]
        return ((kernel.sum((1, 2)) - k) / (k * (k - 1))).mean()

"""Terms that keep every part of a hierarchy level in use (not in Tursynbek & Niethammer, MICCAI 2023).

The consistency loss of eq. 5 lets a part die: once a part is nobody's most likely part, its masses are tiny and so
is its gradient, and the photometric invariance of eq. 8 (a Dice loss) scores a part empty in both masks as
perfect agreement. These terms reach a dead part without forcing parts to equal size, since a small structure (a
tumour is 0.6-1.3 % of a brain volume) must stay small.
"""

from __future__ import annotations

import torch
from torch.nn.modules.loss import _Loss


def _check_masks(masks: torch.Tensor) -> None:
    if masks.ndim < 3 or masks.shape[1] < 2:
        raise ValueError(f"masks must be (B, K >= 2, *spatial) probabilities, got shape {tuple(masks.shape)}.")


def _check_share(min_share: float) -> None:
    if not 0 < min_share < 1:
        raise ValueError(f"min_share must be in (0, 1), got {min_share}.")


def hard_shares(masks: torch.Tensor) -> torch.Tensor:
    """Per volume, the share of the voxels whose most likely part is k, (B, K), with the straight-through gradient
    of the soft shares (Bengio et al. 2013): the value counts hard assignments, the gradient is that of
    mean_u M_ku, so it reaches a part that holds no voxel."""
    _check_masks(masks)
    m = masks.flatten(2)
    hard = torch.nn.functional.one_hot(m.argmax(1), m.shape[1]).movedim(-1, 1).to(m.dtype)
    return (hard + m - m.detach()).mean(-1)


class PartUsageLoss(_Loss):
    """(1/K) sum_k max(0, s - p_k) / s, with p_k the hard share of part k (``hard_shares``) and s = ``min_share``:
    0 when every part is the most likely part of at least a share s of the volume, (K - 1) / K when all but one part
    are empty; averaged over the batch. Parts above s are free to take any size.

    Args:
        min_share: the share below which a part is pushed to grow, in (0, 1) (default 0.5 %, the share at which the
            evaluation counts a part as used, ``monai_ext.metrics.PartsUsedMetric``).
    """

    def __init__(self, min_share: float = 0.005) -> None:
        super().__init__()
        _check_share(min_share)
        self.min_share = min_share

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        """The term for soft masks (B, K, *spatial) summing to 1 over K."""
        shortfall = torch.relu(self.min_share - hard_shares(masks)) / self.min_share
        return shortfall.mean()


def sinkhorn_knopp(
    log_scores: torch.Tensor,
    part_sizes: torch.Tensor,
    epsilon: float = 1.0,
    num_iters: int = 50,
    tolerance: float = 1e-6,
) -> torch.Tensor:
    """Soft assignments of N voxels to K parts with given part sizes, by Sinkhorn-Knopp in the log domain (Cuturi,
    NeurIPS 2013; as SeLa, Asano et al., ICLR 2020, and SwAV, Caron et al., NeurIPS 2020, balance their clusters).

    Q = N diag(a) exp(log_scores / epsilon) diag(b), with a and b such that every voxel's assignments sum to 1 and part
    k receives N * part_sizes_k voxels in total. As epsilon -> 0, Q tends to the hard assignment of largest total
    score among those with these part sizes.

    Args:
        log_scores: (B, K, N) scores of each part at each voxel (e.g. log-probabilities).
        part_sizes: (B, K) positive shares summing to 1 per volume.
        epsilon: entropic regularisation, > 0.
        num_iters: the most Sinkhorn iterations, >= 1.
        tolerance: stop once no log part scaling changes by more than this in an iteration.

    Returns:
        Q (B, K, N), each column summing to 1.
    """
    if log_scores.ndim != 3 or part_sizes.shape != log_scores.shape[:2]:
        raise ValueError(
            f"log_scores must be (B, K, N) and part_sizes (B, K), got {tuple(log_scores.shape)} and "
            f"{tuple(part_sizes.shape)}."
        )
    if not epsilon > 0 or num_iters < 1:
        raise ValueError(f"epsilon must be > 0 and num_iters >= 1, got {epsilon} and {num_iters}.")
    if (part_sizes <= 0).any() or not torch.allclose(part_sizes.sum(1), part_sizes.new_ones(part_sizes.shape[0])):
        raise ValueError(f"part_sizes must be positive and sum to 1 per volume, got {part_sizes.tolist()}.")
    logits = log_scores / epsilon
    num_voxels = logits.shape[-1]
    log_rows = torch.log(part_sizes)[..., None]  # the mass each part receives (sum over voxels), as shares
    log_column = -torch.log(logits.new_tensor(float(num_voxels)))  # each voxel's mass: 1 / N
    g = torch.zeros_like(logits[:, :1])  # B, 1, N
    f = torch.zeros_like(logits[..., :1])  # B, K, 1
    for _ in range(num_iters):
        previous, f = f, log_rows - torch.logsumexp(logits + g, dim=-1, keepdim=True)
        g = log_column - torch.logsumexp(logits + f, dim=1, keepdim=True)
        if (f - previous).abs().max() < tolerance:  # the part scalings no longer change: both marginals are met
            break
    return torch.exp(logits + f + g) * num_voxels


class BalancedAssignmentLoss(_Loss):
    """Cross-entropy of the masks against their own balanced assignments: -1/N sum_u sum_k Q_ku log M_ku, with
    Q = ``sinkhorn_knopp(log M, r, epsilon)`` computed without gradient (SeLa, Asano et al., ICLR 2020), averaged
    over the batch. The part sizes r are a prior that keeps parts alive without equalising them: each part's hard
    share (the voxels where it is most likely, ``hard_shares``) floored at ``min_share`` and renormalised. With a
    small ``epsilon`` Q is close to a hard assignment (SeLa's lambda = 1 / epsilon), so a part below the floor is
    assigned the voxels where it is most likely up to the floor and is pulled up there, and the other parts keep
    their sizes. (With epsilon = 1 and r the soft shares, Q = M and the gradient is 0, as sum_k grad M_k = 0.)

    Args:
        min_share: the floor of the prior part sizes, in (0, 1/K) for every level it is used on (default 0.5 %, the
            share at which the evaluation counts a part as used).
        epsilon: Sinkhorn's entropic regularisation, > 0 (default 0.02: nearly hard assignments).
        num_iters: Sinkhorn iterations.
        eps: floor of the probabilities inside the logarithm.
    """

    def __init__(
        self, min_share: float = 0.005, epsilon: float = 0.02, num_iters: int = 100, eps: float = 1e-8
    ) -> None:
        super().__init__()
        _check_share(min_share)
        if not epsilon > 0 or num_iters < 1 or not eps > 0:
            raise ValueError(f"need epsilon > 0, num_iters >= 1 and eps > 0, got {epsilon}, {num_iters}, {eps}.")
        self.min_share, self.epsilon, self.num_iters, self.eps = min_share, epsilon, num_iters, eps

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        """The term for soft masks (B, K, *spatial) summing to 1 over K."""
        _check_masks(masks)
        if masks.shape[1] * self.min_share >= 1:
            raise ValueError(f"min_share {self.min_share} leaves no room for {masks.shape[1]} parts.")
        log_m = torch.log(masks.flatten(2).float().clamp_min(self.eps))
        with torch.no_grad():
            sizes = hard_shares(masks).float().clamp_min(self.min_share)
            target = sinkhorn_knopp(log_m, sizes / sizes.sum(1, keepdim=True), self.epsilon, self.num_iters)
        return -(target * log_m).sum(1).mean()

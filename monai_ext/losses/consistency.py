"""Label-free losses of unsupervised structure discovery (Tursynbek & Niethammer, MICCAI 2023, sec. 3)."""

from __future__ import annotations

import itertools
import math

import torch
from monai.losses import DiceLoss
from torch import nn
from torch.nn.modules.loss import _Loss

from monai_ext.flags import as_flag
from monai_ext.losses.part_usage import BalancedAssignmentLoss, PartUsageLoss
from monai_ext.losses.separation import PartSeparationLoss
from monai_ext.networks.upsampled_features import UpsampledFeatures


class ConsistencyLoss(_Loss):
    """Volume-normalised K-means loss of a representation under soft part masks (eq. 5).

    C(h) = 1/N sum_k sum_u M_ku ||z_k - h_u||^2 with z_k = sum_u M_ku h_u / (sum_u M_ku + eps), N the number
    of voxels; averaged over the batch. On the image it is the visual consistency L_v (eq. 7), on diffusion
    features the feature consistency L_f (eq. 6). For one-hot masks it is the K-means objective of the
    partition divided by N.

    With ``normalize=True`` the loss is divided by the total variance of the representation, sum_c Var_u(h_c)
    (per volume): the share of the variance the partition leaves unexplained, in [0, 1] for any scale of h.
    This is not in the paper; it makes the lambdas of eq. 4 weigh image and features alike whatever the feature
    magnitude (with raw features L_f can exceed L_v a thousandfold, so lambda_v = 1 has almost no effect).

    Args:
        eps: added to each part's mass before dividing (the authors' code uses 1e-5), > 0.
        normalize: divide by the representation's total variance (not in the paper; default False); also
            ``"true"`` / ``"false"`` as a bundle's command line passes them (see ``monai_ext.flags.as_flag``).
    """

    def __init__(self, eps: float = 1e-5, normalize: bool | str = False) -> None:
        super().__init__()
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}.")
        self.eps = eps
        self.normalize = as_flag(normalize, "normalize")

    def forward(self, masks: torch.Tensor, representation: torch.Tensor | UpsampledFeatures) -> torch.Tensor:
        """
        Args:
            masks: soft part masks M (B, K, *spatial), non-negative, summing to 1 over K.
            representation: h(x0) (B, C, *spatial) on the same grid, or diffusion features held on their stages'
                grids (``UpsampledFeatures``: the same loss, computed without forming them on this grid).
        """
        shape = tuple(representation.shape)
        if masks.ndim < 3 or masks.shape[0] != shape[0] or tuple(masks.shape[2:]) != shape[2:]:
            raise ValueError(
                f"masks (B, K, *spatial) and representation (B, C, *spatial) must share batch and spatial shape, "
                f"got {tuple(masks.shape)} and {shape}."
            )
        m = masks.flatten(2).float()  # B, K, N
        mass = m.sum(-1)  # B, K
        # C is invariant to a shift of h (up to eps); centring keeps the expanded form below accurate in float32
        if isinstance(representation, UpsampledFeatures):
            sums = representation.centred_part_sums(masks)
            # the masks sum to 1 over K, so sum_u (sum_k M_ku) ||h_u||^2 is the total sum of squares
            sum_of_squares = spread = representation.centred_sum_of_squares()
        else:
            h = representation.flatten(2).float()  # B, C, N
            h = h - h.mean(-1, keepdim=True)
            sums = torch.einsum("bkn,bcn->bkc", m, h)  # sum_u M_ku h_u
            squared = h.pow(2).sum(1)
            sum_of_squares, spread = squared.sum(-1), (m.sum(1) * squared).sum(-1)
        centres = sums / (mass[..., None] + self.eps)  # z_k
        # sum_k sum_u M_ku ||h_u - z_k||^2 expanded, so no (K, C, N) tensor is formed or kept for backward:
        # sum_u (sum_k M_ku) ||h_u||^2 - 2 sum_k z_k . (sum_u M_ku h_u) + sum_k (sum_u M_ku) ||z_k||^2
        total = spread - 2.0 * (centres * sums).sum((1, 2)) + (mass * centres.pow(2).sum(-1)).sum(-1)
        num_voxels = m.shape[-1]
        loss = total / num_voxels
        if self.normalize:  # the total variance sum_c Var_u(h_c) is the centred sum of squares over N
            loss = loss / (sum_of_squares / num_voxels + self.eps)
        return loss.mean()


class PhotometricInvarianceLoss(_Loss):
    """Dice loss between the masks of an image and of its photometric transform (Tursynbek & Niethammer,
    MICCAI 2023, eq. 8, L_inv).

    L_inv = 1 - 1/K sum_k 2 sum_u f(x)_ku f(T(x))_ku / (sum_u f(x)_ku^2 + sum_u f(T(x))_ku^2), computed with
    MONAI's ``DiceLoss`` on probabilities (no activation, background included, squared denominator) and
    averaged over the batch.
    """

    def __init__(self) -> None:
        super().__init__()
        self.dice = DiceLoss(include_background=True, squared_pred=True, reduction="mean")

    def forward(self, masks: torch.Tensor, masks_transformed: torch.Tensor) -> torch.Tensor:
        """L_inv of two batches of soft masks (B, K, *spatial), each summing to 1 over K."""
        if masks.shape != masks_transformed.shape:
            raise ValueError(f"mask shapes differ: {tuple(masks.shape)} and {tuple(masks_transformed.shape)}.")
        return self.dice(masks, masks_transformed)


class NestingLoss(_Loss):
    """Normalised conditional entropy of the coarse part given the fine part, H(coarse | fine) / log K_coarse: how
    much the fine parts of a hierarchy straddle the coarse parts' boundaries (not in the paper).

    With P_jk = 1/N sum_u F_ju C_ku the joint share of fine part j and coarse part k over the N voxels and
    P_j = sum_k P_jk, H = -sum_jk P_jk log(P_jk / P_j). For hard masks it is 0 exactly when every fine part lies
    inside one coarse part (the nesting ``hierarchy.json`` reports), and 1 when every fine part spreads evenly over
    all coarse parts; averaged over the batch.

    Args:
        eps: floor of the shares inside the logarithm, > 0.
    """

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        if not eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}.")
        self.eps = eps

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
        """
        Args:
            coarse: soft masks of the coarser level (B, K_c, *spatial), summing to 1 over K_c (K_c >= 2).
            fine: soft masks of the finer level (B, K_f, *spatial) on the same grid.
        """
        same_grid = coarse.shape[0] == fine.shape[0] and coarse.shape[2:] == fine.shape[2:]
        if coarse.ndim < 3 or coarse.shape[1] < 2 or not same_grid:
            raise ValueError(
                f"coarse (B, K_c >= 2, *spatial) and fine (B, K_f, *spatial) masks must share batch and spatial "
                f"shape, got {tuple(coarse.shape)} and {tuple(fine.shape)}."
            )
        c = coarse.flatten(2).float()  # B, Kc, N
        f = fine.flatten(2).float()  # B, Kf, N
        joint = torch.einsum("bjn,bkn->bjk", f, c) / c.shape[-1]  # P_jk
        fine_share = joint.sum(-1, keepdim=True)  # P_j
        log_conditional = torch.log(joint.clamp_min(self.eps)) - torch.log(fine_share.clamp_min(self.eps))
        entropy = -(joint * log_conditional).sum((1, 2))
        return (entropy / math.log(c.shape[1])).mean()


class DiscoveryLoss(nn.Module):
    """L = lambda_v L_v + lambda_f L_f + lambda_inv L_inv (Tursynbek & Niethammer, MICCAI 2023, eq. 4), summed
    over hierarchy levels, plus (not in the paper, 0 by default) lambda_nest times the ``NestingLoss`` of each pair
    of consecutive levels and, at every level, lambda_usage times the ``PartUsageLoss`` and lambda_balance times the
    ``BalancedAssignmentLoss`` (terms that keep every part in use, ``monai_ext.losses.part_usage``) and
    lambda_separation times the ``PartSeparationLoss`` of the masks on the visual target (no two parts copies).

    Args:
        lambda_v: weight of the visual consistency C(x0) (eq. 7), >= 0.
        lambda_f: weight of the feature consistency C(phi(x0)) (eq. 6), >= 0.
        lambda_inv: weight of the photometric invariance (eq. 8), >= 0.
        lambda_nest: weight of the nesting term between consecutive levels (not in the paper), >= 0.
        eps: see ``ConsistencyLoss``.
        normalize: see ``ConsistencyLoss`` (not in the paper); checked there.
        lambda_usage: weight of the part-usage term (not in the paper), >= 0.
        lambda_balance: weight of the balanced-assignment term (not in the paper), >= 0.
        min_share: the share of a volume below which both terms make a part grow (see ``PartUsageLoss``).
        lambda_separation: weight of the part-separation term (not in the paper), >= 0.
    """

    def __init__(
        self,
        lambda_v: float = 1.0,
        lambda_f: float = 1.0,
        lambda_inv: float = 1.0,
        eps: float = 1e-5,
        normalize: bool | str = False,
        lambda_nest: float = 0.0,
        lambda_usage: float = 0.0,
        lambda_balance: float = 0.0,
        min_share: float = 0.005,
        lambda_separation: float = 0.0,
    ) -> None:
        super().__init__()
        self.lambda_v, self.lambda_f, self.lambda_inv, self.lambda_nest = lambda_v, lambda_f, lambda_inv, lambda_nest
        self.lambda_usage, self.lambda_balance, self.lambda_separation = lambda_usage, lambda_balance, lambda_separation
        if any(not w >= 0 for w in self.weights.values()) or not any(self.weights.values()):
            named = {f"lambda_{name}": weight for name, weight in self.weights.items()}
            raise ValueError(f"loss weights must be >= 0 with at least one positive, got {named}.")
        self.consistency = ConsistencyLoss(eps, normalize)
        self.invariance = PhotometricInvarianceLoss()
        self.nesting = NestingLoss()
        self.usage = PartUsageLoss(min_share)
        self.balance = BalancedAssignmentLoss(min_share)
        self.separation = PartSeparationLoss()

    @property
    def weights(self) -> dict[str, float]:
        """Each term's weight, keyed by the name of the term (``loss_<name>`` in the returned terms)."""
        return {
            "v": self.lambda_v,
            "f": self.lambda_f,
            "inv": self.lambda_inv,
            "nest": self.lambda_nest,
            "usage": self.lambda_usage,
            "balance": self.lambda_balance,
            "separation": self.lambda_separation,
        }

    def forward(
        self,
        masks: list[torch.Tensor],
        masks_transformed: list[torch.Tensor] | None,
        image: torch.Tensor,
        features: list[torch.Tensor | UpsampledFeatures | None],
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """
        Args:
            masks: per level, the soft masks (B, K_l, *spatial) of the image.
            masks_transformed: per level, the masks of the photometrically transformed image (needed when
                ``lambda_inv > 0``).
            image: the image term's target (B, C, *spatial): x0 in the paper, or a denoised x0.
            features: per level, phi(x0) (B, C_l, *spatial) or ``UpsampledFeatures`` (needed when ``lambda_f > 0``).

        Returns:
            the total loss and its terms (summed over levels) as floats, for logging.
        """
        terms = {f"loss_{name}": image.new_zeros(()) for name in self.weights}
        for level, m in enumerate(masks):
            if self.lambda_v:
                terms["loss_v"] = terms["loss_v"] + self.consistency(m, image)
            if self.lambda_f:
                terms["loss_f"] = terms["loss_f"] + self.consistency(m, features[level])
            if self.lambda_inv:
                terms["loss_inv"] = terms["loss_inv"] + self.invariance(m, masks_transformed[level])
            if self.lambda_usage:
                terms["loss_usage"] = terms["loss_usage"] + self.usage(m)
            if self.lambda_balance:
                terms["loss_balance"] = terms["loss_balance"] + self.balance(m)
            if self.lambda_separation:
                terms["loss_separation"] = terms["loss_separation"] + self.separation(m, image)
        if self.lambda_nest:
            for coarse, fine in itertools.pairwise(masks):
                terms["loss_nest"] = terms["loss_nest"] + self.nesting(coarse, fine)
        total = sum(weight * terms[f"loss_{name}"] for name, weight in self.weights.items())
        return total, {name: float(value.detach()) for name, value in terms.items()}

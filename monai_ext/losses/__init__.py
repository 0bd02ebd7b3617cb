"""Losses: the consistency (volume-normalised K-means) and photometric-invariance losses of discovery, and the terms
that keep its parts in use (part usage, balanced assignment by Sinkhorn-Knopp); the hybrid
DDPM loss of the segmentation diffusion model; the CUTS patch contrastive + reconstruction objective."""

from monai_ext.losses.consistency import (
    ConsistencyLoss,
    DiscoveryLoss,
    NestingLoss,
    PhotometricInvarianceLoss,
)
from monai_ext.losses.contrastive import CUTSLoss, nt_xent, pixel_patches
from monai_ext.losses.hybrid_diffusion import HybridDiffusionLoss
from monai_ext.losses.part_usage import BalancedAssignmentLoss, PartUsageLoss, hard_shares, sinkhorn_knopp
from monai_ext.losses.separation import PartSeparationLoss

__all__ = [
    "BalancedAssignmentLoss",
    "CUTSLoss",
    "ConsistencyLoss",
    "DiscoveryLoss",
    "HybridDiffusionLoss",
    "NestingLoss",
    "PartSeparationLoss",
    "PartUsageLoss",
    "PhotometricInvarianceLoss",
    "hard_shares",
    "nt_xent",
    "pixel_patches",
    "sinkhorn_knopp",
]

"""Losses: the consistency (volume-normalised K-means) and photometric-invariance losses of discovery; the hybrid
DDPM loss of the segmentation diffusion model; the CUTS patch contrastive + reconstruction objective."""

from monai_ext.losses.consistency import (
    ConsistencyLoss,
    DiscoveryLoss,
    NestingLoss,
    PhotometricInvarianceLoss,
)
from monai_ext.losses.contrastive import CUTSLoss, nt_xent, pixel_patches
from monai_ext.losses.hybrid_diffusion import HybridDiffusionLoss

__all__ = [
    "CUTSLoss",
    "ConsistencyLoss",
    "DiscoveryLoss",
    "HybridDiffusionLoss",
    "NestingLoss",
    "PhotometricInvarianceLoss",
    "nt_xent",
    "pixel_patches",
]

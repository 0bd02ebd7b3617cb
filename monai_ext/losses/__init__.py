"""Losses: the consistency (volume-normalised K-means) and photometric-invariance losses of discovery; the hybrid
DDPM loss of the segmentation diffusion model."""

from monai_ext.losses.consistency import (
    ConsistencyLoss,
    DiscoveryLoss,
    NestingLoss,
    PhotometricInvarianceLoss,
)
from monai_ext.losses.hybrid_diffusion import HybridDiffusionLoss

__all__ = ["ConsistencyLoss", "DiscoveryLoss", "HybridDiffusionLoss", "NestingLoss", "PhotometricInvarianceLoss"]

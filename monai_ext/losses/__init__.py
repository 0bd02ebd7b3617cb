"""Losses: the consistency (volume-normalised K-means) and photometric-invariance losses of discovery."""

from monai_ext.losses.consistency import (
    ConsistencyLoss,
    DiscoveryLoss,
    NestingLoss,
    PhotometricInvarianceLoss,
)

__all__ = ["ConsistencyLoss", "DiscoveryLoss", "NestingLoss", "PhotometricInvarianceLoss"]

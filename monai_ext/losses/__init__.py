"""Losses: the consistency (volume-normalised K-means) and photometric-invariance losses of discovery."""

from monai_ext.losses.consistency import ConsistencyLoss, DiscoveryLoss, PhotometricInvarianceLoss

__all__ = ["ConsistencyLoss", "DiscoveryLoss", "PhotometricInvarianceLoss"]

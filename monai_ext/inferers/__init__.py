"""Inferers: diffusion sampling (DDIM) and held-out denoising evaluation."""

from monai_ext.inferers.diffusion import DenoisingInferer, DiffusionSamplingInferer

__all__ = ["DenoisingInferer", "DiffusionSamplingInferer"]

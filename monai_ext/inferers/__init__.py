"""Inferers: diffusion sampling and denoising evaluation, feature inferers, ensemble sampling."""

from monai_ext.inferers.diffusion import DenoisingInferer, DiffusionSamplingInferer

__all__ = ["DenoisingInferer", "DiffusionSamplingInferer"]

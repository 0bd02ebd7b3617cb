"""Inferers: diffusion sampling (DDIM), held-out denoising evaluation, implicit segmentation ensembles."""

from monai_ext.inferers.diffusion import DenoisingInferer, DiffusionSamplingInferer
from monai_ext.inferers.ensemble import DiffusionEnsembleInferer, MonteCarloDropoutInferer

__all__ = ["DenoisingInferer", "DiffusionEnsembleInferer", "DiffusionSamplingInferer", "MonteCarloDropoutInferer"]

"""Baselines that use only the pretrained diffusion model: k-means on its features, k-means on its x0 prediction.

They need no segmentation training, so they bound what structure discovery adds on top of the diffusion model
(issue 9): k-means on the decoder features the segmenter is trained on (Tursynbek & Niethammer, MICCAI 2023,
Table 3, "Features k-means"), and k-means on the model's own denoising of the image (x0 prediction at a small t,
averaged over noise draws).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from monai_ext.bundle import diffusion_model
from monai_ext.networks import DiffusionDenoiser, DiffusionFeatureExtractor


@dataclass(frozen=True)
class DiffusionBaselines:
    """Where the diffusion model is, and how its baselines read it; the models are built only by :meth:`build`,
    so a bundle config can name them without loading any weights unless the baselines run.

    Args:
        bundle: folder of the bundle whose configs define the diffusion U-Net (``network_def``) and ``scheduler``.
        configs: those config files, relative to ``bundle``, layered in order.
        ckpt: the U-Net's weights (a plain state dict).
        image_size: grid the U-Net runs at (None: each volume's own).
        feature_stages: decoder stages whose features k-means clusters (1 = lowest resolution).
        feature_timestep: noise timestep of the features (paper: 25).
        x0_timestep: noise timestep of the x0 prediction.
        num_draws: noise draws averaged, for the features and for the x0 prediction.
    """

    bundle: str
    configs: Sequence[str]
    ckpt: str
    image_size: Sequence[int] | None = None
    feature_stages: Sequence[int] = (3,)
    feature_timestep: int = 25
    x0_timestep: int = 50
    num_draws: int = 8

    def build(self, device: str | torch.device = "cpu") -> tuple[DiffusionFeatureExtractor, DiffusionDenoiser]:
        """Load the U-Net once and return the feature extractor and the denoiser that share it."""
        unet, scheduler = diffusion_model(self.bundle, self.configs, self.ckpt, device)
        extractor = DiffusionFeatureExtractor(
            unet, scheduler, self.feature_stages, self.feature_timestep, self.num_draws, self.image_size
        )
        denoiser = DiffusionDenoiser(unet, scheduler, self.x0_timestep, self.num_draws, self.image_size)
        return extractor, denoiser

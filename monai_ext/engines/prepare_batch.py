"""Prepare-batch callables for diffusion training with MONAI's engines."""

from __future__ import annotations

import torch
from monai.engines import DiffusionPrepareBatch


class SamplePredictionPrepareBatch(DiffusionPrepareBatch):
    """Noise the image at a random timestep and make the clean image x0 the regression target.

    Tursynbek & Niethammer (MICCAI 2023, sec. 4.2) train the diffusion U-Net to predict x0 directly, with an
    L1 loss between prediction and clean image; pair this with ``DDPMScheduler(prediction_type="sample")``
    and ``monai.inferers.DiffusionInferer``, which noises the input with the ``noise`` and ``timesteps``
    this class passes on (Ho et al., NeurIPS 2020, eq. 4: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps).

    Args:
        num_train_timesteps: T, the number of diffusion steps; timesteps are drawn from [0, T).
        condition_name: optional batch key of a conditioning image (see ``DiffusionPrepareBatch``).
    """

    def __init__(self, num_train_timesteps: int, condition_name: str | None = None) -> None:
        if num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be >= 1, got {num_train_timesteps}.")
        super().__init__(num_train_timesteps=num_train_timesteps, condition_name=condition_name)

    def get_target(self, images: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The clean image x0: the network predicts the sample, not the noise."""
        return images

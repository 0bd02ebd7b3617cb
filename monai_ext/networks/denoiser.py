"""The clean image a pretrained diffusion U-Net predicts from a noised copy: x0 prediction as a denoiser."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import Scheduler

from monai_ext.networks.frozen_diffusion import FrozenDiffusionUNet
from monai_ext.schedulers import predicted_x0


class DiffusionDenoiser(FrozenDiffusionUNet):
    """Denoise an image with a frozen diffusion U-Net: noise it to timestep t, predict x0, average over draws.

    The image x0 (min-max scaled to [0, 1]) is mapped to [-1, 1] and resized to ``input_size`` as for
    :class:`~monai_ext.networks.DiffusionFeatureExtractor`, noised to x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps,
    and the U-Net's prediction of x0 (:func:`monai_ext.schedulers.predicted_x0`) is mapped back to the [0, 1]
    scale (not clipped) at the input size. The mean over ``num_draws`` noise draws is returned: a label-free
    denoiser built from the pretrained generative model alone (issue 9's "x0 prediction + k-means" baseline).

    Args:
        unet: a trained ``DiffusionModelUNet`` (frozen here: eval mode, no gradients).
        scheduler: the scheduler it was trained with.
        timestep: diffusion timestep t of the noise, in [0, T) (default 50).
        num_draws: noise draws averaged (>= 1, default 8).
        input_size: spatial size the U-Net runs at (None: the input's size).
        seed: seed of the noise draws (None: the global random state).
        padding: reflect padding of the noised input, cropped from the prediction (see ``FrozenDiffusionUNet``).
    """

    def __init__(
        self,
        unet: DiffusionModelUNet,
        scheduler: Scheduler,
        timestep: int = 50,
        num_draws: int = 8,
        input_size: Sequence[int] | None = None,
        seed: int | None = 0,
        padding: int = 0,
    ) -> None:
        super().__init__(unet, scheduler, timestep, num_draws, input_size, padding)
        self.seed = seed

    @torch.no_grad()
    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """Denoised images (B, C, *spatial), on the [0, 1] scale, from images ``x0`` of that shape in [0, 1]."""
        size = tuple(x0.shape[2:])
        x = self.unet_input(x0)
        generator = None if self.seed is None else torch.Generator(device=x.device).manual_seed(self.seed)
        timesteps = torch.full((x.shape[0],), self.timestep, device=x.device, dtype=torch.long)
        total = torch.zeros_like(x)
        for _ in range(self.num_draws):
            noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x_t = self.pad(self.scheduler.add_noise(original_samples=x, noise=noise, timesteps=timesteps))
            x0_hat = predicted_x0(self.scheduler, self.unet(x_t, timesteps=timesteps), x_t, timesteps)
            total += self.crop(x0_hat, x_t.shape[2:])
        mean = total / self.num_draws
        if tuple(mean.shape[2:]) != size:
            mean = F.interpolate(mean, size=size, mode="trilinear" if mean.ndim == 5 else "bilinear")
        return (mean + 1.0) / 2.0

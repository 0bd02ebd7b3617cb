"""What the diffusion feature extractor and the diffusion denoiser share: a frozen U-Net fed noised clean images."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import Scheduler
from torch import nn


class FrozenDiffusionUNet(nn.Module):
    """A trained diffusion U-Net kept frozen (eval mode, no gradients), run on clean images noised to one timestep.

    Args:
        unet: a trained ``DiffusionModelUNet``.
        scheduler: the scheduler it was trained with (provides ``add_noise``).
        timestep: diffusion timestep t of the noise, in [0, T).
        num_draws: noise draws averaged per call (>= 1).
        input_size: spatial size the U-Net runs at; inputs of another size are resized to it. None runs at the
            input size.
        padding: voxels of reflect padding added on every side of the noised input before the U-Net runs, and
            cropped from its outputs (not in the paper: zero padding inside the U-Net makes the outputs near the
            volume's faces differ from those inside, which a segmenter trained on them learns as a part of its
            own); a multiple of the U-Net's largest downsampling factor, 2^(number of down blocks - 1). 0: none.
    """

    def __init__(
        self,
        unet: DiffusionModelUNet,
        scheduler: Scheduler,
        timestep: int,
        num_draws: int = 1,
        input_size: Sequence[int] | None = None,
        padding: int = 0,
    ) -> None:
        super().__init__()
        if not 0 <= timestep < scheduler.num_train_timesteps:
            raise ValueError(f"timestep must be in [0, {scheduler.num_train_timesteps}), got {timestep}.")
        if num_draws < 1:
            raise ValueError(f"num_draws must be >= 1, got {num_draws}.")
        self.unet = unet.eval().requires_grad_(False)
        self.scheduler = scheduler
        self.timestep = timestep
        self.num_draws = num_draws
        self.input_size = tuple(input_size) if input_size is not None else None
        self.downsampling = 2 ** (len(unet.down_blocks) - 1)
        if isinstance(padding, bool) or not isinstance(padding, int) or padding < 0 or padding % self.downsampling:
            raise ValueError(
                f"padding (bundle config id feature_padding) must be an integer >= 0 and a multiple of "
                f"{self.downsampling} (the U-Net's largest downsampling factor), got {padding!r}."
            )
        self.padding = padding

    def train(self, mode: bool = True) -> FrozenDiffusionUNet:
        """The U-Net stays in eval mode: it is frozen."""
        super().train(mode)
        self.unet.eval()
        return self

    def unet_input(self, x0: torch.Tensor) -> torch.Tensor:
        """x0 in [0, 1] mapped to [-1, 1] and resized to ``input_size``: what the U-Net (and its noise) sees."""
        x = 2.0 * x0.float() - 1.0
        if self.input_size is not None and tuple(x.shape[2:]) != self.input_size:
            x = F.interpolate(x, size=self.input_size, mode="trilinear" if x.ndim == 5 else "bilinear")
        return x

    def pad(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, *spatial) with ``padding`` voxels of reflection on every side."""
        if not self.padding:
            return x
        if min(x.shape[2:]) <= self.padding:
            raise ValueError(
                f"padding {self.padding} needs every spatial size of the U-Net input above it, "
                f"got {tuple(x.shape[2:])}."
            )
        return F.pad(x, [self.padding] * 2 * (x.ndim - 2), mode="reflect")

    def crop(self, output: torch.Tensor, padded_size: Sequence[int]) -> torch.Tensor:
        """An output of the U-Net run on a padded input of ``padded_size``, on any grid of it (a decoder stage's
        or the input's), with the padding removed: ``padding`` voxels scaled to that grid on every side."""
        if not self.padding:
            return output
        index = [slice(None), slice(None)]
        for size, full in zip(output.shape[2:], padded_size, strict=True):
            margin = self.padding * size // full
            index.append(slice(margin, size - margin))
        return output[tuple(index)]

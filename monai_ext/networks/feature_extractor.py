"""Voxel features from the decoder of a pretrained diffusion U-Net (Tursynbek & Niethammer, MICCAI 2023, Fig. 1)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import Scheduler
from torch import nn

from monai_ext.networks.frozen_diffusion import FrozenDiffusionUNet
from monai_ext.networks.upsampled_features import UpsampledFeatures


class DiffusionFeatureExtractor(FrozenDiffusionUNet):
    """Noise a clean image to timestep t, run a frozen diffusion U-Net and read its decoder stages.

    The clean image x0 (min-max scaled to [0, 1]) is mapped to [-1, 1], noised with eq. 2 of the paper,
    x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, and passed through the U-Net. Forward hooks record the
    activations of the chosen decoder stages, which are upsampled trilinearly to the input size and
    concatenated along channels: the p-dimensional feature map phi(x0) of eq. 6.

    Stage s is ``unet.up_blocks[s - 1]``: stage 1 is the lowest-resolution decoder stage, the last stage the
    highest. A stage's activations are read after its residual and attention blocks and before its upsampling
    (as in the authors' code); the final stage, which has no upsampling, is read at its output. With MONAI's
    four-level U-Net on a 64^3 input, stages 1 / 2 / 3 sit on 8^3 / 16^3 / 32^3 grids, the three stages the
    paper uses for K = 2 / 4 / 8.

    Args:
        unet: a trained ``DiffusionModelUNet`` (frozen here: eval mode, no gradients).
        scheduler: the scheduler it was trained with (provides ``add_noise``).
        stages: decoder stages to read, each in 1 .. len(unet.up_blocks).
        timestep: diffusion timestep t of the noise, in [0, T) (paper: 25).
        num_draws: noise draws averaged per call (>= 1).
        input_size: spatial size the U-Net runs at; inputs of another size are resized trilinearly to it
            and the features brought back to the input size. None runs at the input size.
        padding: reflect padding of the noised input, cropped from every stage (see ``FrozenDiffusionUNet``; not
            in the paper). 0: none.
    """

    def __init__(
        self,
        unet: DiffusionModelUNet,
        scheduler: Scheduler,
        stages: Sequence[int] = (1,),
        timestep: int = 25,
        num_draws: int = 1,
        input_size: Sequence[int] | None = None,
        padding: int = 0,
    ) -> None:
        num_stages = len(unet.up_blocks)
        stages = [int(s) for s in stages]
        if not stages or any(not 1 <= s <= num_stages for s in stages):
            raise ValueError(
                f"stages (bundle config id feature_stages) must be decoder stages in 1..{num_stages} of this U-Net "
                f"(1 = lowest resolution, {num_stages} = highest), got {stages}."
            )
        super().__init__(unet, scheduler, timestep, num_draws, input_size, padding)
        self.stages = stages
        self._recorded: dict[int, torch.Tensor] = {}
        for stage in sorted(set(stages)):
            self._hook(stage)

    def _hook(self, stage: int) -> None:
        block = self.unet.up_blocks[stage - 1]

        def record_input(_module: nn.Module, args: tuple) -> None:
            self._recorded[stage] = args[0]

        def record_output(_module: nn.Module, _args: tuple, output: torch.Tensor) -> None:
            self._recorded[stage] = output

        if block.upsampler is not None:
            block.upsampler.register_forward_pre_hook(record_input)
        else:
            block.register_forward_hook(record_output)

    @property
    def channels(self) -> list[int]:
        """Channel count of each selected stage (in ``stages`` order)."""
        out = self.unet.block_out_channels[::-1]
        return [out[s - 1] for s in self.stages]

    @torch.no_grad()
    def native(self, x0: torch.Tensor, noise: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
        """Stage activations of one noise draw, on the stages' own grids, keyed by stage.

        Args:
            x0: clean images (B, C, *spatial) in [0, 1].
            noise: optional noise of the U-Net's input shape (default: fresh Gaussian noise).
        """
        x = self.unet_input(x0)
        noise = torch.randn_like(x) if noise is None else noise.to(x)
        if noise.shape != x.shape:
            raise ValueError(f"noise has shape {tuple(noise.shape)}, the U-Net input {tuple(x.shape)}.")
        timesteps = torch.full((x.shape[0],), self.timestep, device=x.device, dtype=torch.long)
        x_t = self.pad(self.scheduler.add_noise(original_samples=x, noise=noise, timesteps=timesteps))
        self._recorded.clear()
        try:
            self.unet(x_t, timesteps=timesteps)
        except RuntimeError as error:
            raise ValueError(
                f"the diffusion U-Net cannot run on input of shape {tuple(x.shape)}: {error}. Its spatial size must "
                f"divide by 2^(levels - 1); set input_size."
            ) from error
        return {s: self.crop(self._recorded[s], x_t.shape[2:]) for s in self.stages}

    @torch.no_grad()
    def native_mean(self, x0: torch.Tensor, generator: torch.Generator | None = None) -> dict[int, torch.Tensor]:
        """Stage activations averaged over ``num_draws`` fresh noise draws, drawn with ``generator`` (a CPU
        generator; None: the global random state)."""
        if generator is None:
            noises = [None] * self.num_draws
        else:  # the U-Net input's shape, computed only when the noise is drawn here
            shape = tuple(self.unet_input(x0).shape)
            noises = [torch.randn(shape, generator=generator) for _ in range(self.num_draws)]
        draws = [self.native(x0, noise) for noise in noises]
        return {s: torch.stack([d[s] for d in draws]).mean(0) for s in self.stages}

    @staticmethod
    def upsample(stage_features: Sequence[torch.Tensor], size: Sequence[int]) -> torch.Tensor:
        """Resize each stage's activations to ``size`` (trilinear / bilinear) and concatenate along channels."""
        return UpsampledFeatures(stage_features, size).dense()

    @torch.no_grad()
    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        """phi(x0): features (B, sum of stage channels, *spatial of x0), averaged over ``num_draws`` draws."""
        native = self.native_mean(x0)
        return self.upsample([native[s] for s in self.stages], x0.shape[2:])

"""Inferers that run a whole diffusion procedure inside one ``inferer(inputs, network)`` call.

MONAI Label and MONAI's evaluators call ``inferer(inputs, network)``; a sampler or a multi-timestep evaluation
must therefore be an ``Inferer`` that does all its steps inside that call.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.data import MetaTensor
from monai.inferers import DiffusionInferer, Inferer
from monai.networks.schedulers import Scheduler

from monai_ext.flags import as_flag


class DiffusionSamplingInferer(Inferer):
    """Turn noise x_T into samples x_0 with a scheduler's reverse process (DDPM, or DDIM with fewer steps).

    Args:
        scheduler: a MONAI scheduler (``DDIMScheduler`` for fast sampling, Song et al., ICLR 2021).
        num_inference_steps: reverse steps (set on the scheduler); None keeps the scheduler's own.
        progress: show a progress bar over the steps (also ``"true"`` / ``"false"`` from a command line).
    """

    def __init__(
        self, scheduler: Scheduler, num_inference_steps: int | None = None, progress: bool | str = True
    ) -> None:
        super().__init__()
        if num_inference_steps is not None and not 1 <= num_inference_steps <= scheduler.num_train_timesteps:
            raise ValueError(
                f"num_inference_steps must be between 1 and {scheduler.num_train_timesteps}, got {num_inference_steps}."
            )
        self.scheduler = scheduler
        self.num_inference_steps = num_inference_steps
        self.progress = as_flag(progress, "progress")

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args, **kwargs) -> torch.Tensor:
        """Sample from the noise ``inputs`` (B, C, *spatial) with ``network``."""
        if self.num_inference_steps is not None:
            self.scheduler.set_timesteps(self.num_inference_steps, device=inputs.device)
        return DiffusionInferer(self.scheduler).sample(
            input_noise=inputs, diffusion_model=network, scheduler=self.scheduler, verbose=self.progress
        )


class DenoisingInferer(Inferer):
    """One-step denoising of clean images noised at fixed timesteps, for a held-out denoising error.

    For each timestep t, x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps (Ho et al., NeurIPS 2020, eq. 4) with
    noise from a seeded generator, and the network's x0 prediction is returned; the predictions for all
    timesteps are stacked along the channel axis, in the order of ``timesteps``.

    Args:
        scheduler: the training scheduler (its ``prediction_type`` must be ``"sample"``).
        timesteps: timesteps at which to evaluate, each in [0, T).
        seed: seed of the noise, so that repeated evaluations compare like with like.
    """

    def __init__(self, scheduler: Scheduler, timesteps: Sequence[int] = (25, 100, 200), seed: int = 0) -> None:
        super().__init__()
        if getattr(scheduler, "prediction_type", "sample") != "sample":
            raise ValueError(
                f"the scheduler must predict x0 (prediction_type='sample'), got {scheduler.prediction_type}."
            )
        if not timesteps or not all(0 <= t < scheduler.num_train_timesteps for t in timesteps):
            raise ValueError(
                f"timesteps must be a non-empty list in [0, {scheduler.num_train_timesteps}), got {timesteps}."
            )
        self.scheduler = scheduler
        self.timesteps = [int(t) for t in timesteps]
        self.seed = seed

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args, **kwargs) -> torch.Tensor:
        """x0 predictions from ``inputs`` (B, C, *spatial) noised to each timestep, stacked along channels."""
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        predictions = []
        for t in self.timesteps:
            noise = torch.randn(inputs.shape, generator=generator).to(inputs)
            timesteps = torch.full((inputs.shape[0],), t, device=inputs.device, dtype=torch.long)
            noisy = self.scheduler.add_noise(original_samples=inputs, noise=noise, timesteps=timesteps)
            predictions.append(network(noisy, timesteps=timesteps))
        return torch.cat(predictions, dim=1)


def noise_datalist(
    num_samples: int, shape: Sequence[int], seed: int = 0, key: str = "image", prefix: str = "sample"
) -> list[dict[str, MetaTensor]]:
    """A datalist of seeded standard Gaussian noise images x_T, the inputs of a sampling run.

    Item ``i`` is drawn from a generator seeded with ``seed + i``, so a sample does not depend on
    ``num_samples`` or the batch size, and is named ``{prefix}_{i:03d}`` (its ``filename_or_obj``), which
    ``SaveImaged(output_postfix="", separate_folder=False)`` turns into ``{prefix}_{i:03d}.nii.gz``.

    Args:
        num_samples: number of noise images, >= 1.
        shape: channel-first shape of one image, e.g. ``[1, 48, 48, 48]``.
        seed: seed of the first image.
        key: dictionary key of the image.
        prefix: file name prefix of the samples.

    Raises:
        ValueError: ``num_samples`` < 1, or ``shape`` is not a channel count followed by positive spatial sizes.
    """
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}.")
    if len(shape) < 2 or not all(int(s) >= 1 for s in shape):
        raise ValueError(f"shape must be (channels, *spatial) with positive sizes, got {tuple(shape)}.")
    size = [int(s) for s in shape]
    items = []
    for i in range(num_samples):
        generator = torch.Generator(device="cpu").manual_seed(seed + i)
        noise = torch.randn(size, generator=generator)
        items.append({key: MetaTensor(noise, meta={"filename_or_obj": f"{prefix}_{i:03d}"})})
    return items

"""Implicit segmentation ensembles: several masks sampled from one conditional DDPM (Wolleb et al., MIDL 2022)."""

from __future__ import annotations

import torch
from monai.inferers import Inferer
from monai.networks.schedulers import DDIMScheduler, Scheduler
from tqdm.auto import tqdm

from monai_ext.flags import as_flag

ENSEMBLE_MAPS = ("pred", "mean", "variance")  # the channel blocks before the samples, in order


def mask_to_signal(mask: torch.Tensor) -> torch.Tensor:
    """A {0, 1} mask as the diffused signal in {-1, 1}."""
    return mask.float() * 2.0 - 1.0


def signal_to_probability(signal: torch.Tensor) -> torch.Tensor:
    """A sampled signal mapped back to [0, 1] (the inverse of ``mask_to_signal``, clipped)."""
    return ((signal + 1.0) / 2.0).clamp(0.0, 1.0)


class DiffusionEnsembleInferer(Inferer):
    """Sample n masks for each image from a mask DDPM conditioned on the image, in one batched reverse process.

    Wolleb et al. (MIDL 2022, sec. 2, Fig. 2): sampling starts from noise in the mask channels and concatenates
    the image at every step; repeating it gives an implicit ensemble whose pixel-wise mean, thresholded at 0.5,
    is the segmentation and whose pixel-wise variance is the uncertainty map. All n samples of all images go
    through the network as one batch, so an ensemble costs one batched sampling run.

    ``inferer(inputs, network)`` (MONAI Label's call) returns one tensor (B, (3 + n) * C, *spatial) with channel
    blocks of C: the thresholded ensemble mask, the mean probability, the variance, then the n samples (each in
    [0, 1]); ``monai_ext.transforms.SplitEnsembled`` puts them under their own keys and leaves the mask as
    ``pred``. With a DDPM scheduler every one of the T steps runs (``DDPMScheduler`` uses t - 1 as the previous
    step, so it cannot skip steps); a ``DDIMScheduler`` (Song et al., ICLR 2021) runs ``num_inference_steps``.
    A network with 2C output channels (learned variance) is read by a ``LearnedVarianceDDPMScheduler``; DDIM
    uses the noise prediction (the first C channels) alone.

    Args:
        scheduler: the trained model's scheduler (DDPM) or a ``DDIMScheduler`` over the same noise schedule.
        num_samples: ensemble size n, >= 1.
        num_inference_steps: DDIM steps in 1 .. T; None runs every training timestep (DDPM, or DDIM with T).
        threshold: the mean probability above which a voxel is in the mask, in (0, 1).
        mask_channels: C, the channels of the mask.
        seed: seed of the initial noise and of the DDPM step noise (None: torch's global generator).
        progress: show a progress bar over the steps (also ``"true"`` / ``"false"``).
    """

    def __init__(
        self,
        scheduler: Scheduler,
        num_samples: int = 5,
        num_inference_steps: int | None = None,
        threshold: float = 0.5,
        mask_channels: int = 1,
        seed: int | None = 0,
        progress: bool | str = True,
    ) -> None:
        super().__init__()
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
            raise ValueError(f"num_samples (the ensemble size) must be an integer >= 1, got {num_samples!r}.")
        steps = scheduler.num_train_timesteps
        if num_inference_steps is not None:
            if not 1 <= num_inference_steps <= steps:
                raise ValueError(f"num_inference_steps must be between 1 and T = {steps}, got {num_inference_steps}.")
            if not isinstance(scheduler, DDIMScheduler) and num_inference_steps != steps:
                raise ValueError(
                    f"a DDPM scheduler runs all T = {steps} steps; got num_inference_steps {num_inference_steps}. "
                    "Use a DDIMScheduler over the same schedule for fewer steps."
                )
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}.")
        if mask_channels < 1:
            raise ValueError(f"mask_channels must be >= 1, got {mask_channels}.")
        self.scheduler = scheduler
        self.num_samples = num_samples
        self.num_inference_steps = num_inference_steps
        self.threshold = float(threshold)
        self.mask_channels = mask_channels
        self.seed = seed
        self.progress = as_flag(progress, "progress")

    def _timesteps(self, device: torch.device) -> torch.Tensor:
        self.scheduler.set_timesteps(self.num_inference_steps or self.scheduler.num_train_timesteps, device=device)
        return self.scheduler.timesteps

    def _step(
        self, output: torch.Tensor, t: torch.Tensor, x: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        if isinstance(self.scheduler, DDIMScheduler):
            return self.scheduler.step(output[:, : self.mask_channels], t, x, generator=generator)[0]
        return self.scheduler.step(output, t, x, generator=generator)[0]

    @torch.no_grad()
    def sample(self, inputs: torch.Tensor, network: torch.nn.Module) -> torch.Tensor:
        """The n sampled masks of each image, in [0, 1]: (B, n, C, *spatial)."""
        batch, spatial = inputs.shape[0], inputs.shape[2:]
        n, c = self.num_samples, self.mask_channels
        image = torch.as_tensor(inputs).repeat_interleave(n, dim=0)
        generator = None if self.seed is None else torch.Generator(device=image.device).manual_seed(self.seed)
        x = torch.randn((batch * n, c, *spatial), generator=generator, device=image.device, dtype=image.dtype)
        for t in tqdm(self._timesteps(image.device), desc="ensemble sampling", disable=not self.progress):
            timesteps = torch.full((batch * n,), int(t), device=image.device, dtype=torch.long)
            output = network(torch.cat([x, image], dim=1), timesteps=timesteps)
            if output.shape[1] not in (c, 2 * c):
                raise ValueError(
                    f"the network outputs {output.shape[1]} channels; a mask of {c} channels needs {c} (noise) or "
                    f"{2 * c} (noise and variance)."
                )
            x = self._step(output, t, x, generator)
        return signal_to_probability(x).reshape(batch, n, c, *spatial)

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args, **kwargs) -> torch.Tensor:
        """Ensemble mask, mean, variance and samples of the images ``inputs`` (B, C_image, *spatial)."""
        samples = self.sample(inputs, network)
        mean = samples.mean(dim=1)
        variance = samples.var(dim=1, unbiased=False)
        mask = (mean > self.threshold).to(mean.dtype)
        return torch.cat([mask, mean, variance, samples.flatten(1, 2)], dim=1)

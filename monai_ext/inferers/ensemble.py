"""Implicit segmentation ensembles: several masks sampled from one conditional DDPM (Wolleb et al., MIDL 2022)."""

from __future__ import annotations

import math
import os
import zlib

import torch
from monai.inferers import Inferer
from monai.networks.schedulers import DDIMScheduler, Scheduler
from tqdm.auto import tqdm

from monai_ext.flags import as_flag
from monai_ext.schedulers import LearnedVarianceDDPMScheduler
from monai_ext.transforms.ensemble import signal_to_probability


def ensemble_outputs(samples: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Pack n sampled probability maps (B, n, C, *spatial) into one tensor (B, (3 + n) * C, *spatial): the mask
    (mean > ``threshold``), the mean, the variance (population, 0 for n = 1), then the samples."""
    mean = samples.mean(dim=1)
    variance = samples.var(dim=1, unbiased=False)
    mask = (mean > threshold).to(mean.dtype)
    return torch.cat([mask, mean, variance, samples.flatten(1, 2)], dim=1)


def input_seed(seed: int, inputs: torch.Tensor) -> int:
    """A 32-bit seed for one call: the CRC-32 of the bytes of ``inputs`` started from ``seed`` (torch's CPU generator
    keeps 32 bits of a seed), so that the same input draws the same noise in every call, client and order, and
    different inputs or seeds draw independent noise."""
    return zlib.crc32(torch.as_tensor(inputs).detach().cpu().contiguous().numpy().tobytes(), int(seed) % 2**32)


def check_ensemble(num_samples: int, threshold: float) -> None:
    """Refuse an ensemble size below 1 or a threshold outside (0, 1), naming the argument."""
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples (the ensemble size) must be an integer >= 1, got {num_samples!r}.")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must be in (0, 1), got {threshold}.")


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new tensors on ``device``: the free memory of a CUDA device, ``MemAvailable`` of the host
    (Linux), else the free physical pages; None when the system does not tell."""
    if device.type == "cuda":  # free memory, plus what torch's caching allocator holds but does not use
        unused = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return int(torch.cuda.mem_get_info(device)[0] + unused)
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


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
    step, so it cannot skip steps); a ``DDIMScheduler`` (Song et al., ICLR 2021) runs ``num_inference_steps``; use
    ``monai_ext.schedulers.ConsistentDDIMScheduler``, as the bundle does, for masks (MONAI's DDIM step loses them).
    A network with 2C output channels (learned variance) is read by a ``LearnedVarianceDDPMScheduler``; DDIM
    uses the noise prediction (the first C channels) alone. The noise of a call is seeded by ``seed`` and a checksum of
    the call's inputs (drawn for the whole batch): a sample reproduces with the same seed and the same batch, and
    two images never share their noise (one seed for every call gave every slice the same n noise draws, so a draw
    whose sample diverged did so on every slice).

    Args:
        scheduler: the trained model's scheduler (DDPM) or a ``DDIMScheduler`` over the same noise schedule.
        num_samples: ensemble size n, >= 1.
        num_inference_steps: DDIM steps in 1 .. T; None runs every training timestep (DDPM, or DDIM with T).
        threshold: the mean probability above which a voxel is in the mask, in (0, 1).
        mask_channels: C, the channels of the mask.
        seed: seed of the initial noise and of the DDPM step noise, combined with a checksum of the call's inputs
            (:func:`input_seed`): an image gets the same samples wherever and whenever it is inferred alone, and
            different images get independent noise (None: torch's global generator).
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
        check_ensemble(num_samples, threshold)
        steps = scheduler.num_train_timesteps
        if num_inference_steps is not None:
            if not 1 <= num_inference_steps <= steps:
                raise ValueError(f"num_inference_steps must be between 1 and T = {steps}, got {num_inference_steps}.")
            if not isinstance(scheduler, DDIMScheduler) and num_inference_steps != steps:
                raise ValueError(
                    f"a DDPM scheduler runs all T = {steps} steps; got num_inference_steps {num_inference_steps}. "
                    "Use a DDIMScheduler over the same schedule for fewer steps."
                )
        if mask_channels < 1:
            raise ValueError(f"mask_channels must be >= 1, got {mask_channels}.")
        self.scheduler = scheduler
        self.num_samples = num_samples
        self.num_inference_steps = num_inference_steps
        self.threshold = float(threshold)
        self.mask_channels = mask_channels
        self.seed = seed
        self.progress = as_flag(progress, "progress")

    def sampling_timesteps(self, device: torch.device) -> torch.Tensor:
        """The timesteps :meth:`sample` runs, first (noisiest) to last: ``num_inference_steps`` of them, or all T."""
        self.scheduler.set_timesteps(self.num_inference_steps or self.scheduler.num_train_timesteps, device=device)
        return self.scheduler.timesteps

    def _step(
        self, output: torch.Tensor, t: torch.Tensor, x: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        c = self.mask_channels
        if output.shape[1] not in (c, 2 * c):
            raise ValueError(
                f"the network outputs {output.shape[1]} channels; a mask of {c} channels needs {c} (noise) or "
                f"{2 * c} (noise and variance)."
            )
        if isinstance(self.scheduler, DDIMScheduler):
            return self.scheduler.step(output[:, :c], t, x, generator=generator)[0]
        if output.shape[1] == 2 * c and not isinstance(self.scheduler, LearnedVarianceDDPMScheduler):
            raise ValueError(
                f"the network predicts a variance ({2 * c} output channels); sample it with a "
                f"LearnedVarianceDDPMScheduler (config sampler 'ddpm') or a DDIMScheduler, not "
                f"{type(self.scheduler).__name__}."
            )
        return self.scheduler.step(output, t, x, generator=generator)[0]

    def initial_noise(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Generator | None]:
        """The noise the n samples of each image start from, (B * n, C, *spatial), and the generator that drew it.

        The generator is seeded per call from ``seed`` and the inputs (:func:`input_seed`); :meth:`sample` keeps
        drawing the scheduler's noise from it, so the same image always gives the same samples.
        """
        inputs = torch.as_tensor(inputs)
        generator = None
        if self.seed is not None:
            generator = torch.Generator(device=inputs.device).manual_seed(input_seed(self.seed, inputs))
        size = (inputs.shape[0] * self.num_samples, self.mask_channels, *inputs.shape[2:])
        return torch.randn(size, generator=generator, device=inputs.device, dtype=inputs.dtype), generator

    def check_memory(self, inputs: torch.Tensor, network: torch.nn.Module) -> None:
        """Refuse, before anything is allocated, an ensemble whose one batch cannot fit: all B * n samples go through
        the network at once, and its first layer alone holds ``out_channels`` maps of every sample (a lower bound of
        the need; the other layers and the skip connections add to it).

        Raises:
            MemoryError: the lower bound exceeds the device's free memory; the message names ``num_samples``.
        """
        convolutions = (m for m in network.modules() if isinstance(m, torch.nn.modules.conv._ConvNd))
        first = next((convolution.out_channels for convolution in convolutions), 1)
        voxels = inputs.shape[0] * self.num_samples * math.prod(inputs.shape[2:])
        need = voxels * inputs.element_size() * (inputs.shape[1] + 2 * self.mask_channels + first)
        free = available_memory(inputs.device)
        if free is not None and need > free:
            raise MemoryError(
                f"an ensemble of num_samples = {self.num_samples} samples of {inputs.shape[0]} image(s) of "
                f"{tuple(inputs.shape[2:])} runs as one batch that needs at least {need / 2**30:.1f} GB on "
                f"{inputs.device}, which has {free / 2**30:.1f} GB free; use fewer samples (config id num_samples)."
            )

    @torch.no_grad()
    def sample(self, inputs: torch.Tensor, network: torch.nn.Module) -> torch.Tensor:
        """The n sampled masks of each image, in [0, 1]: (B, n, C, *spatial)."""
        self.check_memory(inputs, network)
        batch, spatial = inputs.shape[0], inputs.shape[2:]
        n, c = self.num_samples, self.mask_channels
        image = torch.as_tensor(inputs).repeat_interleave(n, dim=0)
        x, generator = self.initial_noise(inputs)
        for t in tqdm(self.sampling_timesteps(image.device), desc="ensemble sampling", disable=not self.progress):
            timesteps = torch.full((batch * n,), int(t), device=image.device, dtype=torch.long)
            x = self._step(network(torch.cat([x, image], dim=1), timesteps=timesteps), t, x, generator)
        return signal_to_probability(x).reshape(batch, n, c, *spatial)

    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args, **kwargs) -> torch.Tensor:
        """Ensemble mask, mean, variance and samples of the images ``inputs`` (B, C_image, *spatial)."""
        return ensemble_outputs(self.sample(inputs, network), self.threshold)


class MonteCarloDropoutInferer(Inferer):
    """n forward passes with dropout active: the Monte-Carlo-dropout ensemble of a supervised network.

    Gal & Ghahramani (ICML 2016) read dropout at test time as approximate Bayesian inference; the mean of the n
    foreground probabilities is the prediction and their variance the uncertainty. Wolleb et al. (MIDL 2022,
    Table 1) compare with such an ensemble (Bayesian SegNet). Only the dropout layers are switched to training
    mode during the call (batch norm keeps its running statistics); the network's modes are restored after. The
    output has the layout of :class:`DiffusionEnsembleInferer`, so ``SplitEnsembled`` and the same report apply.

    Args:
        num_samples: n, >= 1.
        threshold: the mean probability above which a pixel is foreground, in (0, 1).
        seed: seed of the dropout masks, combined with a checksum of the call's inputs (:func:`input_seed`; None:
            torch's global generator).
    """

    def __init__(self, num_samples: int = 5, threshold: float = 0.5, seed: int | None = 0) -> None:
        super().__init__()
        check_ensemble(num_samples, threshold)
        self.num_samples = num_samples
        self.threshold = float(threshold)
        self.seed = seed

    @staticmethod
    def foreground_probability(logits: torch.Tensor) -> torch.Tensor:
        """Sigmoid of one output channel, or the softmax of channels 1.. of a background-first output."""
        return torch.sigmoid(logits) if logits.shape[1] == 1 else torch.softmax(logits, dim=1)[:, 1:]

    @torch.no_grad()
    def __call__(self, inputs: torch.Tensor, network: torch.nn.Module, *args, **kwargs) -> torch.Tensor:
        """Ensemble mask, mean, variance and samples of ``inputs`` (B, C_image, *spatial)."""
        dropouts = [m for m in network.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)]
        if not dropouts:
            raise ValueError("the network has no dropout layer: Monte-Carlo dropout needs dropout > 0.")
        modes = [m.training for m in dropouts]
        devices = [inputs.device] if inputs.device.type == "cuda" else []
        try:
            with torch.random.fork_rng(devices=devices, enabled=self.seed is not None):  # the caller's RNG is kept
                if self.seed is not None:
                    torch.manual_seed(input_seed(self.seed, inputs))
                for module in dropouts:
                    module.train()
                samples = torch.stack(
                    [self.foreground_probability(network(inputs)) for _ in range(self.num_samples)], dim=1
                )
        finally:
            for module, mode in zip(dropouts, modes, strict=True):
                module.train(mode)
        return ensemble_outputs(samples, self.threshold)

"""Components a bundle config builds from a config id's value: the sampling scheduler, the visual term's denoiser."""

from __future__ import annotations

from monai.networks.schedulers import Scheduler
from torch import nn

from monai_ext.schedulers import PREDICTION_TYPES, ConsistentDDIMScheduler, LearnedVarianceDDPMScheduler

VISUAL_TARGETS = ("image", "denoised")


def visual_denoiser(visual_target: str, denoiser: nn.Module) -> nn.Module | None:
    """The denoiser the visual term reads (config id ``visual_target``): None for ``"image"`` (the paper's L_v on
    x0), ``denoiser`` for ``"denoised"`` (L_v on the diffusion model's x0 prediction).

    Raises:
        ValueError: ``visual_target`` is neither; the message names the config id.
    """
    if visual_target not in VISUAL_TARGETS:
        raise ValueError(f"visual_target must be one of {VISUAL_TARGETS}, got {visual_target!r}.")
    return denoiser if visual_target == "denoised" else None


SAMPLERS = ("ddim", "ddpm")


def sampling_scheduler(
    sampler: str, num_train_timesteps: int, schedule: str = "linear_beta", prediction_type: str = "epsilon"
) -> Scheduler:
    """The scheduler an ensemble sampler runs with (config id ``sampler``), over the training noise schedule and
    for the network's ``prediction_type`` (config id ``prediction_type``): ``"ddim"`` (Song et al., ICLR 2021; any
    number of steps, the prediction of the mean only, stepping along the clipped x0 with
    ``ConsistentDDIMScheduler``) or ``"ddpm"`` (all T steps, with the learned variance of
    ``LearnedVarianceDDPMScheduler``).

    Raises:
        ValueError: ``sampler`` is neither, or ``prediction_type`` is not one of ``PREDICTION_TYPES``.
    """
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"config id 'prediction_type' must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")
    options = {"num_train_timesteps": num_train_timesteps, "schedule": schedule, "prediction_type": prediction_type}
    if sampler == "ddim":
        return ConsistentDDIMScheduler(**options)
    if sampler == "ddpm":
        return LearnedVarianceDDPMScheduler(**options)
    raise ValueError(f"config id 'sampler' must be one of {SAMPLERS}, got {sampler!r}.")

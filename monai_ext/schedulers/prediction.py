"""The clean sample x0 implied by a diffusion U-Net's output, and the output implied by a clean sample and its
noise, for each prediction type MONAI schedulers know."""

from __future__ import annotations

import torch
from monai.networks.schedulers import Scheduler

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def prediction_kind(scheduler: Scheduler) -> str:
    """The scheduler's ``prediction_type`` as one of ``PREDICTION_TYPES`` (MONAI stores an enum or a string)."""
    kind = str(getattr(scheduler.prediction_type, "value", scheduler.prediction_type))
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"scheduler prediction_type must be one of {PREDICTION_TYPES}, got '{kind}'.")
    return kind


def predicted_x0(
    scheduler: Scheduler, model_output: torch.Tensor, x_t: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """x0 from a U-Net output at timesteps t, for the scheduler's ``prediction_type`` (Ho et al. 2020, eq. 15):
    ``sample``: the output itself; ``epsilon``: (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t); ``v_prediction``:
    sqrt(abar_t) x_t - sqrt(1 - abar_t) v."""
    kind = prediction_kind(scheduler)
    if kind == "sample":
        return model_output
    abar = scheduler.alphas_cumprod.to(x_t.device)[timesteps].float().view(-1, *([1] * (x_t.ndim - 1)))
    if kind == "epsilon":
        return (x_t - (1 - abar).sqrt() * model_output) / abar.sqrt()
    return abar.sqrt() * x_t - (1 - abar).sqrt() * model_output


def model_output_for(
    scheduler: Scheduler, x0: torch.Tensor, epsilon: torch.Tensor, timesteps: int | torch.Tensor
) -> torch.Tensor:
    """The U-Net output at timesteps t that implies ``x0`` and the noise ``epsilon``, for the scheduler's
    ``prediction_type`` (the inverse of :func:`predicted_x0`; the regression target of the simple loss):
    ``epsilon``: the noise; ``sample``: x0; ``v_prediction``: sqrt(abar_t) eps - sqrt(1 - abar_t) x0 (Salimans &
    Ho, ICLR 2022, sec. 4). ``timesteps``: one step for the whole batch or one per sample (B,)."""
    kind = prediction_kind(scheduler)
    if kind == "epsilon":
        return epsilon
    if kind == "sample":
        return x0
    steps = torch.as_tensor(timesteps, device=x0.device).long().reshape(-1)
    abar = scheduler.alphas_cumprod.to(x0.device)[steps].to(x0.dtype).view(-1, *([1] * (x0.ndim - 1)))
    return abar.sqrt() * epsilon - (1 - abar).sqrt() * x0

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


def _alpha_bar(
    scheduler: Scheduler, timesteps: int | torch.Tensor, like: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """abar_t of one step or one per sample, on ``like``'s device in ``dtype``, shaped to broadcast over ``like``."""
    steps = torch.as_tensor(timesteps, device=like.device).long().reshape(-1)
    return scheduler.alphas_cumprod.to(like.device)[steps].to(dtype).view(-1, *([1] * (like.ndim - 1)))


def predicted_x0(
    scheduler: Scheduler, model_output: torch.Tensor, x_t: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """x0 from a U-Net output at timesteps t, for the scheduler's ``prediction_type`` (Ho et al. 2020, eq. 15):
    ``sample``: the output itself; ``epsilon``: (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t); ``v_prediction``:
    sqrt(abar_t) x_t - sqrt(1 - abar_t) v."""
    kind = prediction_kind(scheduler)
    if kind == "sample":
        return model_output
    abar = _alpha_bar(scheduler, timesteps, x_t, torch.float32)
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
    abar = _alpha_bar(scheduler, timesteps, x0, x0.dtype)
    return abar.sqrt() * epsilon - (1 - abar).sqrt() * x0

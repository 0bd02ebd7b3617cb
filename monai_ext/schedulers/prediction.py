"""The clean sample x0 implied by a diffusion U-Net's output, for each prediction type MONAI schedulers know."""

from __future__ import annotations

import torch
from monai.networks.schedulers import Scheduler

PREDICTION_TYPES = ("epsilon", "sample", "v_prediction")


def predicted_x0(
    scheduler: Scheduler, model_output: torch.Tensor, x_t: torch.Tensor, timesteps: torch.Tensor
) -> torch.Tensor:
    """x0 from a U-Net output at timesteps t, for the scheduler's ``prediction_type`` (Ho et al. 2020, eq. 15):
    ``sample``: the output itself; ``epsilon``: (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t); ``v_prediction``:
    sqrt(abar_t) x_t - sqrt(1 - abar_t) v."""
    kind = str(getattr(scheduler.prediction_type, "value", scheduler.prediction_type))
    if kind not in PREDICTION_TYPES:
        raise ValueError(f"scheduler prediction_type must be one of {PREDICTION_TYPES}, got '{kind}'.")
    if kind == "sample":
        return model_output
    abar = scheduler.alphas_cumprod.to(x_t.device)[timesteps].float().view(-1, *([1] * (x_t.ndim - 1)))
    if kind == "epsilon":
        return (x_t - (1 - abar).sqrt() * model_output) / abar.sqrt()
    return abar.sqrt() * x_t - (1 - abar).sqrt() * model_output

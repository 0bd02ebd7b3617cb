"""The hybrid DDPM loss L_simple + lambda L_vlb (Nichol & Dhariwal, ICML 2021, sec. 3.1)."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch.nn.modules.loss import _Loss

from monai_ext.schedulers import LearnedVarianceDDPMScheduler, model_output_for, prediction_kind


class HybridDiffusionLoss(_Loss):
    """L_hybrid = L_simple + lambda L_vlb for a network that predicts the noise (or x0, or v) and the reverse
    variance.

    Nichol & Dhariwal (ICML 2021, eq. 16, lambda = 0.001): L_simple is the mean squared error of the noise
    prediction (Ho et al., NeurIPS 2020, eq. 14), or of the scheduler's other target (x0 for ``sample``;
    v = sqrt(abar_t) eps - sqrt(1 - abar_t) x0 for ``v_prediction``, Salimans & Ho, ICLR 2022); L_vlb = sum_t L_t,
    estimated from the batch's uniformly drawn timesteps as T * L_t, with the mean prediction detached so that it
    trains only the variance output.
    Wolleb et al. (MIDL 2022) train their segmentation DDPM with it (learned variance, T = 1000).

    The target is the mapping ``MaskDiffusionPrepareBatch`` builds: ``x0`` (the clean data in [-1, 1]),
    ``noise`` and ``timesteps``; x_t is rebuilt from them with the scheduler.

    Args:
        scheduler: the ``LearnedVarianceDDPMScheduler`` the network is trained and sampled with; its
            ``prediction_type`` sets the target of L_simple.
        lambda_vlb: lambda, >= 0 (0 trains the noise prediction alone; the variance output then stays untrained).
    """

    def __init__(self, scheduler: LearnedVarianceDDPMScheduler, lambda_vlb: float = 0.001) -> None:
        super().__init__()
        if not isinstance(scheduler, LearnedVarianceDDPMScheduler):
            raise TypeError(f"scheduler must be a LearnedVarianceDDPMScheduler, got {type(scheduler).__name__}.")
        prediction_kind(scheduler)  # one of PREDICTION_TYPES
        if not lambda_vlb >= 0:
            raise ValueError(f"lambda_vlb must be >= 0, got {lambda_vlb}.")
        self.scheduler = scheduler
        self.lambda_vlb = float(lambda_vlb)

    def forward(self, model_output: torch.Tensor, target: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """
        Args:
            model_output: (B, 2C, *spatial): the prediction (noise, x0 or v), then the variance output.
            target: ``{"x0": (B, C, *spatial), "noise": (B, C, *spatial), "timesteps": (B,)}``.
        """
        missing = {"x0", "noise", "timesteps"} - set(target)
        if missing:
            raise KeyError(f"the target needs x0, noise and timesteps (MaskDiffusionPrepareBatch); missing {missing}.")
        x0, noise, timesteps = target["x0"], target["noise"], target["timesteps"]
        channels = x0.shape[1]
        if model_output.shape[1] != 2 * channels:
            raise ValueError(
                f"the network must output 2 x {channels} channels (noise and variance), got {model_output.shape[1]}."
            )
        mse = ((model_output[:, :channels] - model_output_for(self.scheduler, x0, noise, timesteps)) ** 2).mean()
        if self.lambda_vlb == 0:
            return mse
        x_t = self.scheduler.add_noise(original_samples=x0, noise=noise, timesteps=timesteps)
        frozen_mean = torch.cat([model_output[:, :channels].detach(), model_output[:, channels:]], dim=1)
        vlb = self.scheduler.variational_bound(frozen_mean, x0, x_t, timesteps).mean()
        return mse + self.lambda_vlb * self.scheduler.num_train_timesteps * vlb

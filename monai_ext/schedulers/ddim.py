"""DDIM as the reference implementation samples: each step lands on the next timestep it runs, along the clipped
x0 prediction."""

from __future__ import annotations

import torch
from monai.networks.schedulers import DDIMScheduler

from monai_ext.schedulers.prediction import model_output_for, predicted_x0


class ConsistentDDIMScheduler(DDIMScheduler):
    """A ``DDIMScheduler`` whose steps are consistent with its timesteps and with its clipped x0.

    Song et al. (ICLR 2021, eq. 12) step x_{t-1} = sqrt(abar_{t-1}) x0 + sqrt(1 - abar_{t-1} - sigma_t^2) eps
    + sigma_t z. MONAI 1.6's ``DDIMScheduler`` departs from the reference implementation (``guided_diffusion``,
    which Wolleb et al. and Nichol & Dhariwal sample with) twice:

    - with ``clip_sample`` it clips x0 to ``clip_sample_values`` but keeps the network's eps in the direction term,
      so x_{t-1} leaves the path between x_t and the clipped x0. For a {-1, 1} mask whose x0 prediction overshoots
      the range the error compounds: with the shipped diffusion_segmentation weights (DDIM 50, 6 test slices) the
      ensemble Dice drops from 0.87 to 0.17. Here eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) is re-derived
      from the clipped x0, for every prediction type;
    - ``set_timesteps`` spaces the timesteps as ``linspace(T - 1, 0, n)`` while ``step`` goes from t to
      t - T // n: with 10 steps of T = 1000 each step lands 11 timesteps away from the one the next call runs.
      Here the timesteps are ``(n - 1) T // n, ..., T // n, 0`` (plus ``steps_offset``), the spacing ``step``
      assumes, as the reference implementation's respacing does.

    Args:
        args, kwargs: as ``DDIMScheduler`` (``num_train_timesteps``, ``schedule``, ``clip_sample``, ...).
    """

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None) -> None:
        """Timesteps spaced by T // ``num_inference_steps`` from 0 (checked as MONAI does)."""
        super().set_timesteps(num_inference_steps, device=device)
        stride = self.num_train_timesteps // num_inference_steps
        self.timesteps = torch.arange(num_inference_steps, device=device).flip(0) * stride + self.steps_offset

    def consistent_output(self, model_output: torch.Tensor, timestep: int, sample: torch.Tensor) -> torch.Tensor:
        """The network output, of this scheduler's ``prediction_type``, that implies the clipped x0 and the noise
        eps = (x_t - sqrt(abar_t) x0) / sqrt(1 - abar_t) that goes with it."""
        timesteps = torch.full((sample.shape[0],), int(timestep), dtype=torch.long, device=sample.device)
        x0 = predicted_x0(self, model_output, sample, timesteps).clamp(*self.clip_sample_values)
        abar = self.alphas_cumprod.to(sample.device)[int(timestep)].to(sample.dtype)
        epsilon = (sample - abar.sqrt() * x0) / (1 - abar).sqrt()
        return model_output_for(self, x0, epsilon, timestep)

    def step(
        self,
        model_output: torch.Tensor,
        timestep: int,
        sample: torch.Tensor,
        eta: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """MONAI's DDIM step (eq. 12, 16) on the output :meth:`consistent_output` gives when ``clip_sample``."""
        if self.clip_sample:
            model_output = self.consistent_output(model_output, timestep, sample)
        return super().step(model_output, timestep, sample, eta=eta, generator=generator)

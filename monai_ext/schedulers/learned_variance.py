"""DDPM with a learned reverse-process variance and its variational bound (Nichol & Dhariwal, ICML 2021)."""

from __future__ import annotations

import math

import torch
from monai.networks.schedulers import DDPMScheduler

from monai_ext.schedulers.prediction import predicted_x0

LOG2 = math.log(2.0)


def gaussian_kl(mean1: torch.Tensor, logvar1: torch.Tensor, mean2: torch.Tensor, logvar2: torch.Tensor) -> torch.Tensor:
    """Elementwise KL(N(mean1, exp(logvar1)) || N(mean2, exp(logvar2))) in nats."""
    return 0.5 * (-1.0 + logvar2 - logvar1 + torch.exp(logvar1 - logvar2) + (mean1 - mean2) ** 2 * torch.exp(-logvar2))


def _standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def discretized_gaussian_log_likelihood(
    x: torch.Tensor, mean: torch.Tensor, log_scale: torch.Tensor, num_bins: int = 256
) -> torch.Tensor:
    """Elementwise log-likelihood in nats of data ``x`` in [-1, 1], quantised to ``num_bins`` levels, under
    N(mean, exp(log_scale)^2) (Ho et al., NeurIPS 2020, eq. 13): the Gaussian mass of the bin around x, with
    the outermost bins extended to -inf and +inf."""
    half_bin = 1.0 / (num_bins - 1)
    inv_std = torch.exp(-log_scale)
    upper = _standard_normal_cdf(inv_std * (x - mean + half_bin))
    lower = _standard_normal_cdf(inv_std * (x - mean - half_bin))
    tiny = 1e-12
    mass = torch.where(
        x < -1.0 + 1e-3,
        upper,
        torch.where(x > 1.0 - 1e-3, 1.0 - lower, upper - lower),
    )
    return torch.log(mass.clamp(min=tiny))


class LearnedVarianceDDPMScheduler(DDPMScheduler):
    """A ``DDPMScheduler`` whose network also predicts the reverse-process variance, with the variational bound.

    Nichol & Dhariwal (ICML 2021, "Improved Denoising Diffusion Probabilistic Models", eq. 15): the network's
    second half of output channels v sets the log variance of p(x_{t-1} | x_t) between the two bounds of Ho et
    al., log sigma_t^2 = frac log beta_t + (1 - frac) log beta~_t with frac = (v + 1) / 2 and beta~_t the
    posterior variance (its value at t = 0, which is 0, replaced by that at t = 1). MONAI's own
    ``variance_type="learned_range"`` interpolates the variances linearly instead of their logarithms, which does
    not match the bound below; this class replaces it, so the sampler draws with the variance the loss trained.

    ``variational_bound`` is the per-timestep term L_t of the bound (eq. 4-5 there): KL(q(x_{t-1} | x_t, x_0) ||
    p(x_{t-1} | x_t)) for t > 0 and the discretised decoder NLL -log p(x_0 | x_1) at t = 0, in bits per
    dimension. Used with L_simple it is the hybrid loss (``monai_ext.losses.HybridDiffusionLoss``); Wolleb et
    al. (MIDL 2022) train their segmentation DDPM with it.

    Args:
        num_train_timesteps: T.
        schedule: a MONAI noise schedule (``"linear_beta"``, the paper's; ``"cosine"``, ...).
        prediction_type: what the first half of the output channels predicts (``"epsilon"`` in both papers).
        kwargs: passed to ``DDPMScheduler`` (``beta_start``, ``beta_end``, ``clip_sample``, ...);
            ``variance_type`` is fixed to ``"learned_range"``.
    """

    def __init__(
        self,
        num_train_timesteps: int = 1000,
        schedule: str = "linear_beta",
        prediction_type: str = "epsilon",
        **kwargs,
    ) -> None:
        if kwargs.pop("variance_type", "learned_range") != "learned_range":
            raise ValueError("LearnedVarianceDDPMScheduler always uses variance_type 'learned_range'.")
        if num_train_timesteps < 2:
            raise ValueError(f"num_train_timesteps must be >= 2, got {num_train_timesteps}.")
        super().__init__(
            num_train_timesteps=num_train_timesteps,
            schedule=schedule,
            variance_type="learned_range",
            prediction_type=prediction_type,
            **kwargs,
        )
        alphas_cumprod_prev = torch.cat([self.one.reshape(1), self.alphas_cumprod[:-1]])
        self.posterior_variance = self.betas * (1.0 - alphas_cumprod_prev) / (1.0 - self.alphas_cumprod)
        self.posterior_log_variance_clipped = torch.log(
            torch.cat([self.posterior_variance[1:2], self.posterior_variance[1:]])
        )
        self.posterior_mean_coef_x0 = self.betas * alphas_cumprod_prev.sqrt() / (1.0 - self.alphas_cumprod)
        self.posterior_mean_coef_xt = (1.0 - alphas_cumprod_prev) * self.alphas.sqrt() / (1.0 - self.alphas_cumprod)

    @staticmethod
    def _per_sample(values: torch.Tensor, timesteps: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """values[timesteps] shaped (B, 1, ..., 1) to broadcast against ``like``."""
        picked = values.to(like.device)[timesteps.to(like.device).long()].to(like.dtype)
        return picked.reshape(-1, *([1] * (like.ndim - 1)))

    def model_log_variance(self, v: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """log sigma_t^2 from the network's variance output v (eq. 15): v = -1 gives beta~_t, v = 1 gives beta_t."""
        frac = (v + 1.0) / 2.0
        log_beta = self._per_sample(torch.log(self.betas), timesteps, v)
        log_posterior = self._per_sample(self.posterior_log_variance_clipped, timesteps, v)
        return frac * log_beta + (1.0 - frac) * log_posterior

    def posterior_mean(self, x0: torch.Tensor, x_t: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Mean of q(x_{t-1} | x_t, x_0) (Ho et al., eq. 7), per sample of the batch."""
        return (
            self._per_sample(self.posterior_mean_coef_x0, timesteps, x_t) * x0
            + self._per_sample(self.posterior_mean_coef_xt, timesteps, x_t) * x_t
        )

    def _get_variance(self, timestep: int, predicted_variance: torch.Tensor | None = None) -> torch.Tensor:
        """The sampler's variance at ``timestep``: exp(eq. 15) from the network's v; beta~_t without it."""
        if predicted_variance is None:
            return self.posterior_variance[timestep].clamp(min=1e-20)
        timesteps = torch.full((predicted_variance.shape[0],), int(timestep), dtype=torch.long)
        return torch.exp(self.model_log_variance(predicted_variance, timesteps))

    def variational_bound(
        self, model_output: torch.Tensor, x0: torch.Tensor, x_t: torch.Tensor, timesteps: torch.Tensor
    ) -> torch.Tensor:
        """L_t per batch element, in bits per dimension (mean over channels and space).

        Args:
            model_output: the network output (B, 2C, *spatial): mean prediction, then v. Detach the mean half
                to train only the variance with this term, as Nichol & Dhariwal do in the hybrid loss.
            x0: clean data (B, C, *spatial) in [-1, 1].
            x_t: x0 noised to ``timesteps``.
            timesteps: (B,) integer timesteps in [0, T).
        """
        channels = x0.shape[1]
        if model_output.shape[1] != 2 * channels:
            raise ValueError(
                f"model_output needs 2 x {channels} channels (mean prediction and variance), got "
                f"{model_output.shape[1]}."
            )
        prediction, v = model_output[:, :channels], model_output[:, channels:]
        log_variance = self.model_log_variance(v, timesteps)
        model_mean = self.posterior_mean(predicted_x0(self, prediction, x_t, timesteps), x_t, timesteps)
        true_mean = self.posterior_mean(x0, x_t, timesteps)
        true_log_variance = self._per_sample(self.posterior_log_variance_clipped, timesteps, x_t)
        kl = gaussian_kl(true_mean, true_log_variance, model_mean, log_variance).flatten(1).mean(1) / LOG2
        nll = -discretized_gaussian_log_likelihood(x0, model_mean, 0.5 * log_variance).flatten(1).mean(1) / LOG2
        return torch.where(timesteps.to(kl.device) == 0, nll, kl)

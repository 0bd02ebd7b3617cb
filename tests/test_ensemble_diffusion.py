"""Segmentation-ensemble pieces (Wolleb et al., MIDL 2022): learned-variance scheduler and its bound, hybrid loss,
mask prepare-batch, ensemble inferer and its output splitter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from scipy.stats import norm

from monai_ext.bundle import sampling_scheduler
from monai_ext.engines import MaskDiffusionPrepareBatch
from monai_ext.inferers import DiffusionEnsembleInferer
from monai_ext.losses import HybridDiffusionLoss
from monai_ext.schedulers import LearnedVarianceDDPMScheduler
from monai_ext.transforms import SplitEnsembled

T = 6


def tiny_scheduler() -> LearnedVarianceDDPMScheduler:
    return LearnedVarianceDDPMScheduler(num_train_timesteps=T, schedule="linear_beta", beta_start=0.01, beta_end=0.2)


def reference_terms(x0: np.ndarray, x_t: np.ndarray, eps: np.ndarray, v: np.ndarray, t: int) -> float:
    """L_t in bits per dimension, from the definitions (Ho et al. eq. 5-7, 13; Nichol & Dhariwal eq. 15) in
    float64 numpy, one element at a time, with the schedule rebuilt from beta_start / beta_end."""
    betas = np.linspace(0.01, 0.2, T, dtype=np.float64)
    alphas = 1 - betas
    abar = np.cumprod(alphas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    post_var = betas * (1 - abar_prev) / (1 - abar)
    log_post = np.log(np.concatenate([[post_var[1]], post_var[1:]]))
    total = 0.0
    for a, b, e, w in zip(x0.ravel(), x_t.ravel(), eps.ravel(), v.ravel(), strict=False):
        x0_hat = (b - math.sqrt(1 - abar[t]) * e) / math.sqrt(abar[t])
        coef0 = betas[t] * math.sqrt(abar_prev[t]) / (1 - abar[t])
        coeft = (1 - abar_prev[t]) * math.sqrt(alphas[t]) / (1 - abar[t])
        mean_model = coef0 * x0_hat + coeft * b
        mean_true = coef0 * a + coeft * b
        frac = (w + 1) / 2
        logvar = frac * math.log(betas[t]) + (1 - frac) * log_post[t]
        if t == 0:
            sd = math.exp(0.5 * logvar)
            hi, lo = (a - mean_model + 1 / 255) / sd, (a - mean_model - 1 / 255) / sd
            mass = norm.cdf(hi) if a < -0.999 else (1 - norm.cdf(lo) if a > 0.999 else norm.cdf(hi) - norm.cdf(lo))
            total += -math.log(mass) / math.log(2)
        else:
            s1, s2 = math.exp(log_post[t]), math.exp(logvar)
            kl = 0.5 * (math.log(s2 / s1) + s1 / s2 + (mean_true - mean_model) ** 2 / s2 - 1)
            total += kl / math.log(2)
    return total / x0.size


@pytest.mark.parametrize("t", [0, 1, 3, T - 1])
def test_variational_bound_matches_the_definitions(t: int) -> None:
    scheduler = tiny_scheduler()
    g = torch.Generator().manual_seed(t)
    x0 = torch.tensor([[[[-1.0, 1.0], [1.0, 0.2]]]])  # the bin edges and an inner value
    noise = torch.randn(x0.shape, generator=g)
    timesteps = torch.tensor([t])
    x_t = scheduler.add_noise(x0, noise, timesteps)
    eps_hat = noise + 0.3 * torch.randn(x0.shape, generator=g)
    v = torch.rand(x0.shape, generator=g) * 2 - 1
    got = scheduler.variational_bound(torch.cat([eps_hat, v], 1), x0, x_t, timesteps)
    expected = reference_terms(x0.numpy(), x_t.numpy(), eps_hat.numpy(), v.numpy(), t)
    assert got.shape == (1,)
    assert got.item() == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_bound_is_zero_for_the_true_posterior_and_variance_endpoints() -> None:
    scheduler = tiny_scheduler()
    x0 = torch.rand(3, 1, 4, 4) * 2 - 1
    noise = torch.randn(3, 1, 4, 4)
    timesteps = torch.tensor([1, 2, 5])
    x_t = scheduler.add_noise(x0, noise, timesteps)
    exact = torch.cat([noise, -torch.ones_like(noise)], 1)  # true noise, v = -1: the posterior variance
    assert torch.allclose(scheduler.variational_bound(exact, x0, x_t, timesteps), torch.zeros(3), atol=1e-5)
    log_beta = scheduler.model_log_variance(torch.ones(3, 1, 1, 1), timesteps).flatten()
    assert torch.allclose(log_beta, torch.log(scheduler.betas[timesteps]))


def test_sampler_step_uses_the_log_space_variance() -> None:
    scheduler = tiny_scheduler()
    v = torch.full((1, 1, 2, 2), 0.5)
    expected = torch.exp(scheduler.model_log_variance(v, torch.tensor([3])))
    assert torch.allclose(scheduler._get_variance(3, v), expected)
    linear = DDPMScheduler(T, schedule="linear_beta", beta_start=0.01, beta_end=0.2, variance_type="learned_range")
    assert not torch.allclose(linear._get_variance(3, v), expected)  # MONAI interpolates the variances linearly


def test_scheduler_rejects_another_variance_type() -> None:
    with pytest.raises(ValueError, match="learned_range"):
        LearnedVarianceDDPMScheduler(num_train_timesteps=T, variance_type="fixed_small")


def test_hybrid_loss_is_mse_plus_weighted_bound_and_the_bound_trains_only_the_variance() -> None:
    scheduler = tiny_scheduler()
    x0 = torch.rand(2, 1, 4, 4) * 2 - 1
    noise = torch.randn(2, 1, 4, 4)
    timesteps = torch.tensor([0, 4])
    output = torch.randn(2, 2, 4, 4, requires_grad=True)
    target = {"x0": x0, "noise": noise, "timesteps": timesteps}
    mse = ((output[:, :1] - noise) ** 2).mean()
    x_t = scheduler.add_noise(x0, noise, timesteps)
    vlb = scheduler.variational_bound(output, x0, x_t, timesteps).mean()
    loss = HybridDiffusionLoss(scheduler, lambda_vlb=0.5)(output, target)
    assert loss.item() == pytest.approx((mse + 0.5 * T * vlb).item(), rel=1e-5)
    (HybridDiffusionLoss(scheduler, lambda_vlb=0.5)(output, target) - mse).backward()
    assert output.grad[:, :1].abs().max() == 0 and output.grad[:, 1:].abs().max() > 0
    assert HybridDiffusionLoss(scheduler, lambda_vlb=0.0)(output, target).item() == pytest.approx(mse.item())
    with pytest.raises(ValueError, match="lambda_vlb"):
        HybridDiffusionLoss(scheduler, lambda_vlb=-1)
    with pytest.raises(TypeError, match="LearnedVarianceDDPMScheduler"):
        HybridDiffusionLoss(DDPMScheduler(T))


def test_mask_prepare_batch_noises_the_mask_and_passes_the_image_as_condition() -> None:
    image = torch.rand(2, 4, 8, 8)
    mask = (torch.rand(2, 1, 8, 8) > 0.5).float()
    inputs, target, args, kwargs = MaskDiffusionPrepareBatch(T)({"image": image, "label": mask})
    assert torch.equal(inputs, mask * 2 - 1) and torch.equal(target["x0"], inputs)
    assert torch.equal(kwargs["condition"], image) and kwargs["mode"] == "concat"
    assert torch.equal(kwargs["noise"], target["noise"]) and kwargs["noise"].shape == mask.shape
    assert args == () and ((kwargs["timesteps"] >= 0) & (kwargs["timesteps"] < T)).all()
    with pytest.raises(KeyError, match="label"):
        MaskDiffusionPrepareBatch(T)({"image": image})


class RecordingNetwork(torch.nn.Module):
    """Predicts zero noise (and v = 0 when asked for the variance) and records what it was given."""

    def __init__(self, out_channels: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.inputs: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        self.inputs.append(x.clone())
        return torch.zeros(x.shape[0], self.out_channels, *x.shape[2:])


@pytest.mark.parametrize("scheduler", [tiny_scheduler(), DDIMScheduler(T, schedule="linear_beta")])
def test_ensemble_inferer_feeds_the_image_unchanged_at_every_step(scheduler) -> None:
    image = torch.rand(2, 3, 8, 8)
    network = RecordingNetwork(out_channels=2)
    output = DiffusionEnsembleInferer(scheduler, num_samples=4, progress=False)(image, network)
    assert output.shape == (2, 3 + 4, 8, 8)
    assert len(network.inputs) == T
    for given in network.inputs:
        assert given.shape == (8, 4, 8, 8)  # 2 images x 4 samples, mask channel then the 3 image channels
        assert torch.equal(given[:, 1:], image.repeat_interleave(4, dim=0))


def test_ensemble_statistics_reproducibility_and_n_equal_one() -> None:
    torch.manual_seed(0)
    network = DiffusionModelUNet(
        spatial_dims=2,
        in_channels=2,
        out_channels=2,
        channels=(8, 8),
        attention_levels=(False, False),
        num_res_blocks=1,
        norm_num_groups=8,
    ).eval()
    image = torch.rand(1, 1, 8, 8)
    inferer = DiffusionEnsembleInferer(tiny_scheduler(), num_samples=3, seed=7, progress=False)
    first, second = inferer(image, network), inferer(image, network)
    assert torch.equal(first, second)
    split = SplitEnsembled("pred", num_samples=3)({"pred": first[0]})
    samples = split["pred_samples"]
    assert torch.allclose(split["pred_mean"][0], samples.mean(0))
    assert torch.allclose(split["pred_variance"][0], samples.var(0, unbiased=False))
    assert torch.equal(split["pred"][0], (samples.mean(0) > 0.5).float())
    assert samples.min() >= 0 and samples.max() <= 1
    single = DiffusionEnsembleInferer(
        DDIMScheduler(T, schedule="linear_beta"), num_samples=1, num_inference_steps=3, progress=False
    )(image, network)
    assert single.shape == (1, 4, 8, 8) and single[:, 2].abs().max() == 0


def test_ensemble_inferer_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_samples"):
        DiffusionEnsembleInferer(tiny_scheduler(), num_samples=0)
    with pytest.raises(ValueError, match="between 1 and T"):
        DiffusionEnsembleInferer(DDIMScheduler(T), num_inference_steps=T + 1)
    with pytest.raises(ValueError, match="DDIMScheduler"):
        DiffusionEnsembleInferer(tiny_scheduler(), num_inference_steps=2)
    with pytest.raises(ValueError, match="3 channels"):
        DiffusionEnsembleInferer(tiny_scheduler(), num_samples=1, progress=False)(
            torch.rand(1, 1, 4, 4), RecordingNetwork(out_channels=3)
        )
    with pytest.raises(ValueError, match="ensemble of 2 samples"):
        SplitEnsembled("pred", num_samples=2)({"pred": torch.rand(4, 4, 4)})


def test_sampling_scheduler_by_config_name() -> None:
    assert isinstance(sampling_scheduler("ddim", T), DDIMScheduler)
    ddpm = sampling_scheduler("ddpm", T)
    assert isinstance(ddpm, LearnedVarianceDDPMScheduler) and ddpm.num_train_timesteps == T
    with pytest.raises(ValueError, match=r"config id 'sampler'.*'heun'"):
        sampling_scheduler("heun", T)

"""Segmentation-ensemble pieces (Wolleb et al., MIDL 2022): learned-variance scheduler and its bound, hybrid loss,
mask prepare-batch, ensemble inferer and its output splitter."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.networks.nets import DiffusionModelUNet, UNet
from monai.networks.schedulers import DDIMScheduler, DDPMScheduler
from scipy.stats import norm

from monai_ext.bundle import sampling_scheduler
from monai_ext.engines import MaskDiffusionPrepareBatch
from monai_ext.inferers import DiffusionEnsembleInferer, MonteCarloDropoutInferer
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


@pytest.mark.parametrize("timesteps", [[0], [1], [3], [T - 1], [0, 3, 5]])
def test_variational_bound_matches_the_definitions(timesteps: list[int]) -> None:
    scheduler = tiny_scheduler()
    g = torch.Generator().manual_seed(sum(timesteps))
    batch = len(timesteps)
    x0 = torch.tensor([[[[-1.0, 1.0], [1.0, 0.2]]]]).repeat(batch, 1, 1, 1)  # the bin edges and an inner value
    noise = torch.randn(x0.shape, generator=g)
    t = torch.tensor(timesteps)
    x_t = scheduler.add_noise(x0, noise, t)
    eps_hat = noise + 0.3 * torch.randn(x0.shape, generator=g)
    v = torch.rand(x0.shape, generator=g) * 2 - 1
    got = scheduler.variational_bound(torch.cat([eps_hat, v], 1), x0, x_t, t)
    assert got.shape == (batch,)
    for i, step in enumerate(timesteps):  # each element of a mixed batch with its own timestep
        expected = reference_terms(x0[i].numpy(), x_t[i].numpy(), eps_hat[i].numpy(), v[i].numpy(), step)
        assert got[i].item() == pytest.approx(expected, rel=1e-4, abs=1e-6)


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


@pytest.mark.parametrize("t", [0, 3])
def test_sampler_step_draws_with_the_log_space_variance(t: int) -> None:
    scheduler = LearnedVarianceDDPMScheduler(T, beta_start=0.01, beta_end=0.2, clip_sample=False)
    betas = np.linspace(0.01, 0.2, T)
    abar = np.cumprod(1 - betas)
    abar_prev = np.concatenate([[1.0], abar[:-1]])
    post = betas * (1 - abar_prev) / (1 - abar)
    log_post = np.log(np.concatenate([[post[1]], post[1:]]))
    x_t, eps, v = torch.randn(1, 1, 2, 2), torch.randn(1, 1, 2, 2), torch.full((1, 1, 2, 2), 0.5)
    x0_hat = (x_t.double() - np.sqrt(1 - abar[t]) * eps.double()) / np.sqrt(abar[t])
    mean = (betas[t] * np.sqrt(abar_prev[t]) * x0_hat + (1 - abar_prev[t]) * np.sqrt(1 - betas[t]) * x_t) / (
        1 - abar[t]
    )
    sd = np.exp(0.5 * (0.75 * np.log(betas[t]) + 0.25 * log_post[t]))  # v = 0.5: frac 0.75 of log beta_t
    drawn = torch.randn(1, 1, 2, 2, generator=torch.Generator().manual_seed(4))
    expected = mean + (sd * drawn if t > 0 else 0)  # no noise is added at the last step
    got, _ = scheduler.step(torch.cat([eps, v], 1), t, x_t, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(got.double(), expected, atol=1e-5)
    linear = DDPMScheduler(T, schedule="linear_beta", beta_start=0.01, beta_end=0.2, variance_type="learned_range")
    if t > 0:
        assert not np.isclose(linear._get_variance(t, v)[0, 0, 0, 0].item(), sd**2)  # MONAI interpolates linearly


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


@pytest.mark.parametrize("kind", ["sample", "v_prediction"])
def test_hybrid_loss_regresses_x0_or_v_and_bounds_the_same_mean(kind: str) -> None:
    """L_simple regresses the scheduler's target, written out here per sample (v = sqrt(abar_t) eps -
    sqrt(1 - abar_t) x0, Salimans & Ho 2022); the bound of an x0 or v output equals the bound of the noise output
    that implies the same x0."""
    scheduler = LearnedVarianceDDPMScheduler(
        num_train_timesteps=T, schedule="linear_beta", beta_start=0.01, beta_end=0.2, prediction_type=kind
    )
    x0 = torch.rand(2, 1, 4, 4) * 2 - 1
    noise = torch.randn(2, 1, 4, 4)
    timesteps = torch.tensor([1, 5])
    abar = torch.tensor(np.cumprod(1 - np.linspace(0.01, 0.2, T))[[1, 5]], dtype=torch.float32).view(2, 1, 1, 1)
    wanted = x0 if kind == "sample" else abar.sqrt() * noise - (1 - abar).sqrt() * x0
    output = torch.randn(2, 2, 4, 4)
    target = {"x0": x0, "noise": noise, "timesteps": timesteps}
    mse = ((output[:, :1] - wanted) ** 2).mean()
    assert HybridDiffusionLoss(scheduler, lambda_vlb=0.0)(output, target).item() == pytest.approx(mse.item(), rel=1e-5)
    x_t = scheduler.add_noise(x0, noise, timesteps)
    x0_hat = output[:, :1] if kind == "sample" else abar.sqrt() * x_t - (1 - abar).sqrt() * output[:, :1]
    eps_hat = (x_t - abar.sqrt() * x0_hat) / (1 - abar).sqrt()
    vlb = tiny_scheduler().variational_bound(torch.cat([eps_hat, output[:, 1:]], 1), x0, x_t, timesteps).mean()
    loss = HybridDiffusionLoss(scheduler, lambda_vlb=0.5)(output, target)
    assert loss.item() == pytest.approx((mse + 0.5 * T * vlb).item(), rel=1e-4)


def test_sampling_scheduler_carries_the_prediction_type_and_names_the_config_id() -> None:
    for sampler in ("ddim", "ddpm"):
        assert sampling_scheduler(sampler, T, prediction_type="v_prediction").prediction_type == "v_prediction"
    with pytest.raises(ValueError, match="'prediction_type'"):
        sampling_scheduler("ddim", T, prediction_type="noise")


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
    other = DiffusionEnsembleInferer(tiny_scheduler(), num_samples=3, seed=8, progress=False)(image, network)
    assert not torch.allclose(first, other)
    split = SplitEnsembled("pred", num_samples=3)({"pred": first[0]})
    samples = split["pred_samples"]
    assert torch.allclose(split["pred_mean"][0], samples.mean(0))
    assert torch.allclose(split["pred_variance"][0], samples.var(0, unbiased=False))
    assert torch.equal(split["pred"][0], (samples.mean(0) > 0.5).float())
    assert samples.min() >= 0 and samples.max() <= 1
    assert split["pred_variance"].max() > 0  # the samples of one image differ: each has its own noise
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
    with pytest.raises(ValueError, match="LearnedVarianceDDPMScheduler"):
        DiffusionEnsembleInferer(DDPMScheduler(T), num_samples=1, progress=False)(
            torch.rand(1, 1, 4, 4), RecordingNetwork(out_channels=2)
        )
    with pytest.raises(ValueError, match="ensemble of 2 samples"):
        SplitEnsembled("pred", num_samples=2)({"pred": torch.rand(4, 4, 4)})


def test_sampling_scheduler_by_config_name() -> None:
    assert isinstance(sampling_scheduler("ddim", T), DDIMScheduler)
    ddpm = sampling_scheduler("ddpm", T)
    assert isinstance(ddpm, LearnedVarianceDDPMScheduler) and ddpm.num_train_timesteps == T
    with pytest.raises(ValueError, match=r"config id 'sampler'.*'heun'"):
        sampling_scheduler("heun", T)


def test_monte_carlo_dropout_ensemble() -> None:
    torch.manual_seed(0)
    network = UNet(spatial_dims=2, in_channels=4, out_channels=2, channels=(4, 8), strides=(2,), dropout=0.5).eval()
    image = torch.rand(2, 4, 8, 8)
    state = torch.random.get_rng_state()
    output = MonteCarloDropoutInferer(num_samples=5, seed=3)(image, network)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's generator is untouched
    assert torch.equal(output, MonteCarloDropoutInferer(num_samples=5, seed=3)(image, network))
    assert output.shape == (2, 3 + 5, 8, 8) and not any(m.training for m in network.modules())
    split = SplitEnsembled("pred", num_samples=5)({"pred": output[0]})
    assert split["pred_variance"].max() > 0 and torch.allclose(split["pred_mean"][0], split["pred_samples"].mean(0))
    assert MonteCarloDropoutInferer(num_samples=1)(image, network)[:, 2].abs().max() == 0


@pytest.mark.parametrize("out_channels", [1, 2])
def test_monte_carlo_dropout_without_drop_is_the_network_probability(out_channels: int) -> None:
    torch.manual_seed(0)
    network = UNet(spatial_dims=2, in_channels=4, out_channels=out_channels, channels=(4, 8), strides=(2,), dropout=0.0)
    network.eval()
    image = torch.rand(1, 4, 8, 8)
    with torch.no_grad():
        logits = network(image)
    expected = torch.sigmoid(logits) if out_channels == 1 else torch.exp(logits[:, 1:]) / torch.exp(logits).sum(1)
    output = MonteCarloDropoutInferer(num_samples=3)(image, network)
    assert torch.allclose(output[:, 1:2], expected, atol=1e-6) and output[:, 2].abs().max() == 0


def test_monte_carlo_dropout_needs_dropout_layers() -> None:
    network = torch.nn.Conv2d(4, 1, 1)
    with pytest.raises(ValueError, match="no dropout layer"):
        MonteCarloDropoutInferer()(torch.rand(1, 4, 8, 8), network)


def test_each_image_draws_its_own_noise_and_the_same_image_the_same() -> None:
    """Regression: one seed per call gave every slice the same noise draws, so a draw whose sample diverged did so
    on every slice (issue 10: the DDPM single-sample Dice of 0.087). The call's seed now includes a checksum of its
    inputs."""
    from monai_ext.inferers.ensemble import input_seed

    first_image, second_image = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    network = RecordingNetwork(out_channels=2)
    inferer = DiffusionEnsembleInferer(tiny_scheduler(), num_samples=2, progress=False)
    for image in (first_image, second_image, first_image):
        inferer(image, network)
    initial = [given[:, 0] for given in network.inputs[::T]]  # the noisy mask of each call's first step
    assert not torch.equal(initial[0], initial[1]) and torch.equal(initial[0], initial[2])
    assert input_seed(0, first_image) == input_seed(0, first_image.clone()) != input_seed(0, second_image)
    assert input_seed(0, first_image) != input_seed(1, first_image)


def test_sampling_starts_from_the_initial_noise() -> None:
    """``initial_noise`` is the draw ``sample`` starts from, for a batch of images (what the divergence benchmark
    reads the first-step masks from)."""
    images = torch.rand(2, 3, 8, 8)
    network = RecordingNetwork(out_channels=2)
    inferer = DiffusionEnsembleInferer(tiny_scheduler(), num_samples=3, seed=5, progress=False)
    inferer.sample(images, network)
    noise, generator = inferer.initial_noise(images)
    assert noise.shape == (6, 1, 8, 8) and isinstance(generator, torch.Generator)
    assert torch.equal(network.inputs[0][:, :1], noise)
    assert inferer.initial_noise(images[:1])[0].shape == (3, 1, 8, 8)
    assert DiffusionEnsembleInferer(tiny_scheduler(), seed=None).initial_noise(images)[1] is None


def test_an_ensemble_too_large_for_memory_is_refused_before_it_allocates(monkeypatch):
    """Issue 29, case 12: --num_samples 200000 died in the allocator asking for 13 GB, naming nothing."""
    from monai_ext.inferers import DiffusionEnsembleInferer
    from monai_ext.inferers import ensemble as module

    network = DiffusionModelUNet(  # the bundle's network: a first convolution of 32 maps, an output of 2
        spatial_dims=2, in_channels=5, out_channels=2, channels=(32, 64, 64), attention_levels=(False, False, True),
        num_res_blocks=1, num_head_channels=32, norm_num_groups=32,
    )  # fmt: skip
    inferer = DiffusionEnsembleInferer(DDIMScheduler(10), num_samples=200000, num_inference_steps=2)
    monkeypatch.setattr(module, "available_memory", lambda device: 8 * 2**30)
    need = 200000 * 64 * 64 * 4 * (4 + 2 + 32) / 2**30  # float32 image, noise and output channels, first layer
    with pytest.raises(MemoryError, match=rf"num_samples = 200000 .* at least {need:.1f} GB on cpu, which has 8\.0 GB"):
        inferer(torch.rand(1, 4, 64, 64), network)
    inferer.num_samples = 2  # what fits runs
    monkeypatch.setattr(module.DiffusionEnsembleInferer, "sampling_timesteps", lambda self, device: torch.tensor([]))
    assert inferer(torch.rand(1, 4, 64, 64), network).shape == (1, 5, 64, 64)

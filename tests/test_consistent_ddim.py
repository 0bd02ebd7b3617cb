"""ConsistentDDIMScheduler: a DDIM step whose x_{t-1} lies on the path between x_t and the clipped x0 (the reference
``ddim_sample``), which MONAI 1.6's DDIMScheduler.step breaks when it clips, and lands on the next timestep run."""

from __future__ import annotations

import math

import pytest
import torch
from monai.networks.schedulers import DDIMScheduler

from monai_ext.bundle import sampling_scheduler
from monai_ext.schedulers import ConsistentDDIMScheduler

T, STEPS = 100, 10


def output_for(kind: str, x0: torch.Tensor, epsilon: torch.Tensor, abar: float) -> torch.Tensor:
    """The network output of prediction type ``kind`` that implies ``x0`` and ``epsilon`` (written out here, not
    taken from the library)."""
    if kind == "epsilon":
        return epsilon
    if kind == "sample":
        return x0
    return math.sqrt(abar) * epsilon - math.sqrt(1 - abar) * x0


def reference_step(x_t: torch.Tensor, x0: torch.Tensor, abar: float, abar_prev: float) -> torch.Tensor:
    """Deterministic DDIM (Song et al., eq. 12, eta = 0) with the noise re-derived from the clipped x0."""
    x0 = x0.clamp(-1, 1)
    epsilon = (x_t - math.sqrt(abar) * x0) / math.sqrt(1 - abar)
    return math.sqrt(abar_prev) * x0 + math.sqrt(1 - abar_prev) * epsilon


@pytest.mark.parametrize("kind", ["epsilon", "sample", "v_prediction"])
def test_step_follows_the_clipped_x0(kind: str) -> None:
    torch.manual_seed(0)
    scheduler = ConsistentDDIMScheduler(T, prediction_type=kind)
    scheduler.set_timesteps(STEPS)
    t = int(scheduler.timesteps[3])
    abar, abar_prev = float(scheduler.alphas_cumprod[t]), float(scheduler.alphas_cumprod[t - T // STEPS])
    x_t = torch.randn(2, 1, 6, 6)
    x0 = 3.0 * torch.sign(torch.randn(2, 1, 6, 6))  # an overshooting mask prediction: clipping is active
    epsilon = (x_t - math.sqrt(abar) * x0) / math.sqrt(1 - abar)
    model_output = output_for(kind, x0, epsilon, abar)
    previous, predicted = scheduler.step(model_output, t, x_t)
    torch.testing.assert_close(predicted, x0.clamp(-1, 1))
    torch.testing.assert_close(previous, reference_step(x_t, x0, abar, abar_prev), rtol=1e-4, atol=1e-5)
    # the noise the step implies at t - 1 is the one it implied at t: x_{t-1} is on the path to the clipped x0
    implied = (previous - math.sqrt(abar_prev) * predicted) / math.sqrt(1 - abar_prev)
    torch.testing.assert_close(implied, (x_t - math.sqrt(abar) * predicted) / math.sqrt(1 - abar), atol=1e-4, rtol=0)


@pytest.mark.parametrize("kind", ["epsilon", "sample", "v_prediction"])
@pytest.mark.parametrize("clip_sample", [True, False])
def test_step_is_monais_when_nothing_is_clipped(kind: str, clip_sample: bool) -> None:
    torch.manual_seed(1)
    ours = ConsistentDDIMScheduler(T, prediction_type=kind, clip_sample=clip_sample)
    theirs = DDIMScheduler(T, prediction_type=kind, clip_sample=clip_sample)
    for scheduler in (ours, theirs):
        scheduler.set_timesteps(STEPS)
    t = int(ours.timesteps[2])
    abar = float(ours.alphas_cumprod[t])
    x0 = torch.rand(1, 2, 5, 5) * 1.6 - 0.8  # inside [-1, 1]
    x_t = math.sqrt(abar) * x0 + math.sqrt(1 - abar) * torch.randn_like(x0)
    model_output = output_for(kind, x0, (x_t - math.sqrt(abar) * x0) / math.sqrt(1 - abar), abar)
    for eta in (0.0, 0.5):
        ours_step = ours.step(model_output, t, x_t, eta=eta, generator=torch.Generator().manual_seed(0))
        theirs_step = theirs.step(model_output, t, x_t, eta=eta, generator=torch.Generator().manual_seed(0))
        for a, b in zip(ours_step, theirs_step, strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(("steps", "total"), [(1, 100), (3, 100), (7, 100), (10, 1000), (50, 1000), (1000, 1000)])
def test_each_step_lands_on_the_next_timestep(steps: int, total: int) -> None:
    scheduler = ConsistentDDIMScheduler(total)
    scheduler.set_timesteps(steps)
    timesteps = scheduler.timesteps.tolist()
    assert len(timesteps) == steps and timesteps[-1] == 0 and timesteps == sorted(timesteps, reverse=True)
    landed = [t - total // steps for t in timesteps]  # where MONAI's step goes from t
    assert landed[:-1] == timesteps[1:] and landed[-1] < 0  # the last step lands on the clean sample


def test_the_bundle_ddim_sampler_is_the_clipped_one() -> None:
    assert isinstance(sampling_scheduler("ddim", T), ConsistentDDIMScheduler)

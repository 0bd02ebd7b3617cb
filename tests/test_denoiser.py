"""The diffusion U-Net as a denoiser: x0 recovered from each prediction type, draws averaged, sizes kept."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DiffusionModelUNet
from monai.networks.schedulers import DDPMScheduler
from torch import nn

from monai_ext.networks import DiffusionDenoiser
from monai_ext.schedulers import predicted_x0


@pytest.mark.parametrize("kind", ["epsilon", "sample", "v_prediction"])
def test_the_ideal_output_of_each_prediction_type_gives_back_x0(kind):
    """With the output a perfect model would give (the noise, x0 itself, or the velocity), x0 comes back."""
    scheduler = DDPMScheduler(num_train_timesteps=100, schedule="cosine", prediction_type=kind)
    x0, noise = torch.rand(3, 1, 5, 5) * 2 - 1, torch.randn(3, 1, 5, 5)
    timesteps = torch.tensor([0, 40, 80])  # not T - 1, where abar_t is ~0 and eps -> x0 is ill-conditioned
    x_t = scheduler.add_noise(original_samples=x0, noise=noise, timesteps=timesteps)
    abar = scheduler.alphas_cumprod[timesteps].view(-1, 1, 1, 1)
    ideal = {"epsilon": noise, "sample": x0, "v_prediction": abar.sqrt() * noise - (1 - abar).sqrt() * x0}[kind]
    assert torch.allclose(predicted_x0(scheduler, ideal, x_t, timesteps), x0, atol=1e-3)


class Constant(nn.Module):
    """A 'U-Net' whose x0 prediction is one value everywhere, recording the inputs it saw."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value, self.inputs = value, []
        self.down_blocks = nn.ModuleList([nn.Identity()])  # one level: no downsampling

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        self.inputs.append((x.clone(), timesteps.clone()))
        return torch.full_like(x, self.value)


def test_denoiser_maps_back_to_unit_range_resizes_and_averages_every_draw():
    scheduler = DDPMScheduler(num_train_timesteps=250, schedule="cosine", prediction_type="sample")
    unet = Constant(0.5)
    denoiser = DiffusionDenoiser(unet, scheduler, timestep=50, num_draws=3, input_size=(8, 8, 8))
    out = denoiser(torch.rand(2, 1, 6, 6, 6))
    assert out.shape == (2, 1, 6, 6, 6) and torch.allclose(out, torch.full_like(out, 0.75))
    assert len(unet.inputs) == 3 and all(x.shape == (2, 1, 8, 8, 8) for x, _ in unet.inputs)
    assert all(bool((t == 50).all()) for _, t in unet.inputs)
    assert not torch.equal(unet.inputs[0][0], unet.inputs[1][0]), "each draw has its own noise"


def test_denoiser_is_seeded_and_checks_its_arguments():
    torch.manual_seed(0)
    unet = DiffusionModelUNet(
        spatial_dims=3, in_channels=1, out_channels=1, channels=(8, 8, 16),
        attention_levels=(False, False, False), num_res_blocks=1, norm_num_groups=8,
    )  # fmt: skip
    scheduler = DDPMScheduler(num_train_timesteps=250, schedule="cosine", prediction_type="sample")
    image = torch.rand(1, 1, 16, 16, 16)
    first, second = (DiffusionDenoiser(unet, scheduler, num_draws=2)(image) for _ in range(2))
    assert torch.equal(first, second) and first.shape == image.shape
    with pytest.raises(ValueError, match=r"timestep must be in \[0, 250\)"):
        DiffusionDenoiser(unet, scheduler, timestep=250)
    with pytest.raises(ValueError, match="num_draws must be >= 1"):
        DiffusionDenoiser(unet, scheduler, num_draws=0)


def test_reflect_padding_reaches_the_unet_and_is_cropped_from_the_prediction():
    scheduler = DDPMScheduler(num_train_timesteps=250, schedule="cosine", prediction_type="sample")
    unet = Constant(0.5)
    out = DiffusionDenoiser(unet, scheduler, num_draws=1, padding=3)(torch.rand(1, 1, 6, 7, 8))
    assert out.shape == (1, 1, 6, 7, 8) and unet.inputs[0][0].shape == (1, 1, 12, 13, 14)
    x_t = unet.inputs[0][0]
    assert torch.equal(x_t[..., :3], x_t[..., 4:7].flip(-1)), "the padding is the input's reflection"

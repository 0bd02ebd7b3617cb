"""UpsampledFeatures: the consistency loss on diffusion features computed on the stages' own grids, against the same
loss on the features upsampled with F.interpolate (issue 31, item 6)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_ext.losses import ConsistencyLoss
from monai_ext.networks import UpsampledFeatures
from monai_ext.networks.upsampled_features import interpolation_matrix


def _stages(spatial_dims: int) -> tuple[list[torch.Tensor], tuple[int, ...]]:
    """Three stages of 6 / 4 / 3 channels on coarse grids, at different scales and offsets, and the image grid."""
    generator = torch.Generator().manual_seed(0)
    grids = [(3, 4, 2), (6, 8, 4), (12, 16, 8)]
    stages = [
        torch.randn(2, channels, *grid[:spatial_dims], generator=generator) * scale + shift
        for channels, grid, scale, shift in zip((6, 4, 3), grids, (3.0, 1.0, 0.5), (1.0, -2.0, 0.0), strict=True)
    ]
    return stages, (24, 32, 16)[:spatial_dims]


def _interpolated(stages: list[torch.Tensor], size: tuple[int, ...]) -> torch.Tensor:
    mode = "trilinear" if len(size) == 3 else "bilinear"
    return torch.cat([F.interpolate(f, size=size, mode=mode, align_corners=False) for f in stages], dim=1)


def test_interpolation_matrix_is_linear_resizing():
    signal = torch.randn(1, 1, 7, dtype=torch.float64)
    expected = F.interpolate(signal, size=19, mode="linear", align_corners=False)[0, 0]
    assert torch.allclose(interpolation_matrix(7, 19, torch.float64) @ signal[0, 0], expected)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_dense_is_f_interpolate(spatial_dims):
    stages, size = _stages(spatial_dims)
    features = UpsampledFeatures(stages, size)
    assert features.shape == (2, 13, *size)
    assert torch.allclose(features.dense(), _interpolated(stages, size), atol=1e-5)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_adjoint_satisfies_the_inner_product_identity(spatial_dims):
    stages, size = _stages(spatial_dims)
    features = UpsampledFeatures(stages, size)
    masks = torch.rand(2, 5, *size)
    for s, f in enumerate(stages):
        coarse = torch.rand(2, 5, *f.shape[2:])
        upsampled = _interpolated([coarse], size)
        assert torch.allclose((features.adjoint(masks, s) * coarse).sum(), (masks * upsampled).sum(), rtol=1e-5)


@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_statistics_equal_those_of_the_upsampled_features(spatial_dims):
    stages, size = _stages(spatial_dims)
    features = UpsampledFeatures(stages, size)
    dense = _interpolated(stages, size).flatten(2).double()
    masks = torch.softmax(torch.randn(2, 4, *size), dim=1)
    centred = dense - dense.mean(-1, keepdim=True)
    expected_sums = torch.einsum("bkn,bcn->bkc", masks.flatten(2).double(), centred)
    assert torch.allclose(features.centred_part_sums(masks).double(), expected_sums, rtol=1e-4, atol=1e-3)
    assert torch.allclose(features.mean().double(), dense.mean(-1), rtol=1e-4, atol=1e-5)
    assert torch.allclose(features.centred_sum_of_squares().double(), centred.pow(2).sum((1, 2)), rtol=1e-4)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("spatial_dims", [2, 3])
def test_consistency_loss_and_gradient_equal_the_dense_computation(spatial_dims, normalize):
    stages, size = _stages(spatial_dims)
    logits = torch.randn(2, 4, *size, generator=torch.Generator().manual_seed(1), requires_grad=True)
    loss = ConsistencyLoss(normalize=normalize)
    dense = loss(torch.softmax(logits, 1), _interpolated(stages, size))
    (dense_grad,) = torch.autograd.grad(dense, logits)
    coarse = loss(torch.softmax(logits, 1), UpsampledFeatures(stages, size))
    (coarse_grad,) = torch.autograd.grad(coarse, logits)
    assert torch.allclose(coarse, dense, rtol=1e-5)
    assert torch.allclose(coarse_grad, dense_grad, rtol=1e-3, atol=1e-4 * dense_grad.abs().max())


def test_features_far_from_zero_and_autocast_keep_the_loss_accurate():
    """Regression (review): with uncentred sums, features offset by 100 lost about 4e-3 of the loss in float32 and
    far more under autocast; the stages are now centred and the statistics kept in float32."""
    stages, size = _stages(3)
    shifted = [f + 100.0 for f in stages]
    masks = torch.softmax(torch.randn(2, 4, *size, generator=torch.Generator().manual_seed(2)), 1)
    h = _interpolated([f.double() for f in shifted], size).flatten(2)  # B, C, N
    m = masks.double().flatten(2)  # B, K, N
    centres = torch.einsum("bkn,bcn->bkc", m, h) / (m.sum(-1)[..., None] + 1e-5)
    distances = (h[:, None] - centres[..., None]).pow(2).sum(2)  # B, K, N: the K-means objective, term by term
    expected = float((m * distances).sum((1, 2)).mean() / h.shape[-1])
    assert float(ConsistencyLoss()(masks, UpsampledFeatures(shifted, size))) == pytest.approx(expected, rel=1e-5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_amp = ConsistencyLoss()(masks.bfloat16(), UpsampledFeatures([f.bfloat16() for f in shifted], size))
    assert under_amp.dtype == torch.float32 and float(under_amp) == pytest.approx(expected, rel=1e-2)


def test_bad_stages_are_refused():
    with pytest.raises(ValueError, match="at least one stage"):
        UpsampledFeatures([], (8, 8, 8))
    with pytest.raises(ValueError, match="one B"):
        UpsampledFeatures([torch.zeros(1, 2, 4, 4, 4), torch.zeros(2, 2, 4, 4, 4)], (8, 8, 8))
    with pytest.raises(ValueError, match="must share batch and spatial shape"):
        ConsistencyLoss()(torch.ones(1, 2, 8, 8, 4) / 2, UpsampledFeatures([torch.zeros(1, 2, 4, 4, 4)], (8, 8, 8)))

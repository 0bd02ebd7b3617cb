"""The CUTS encoder, patch reconstructor, pair mining and objective against direct computations."""

from __future__ import annotations

import math

import pytest
import torch

from monai_ext.losses.contrastive import (
    CUTSLoss,
    extract_patches,
    mine_positive_pairs,
    nt_xent,
    patch_ssim,
    pixel_patches,
)
from monai_ext.networks.cuts import CUTSEncoder, PatchAutoencoder, PatchReconstructor


def test_encoder_keeps_the_grid_and_sees_a_17_pixel_window() -> None:
    encoder = CUTSEncoder(in_channels=3).eval()
    x = torch.rand(2, 3, 24, 20, requires_grad=True)
    z = encoder(x)
    assert z.shape == (2, 128, 24, 20)
    z[0, :, 12, 10].sum().backward()
    reached = x.grad[0].abs().sum(0).nonzero()
    assert reached[:, 0].min() == 12 - 8 and reached[:, 0].max() == 12 + 8  # four 5 x 5 convolutions
    assert reached[:, 1].min() == 10 - 8 and reached[:, 1].max() == 10 + 8
    assert PatchReconstructor(128, 3)(z.permute(0, 2, 3, 1)).shape == (2, 24, 20, 3, 5, 5)
    with pytest.raises(ValueError, match="odd"):
        CUTSEncoder(1, kernel_size=4)
    with pytest.raises(ValueError, match=r"expected \(B, 3, H, W\)"):
        encoder(torch.rand(1, 1, 8, 8))


def test_patch_ssim_matches_the_formula_written_out() -> None:
    generator = torch.Generator().manual_seed(0)
    a, b = torch.rand(2, 5, 5, generator=generator), torch.rand(2, 5, 5, generator=generator)
    expected = []
    for channel in range(2):
        u, v = a[channel].flatten().tolist(), b[channel].flatten().tolist()
        mu_u, mu_v = sum(u) / 25, sum(v) / 25
        var_u = sum((p - mu_u) ** 2 for p in u) / 25
        var_v = sum((q - mu_v) ** 2 for q in v) / 25
        cov = sum((p - mu_u) * (q - mu_v) for p, q in zip(u, v, strict=True)) / 25
        c1, c2 = 0.01**2, 0.03**2
        expected.append((2 * mu_u * mu_v + c1) * (2 * cov + c2) / ((mu_u**2 + mu_v**2 + c1) * (var_u + var_v + c2)))
    assert float(patch_ssim(a, b)) == pytest.approx(sum(expected) / 2, rel=1e-5)
    assert float(patch_ssim(a, a)) == pytest.approx(1.0, rel=1e-6)


def test_extract_patches_equals_slicing() -> None:
    x = torch.rand(2, 3, 12, 10)
    centres = torch.tensor([[[2, 2], [5, 7]], [[9, 4], [6, 6]]])
    patches = extract_patches(x, centres, 5)
    for b in range(2):
        for s in range(2):
            r, c = centres[b, s].tolist()
            assert torch.equal(patches[b, s], x[b, :, r - 2 : r + 3, c - 2 : c + 3])


def test_mined_positives_are_near_similar_and_inside() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.zeros(3, 1, 32, 32)
    x[:, :, :, 16:] = 1.0
    x += 0.05 * torch.rand(x.shape, generator=generator)
    anchors, positives, valid = mine_positive_pairs(x, 16, 5, 10, 0.5, generator)
    assert anchors.shape == positives.shape == (3, 16, 2) and valid.shape == (3, 16)
    assert (anchors - positives).abs().max() <= 5 and (anchors != positives).any(-1)[valid].all()
    assert anchors.min() >= 2 and positives.min() >= 2 and anchors.max() <= 29 and positives.max() <= 29
    ssim = patch_ssim(extract_patches(x, anchors, 5), extract_patches(x, positives, 5))
    assert (ssim[valid] >= 0.5).all() and (ssim[~valid] < 0.5).all()
    with pytest.raises(ValueError, match="4 x 9 pixels are smaller than the 5 x 5 patch"):
        mine_positive_pairs(torch.rand(1, 1, 4, 9), 4)


def test_positive_radius_bounds_the_positives_and_defaults_to_the_patch() -> None:
    x = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(1))

    def mined(radius: int | None) -> tuple[torch.Tensor, ...]:
        return mine_positive_pairs(x, 16, 5, 10, 0.0, torch.Generator().manual_seed(0), radius)

    anchors, positives, _ = mined(2)
    assert (anchors - positives).abs().max() == 2
    assert all(torch.equal(a, b) for a, b in zip(mined(None), mined(5), strict=True))
    assert (mined(None)[1] - mined(None)[0]).abs().max() > 2
    for bad in (0, 2.0, True, "null"):
        with pytest.raises(ValueError, match=r"radius must be an integer >= 1 or None \(the patch size\), got"):
            mined(bad)


def test_cuts_loss_mines_within_its_positive_radius(monkeypatch: pytest.MonkeyPatch) -> None:
    import monai_ext.losses.contrastive as contrastive

    radii = []

    def mine(*args: object) -> tuple[torch.Tensor, ...]:
        radii.append(args[-1])
        return mine_positive_pairs(*args)

    monkeypatch.setattr(contrastive, "mine_positive_pairs", mine)
    reconstructor = PatchReconstructor(embedding_dim=8, out_channels=1)
    x = torch.rand(2, 1, 16, 16)
    for radius in (None, 1):
        CUTSLoss(reconstructor, anchors_per_image=4, positive_radius=radius)(torch.rand(2, 8, 16, 16), x)
    assert radii == [None, 1]
    with pytest.raises(ValueError, match=r"positive_radius must be an integer >= 1 or None .* got 'null'"):
        CUTSLoss(reconstructor, positive_radius="null")


def test_nt_xent_matches_a_loop_and_prefers_identical_pairs() -> None:
    generator = torch.Generator().manual_seed(0)
    anchors, positives = torch.randn(2, 6, 8, generator=generator), torch.randn(2, 6, 8, generator=generator)
    total = 0.0
    for b in range(2):
        for i in range(6):
            sims = [
                float(torch.dot(anchors[b, i], positives[b, j]) / (anchors[b, i].norm() * positives[b, j].norm()))
                for j in range(6)
            ]
            total += -sims[i] / 0.5 + math.log(sum(math.exp(s / 0.5) for s in sims))
    assert float(nt_xent(anchors, positives, 0.5)) == pytest.approx(total / 12, rel=1e-5)
    assert nt_xent(anchors, anchors, 0.5) < nt_xent(anchors, positives, 0.5)
    valid = torch.zeros(2, 6, dtype=torch.bool)
    assert float(nt_xent(anchors, positives, 0.5, valid)) == 0.0


def test_cuts_loss_trains_encoder_and_reconstructor() -> None:
    torch.manual_seed(0)
    encoder = CUTSEncoder(in_channels=1, channels=(4, 8))
    loss = CUTSLoss(PatchReconstructor(embedding_dim=8, out_channels=1), anchors_per_image=4, seed=0)
    x = torch.rand(2, 1, 16, 16)
    value = loss(encoder(x), x)
    value.backward()
    assert value.ndim == 0 and torch.isfinite(value)
    assert encoder.layers[0].weight.grad.abs().sum() > 0 and loss.reconstructor.linear.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="differ in batch or H x W"):
        loss(encoder(x), x[:, :, :8])
    with pytest.raises(ValueError, match="contrastive_weight"):
        CUTSLoss(loss.reconstructor, contrastive_weight=2.0)
    with pytest.raises(ValueError, match=r"expected \(1, 3, 3\)"):
        CUTSLoss(loss.reconstructor, patch_size=3, anchors_per_image=4)(encoder(x), x)


def test_pixel_patches_match_extract_patches_inside_and_repeat_the_border() -> None:
    x = torch.rand(2, 3, 9, 11)
    dense = pixel_patches(x, 5)
    assert dense.shape == (2, 75, 9, 11)
    for i, j in [(2, 2), (4, 7), (6, 8)]:
        centre = torch.tensor([[[i, j]]] * 2)
        assert torch.equal(dense[:, :, i, j], extract_patches(x, centre, 5)[:, 0].flatten(1))
    corner = dense[0, :, 0, 0].reshape(3, 5, 5)  # rows and columns -2, -1 repeat row / column 0
    assert torch.equal(corner[:, 0], corner[:, 2]) and torch.equal(corner[:, :, 1], corner[:, :, 2])
    assert torch.equal(corner[:, 2:, 2:], x[0, :, :3, :3])


def test_patch_autoencoder_reconstructs_every_pixel_patch() -> None:
    encoder, reconstructor = CUTSEncoder(2, channels=(4, 8)), PatchReconstructor(8, 2, patch_size=3)
    x = torch.rand(1, 2, 7, 6)
    out = PatchAutoencoder(encoder, reconstructor)(x)
    assert out.shape == pixel_patches(x, 3).shape == (1, 18, 7, 6)
    z = encoder(x)
    assert torch.allclose(out[0, :, 3, 4], reconstructor(z[0, :, 3, 4]).flatten())

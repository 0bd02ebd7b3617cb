"""PartSeparationLoss against a hand computation, and its gradient on a part that copies another."""

from __future__ import annotations

import math

import pytest
import torch

from monai_ext.losses import DiscoveryLoss, PartSeparationLoss


def test_value_is_the_mean_gaussian_kernel_of_the_part_means_in_standard_deviations():
    values = torch.tensor([0.0, 0.0, 1.0, 1.0, 2.0, 2.0])[None, None]
    masks = torch.tensor([[1.0, 1, 0, 0, 0, 0], [0, 0, 1, 1, 0, 0], [0, 0, 0, 0, 1, 1]])[None]
    sd = float(values.std())
    means = [0.0, 1 / sd, 2 / sd]  # part means of the values divided by their standard deviation
    scale = 0.5
    pairs = [(a, b) for a in range(3) for b in range(3) if a != b]
    expected = sum(math.exp(-((means[a] - means[b]) ** 2) / (2 * scale**2)) for a, b in pairs) / 6
    assert float(PartSeparationLoss(scale)(masks, values)) == pytest.approx(expected, rel=1e-5)
    same = torch.tensor([[0.5] * 6, [0.5] * 6])[None]  # two parts with one mean: every pair counts 1
    assert float(PartSeparationLoss(scale)(same, values)) == pytest.approx(1.0)


def test_a_copy_of_a_part_is_pushed_to_voxels_of_other_values():
    """Parts 0 and 1 share the background (values near 0), part 2 holds the bright voxels: descending the term
    moves part 1 (slightly brighter on average) towards the bright voxels and part 0 away from them."""
    values = torch.cat([torch.linspace(0.0, 0.1, 100), torch.ones(20)])[None, None]
    logits = torch.zeros(1, 3, 120)
    logits[0, 0, :100], logits[0, 1, :100] = 2.0, 2.0
    logits[0, 1, :100] += torch.linspace(-0.1, 0.1, 100)  # part 1 leans to the brighter background voxels
    logits[0, 2, 100:] = 4.0
    logits.requires_grad_()
    loss = PartSeparationLoss(scale=0.5)(torch.softmax(logits, 1), values)
    (grad,) = torch.autograd.grad(loss, logits)
    assert grad[0, 1, 100:].sum() < 0 < grad[0, 0, 100:].sum()


def test_discovery_loss_adds_the_separation_term_on_the_visual_target():
    masks = [torch.softmax(torch.randn(2, 3, 4, 4, 4), 1)]
    image = torch.rand(2, 1, 4, 4, 4)
    total, terms = DiscoveryLoss(lambda_f=0.0, lambda_inv=0.0, lambda_separation=2.0)(masks, None, image, [None])
    expected = float(PartSeparationLoss()(masks[0], image))
    assert terms["loss_separation"] == pytest.approx(expected)
    assert float(total) == pytest.approx(terms["loss_v"] + 2 * expected, rel=1e-6)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="scale"):
        PartSeparationLoss(scale=0.0)
    with pytest.raises(ValueError, match="same B and spatial shape"):
        PartSeparationLoss()(torch.rand(1, 2, 4), torch.rand(1, 1, 5))

"""Terms that keep every part in use (issue 31): the part-usage term and the balanced assignment by Sinkhorn-Knopp,
against hand computations and a brute-force balanced assignment."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from monai_ext.losses import BalancedAssignmentLoss, DiscoveryLoss, PartUsageLoss, hard_shares, sinkhorn_knopp


def _masks_with_a_dead_part() -> torch.Tensor:
    """Logits of 3 parts on 200 voxels: part 0 wins 150, part 1 wins 50, part 2 none (it is 4 below everywhere)."""
    logits = torch.zeros(1, 3, 200)
    logits[0, 0, :150] = 2.0
    logits[0, 1, 150:] = 2.0
    logits[0, 2] = -4.0
    return logits.requires_grad_()


def test_hard_shares_count_argmax_voxels_with_the_gradient_of_the_soft_shares():
    logits = _masks_with_a_dead_part()
    masks = torch.softmax(logits, 1)
    shares = hard_shares(masks)
    torch.testing.assert_close(shares.detach(), torch.tensor([[0.75, 0.25, 0.0]]))
    (grad,) = torch.autograd.grad(shares[0, 2], masks)
    torch.testing.assert_close(grad, torch.zeros_like(masks).index_fill_(1, torch.tensor([2]), 1 / 200))


def test_usage_term_is_the_shortfall_below_the_floor_and_reaches_a_dead_part():
    logits = _masks_with_a_dead_part()
    loss = PartUsageLoss(min_share=0.1)(torch.softmax(logits, 1))
    assert float(loss.detach()) == pytest.approx((0 + 0 + (0.1 - 0.0) / 0.1) / 3)
    (grad,) = torch.autograd.grad(loss, logits)
    assert (grad[0, 2] < 0).all()  # descending the loss raises the dead part's logit at every voxel
    alive = torch.nn.functional.one_hot(torch.arange(50) % 3, 3).T[None].float().repeat(2, 1, 1) * 0.9 + 0.1 / 3
    assert float(PartUsageLoss(min_share=0.1)(alive)) == 0.0


def _brute_force_balanced(scores: np.ndarray, sizes: tuple[int, ...]) -> np.ndarray:
    """The hard assignment of largest total score with ``sizes[k]`` voxels in part k, by trying every one."""
    num_parts, num_voxels = scores.shape
    best, best_total = None, -np.inf
    for labels in itertools.product(range(num_parts), repeat=num_voxels):
        if tuple(np.bincount(labels, minlength=num_parts)) != sizes:
            continue
        total = scores[list(labels), range(num_voxels)].sum()
        if total > best_total:
            best, best_total = np.array(labels), total
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sinkhorn_tends_to_the_best_balanced_assignment(seed):
    generator = np.random.default_rng(seed)
    scores = generator.normal(size=(3, 8))
    sizes = (4, 2, 2)
    expected = _brute_force_balanced(scores, sizes)
    target = torch.tensor(sizes, dtype=torch.float64)[None] / 8
    q = sinkhorn_knopp(torch.as_tensor(scores)[None], target, epsilon=0.01, num_iters=2000)[0]
    np.testing.assert_array_equal(q.argmax(0).numpy(), expected)


def test_sinkhorn_meets_both_marginals():
    log_scores = torch.log_softmax(torch.randn(2, 4, 300, dtype=torch.float64), 1)
    sizes = torch.tensor([[0.7, 0.2, 0.09, 0.01], [0.25, 0.25, 0.25, 0.25]], dtype=torch.float64)
    q = sinkhorn_knopp(log_scores, sizes, epsilon=1.0, num_iters=200)
    torch.testing.assert_close(q.sum(1), torch.ones(2, 300, dtype=torch.float64))
    torch.testing.assert_close(q.mean(-1), sizes)


def test_balanced_assignment_gives_a_dead_part_its_most_likely_voxels_up_to_the_floor():
    logits = _masks_with_a_dead_part()
    with torch.no_grad():
        logits[0, 2] += torch.linspace(0.0, 1.0, 200)  # the dead part is least unlikely on the last voxels
    masks = torch.softmax(logits, 1)
    loss = BalancedAssignmentLoss(min_share=0.05)(masks)
    (grad,) = torch.autograd.grad(loss, logits)
    assert grad[0, 2].sum() < 0 and grad[0, 2, -1] < 0  # descending the loss pulls the dead part up
    target = sinkhorn_knopp(torch.log(masks.detach()), torch.tensor([[0.71, 0.24, 0.05]]), 0.02, 100)
    assert float(target[0, 2].mean()) == pytest.approx(0.05, rel=0.01)  # it is given the floor's share
    assert float(target[0, 2, 100:].sum()) > float(target[0, 2, :100].sum())  # where it is least unlikely


def test_balanced_assignment_is_not_inert_where_soft_shares_hide_a_dead_part():
    """Regression (issue 31 variant study): with the soft shares as the prior and epsilon = 1 the term's gradient
    was exactly 0, and training with it gave the defaults' result to every digit. A part that is nobody's most
    likely part but holds 20 % of the soft mass must be pulled up on its best voxels."""
    logits = torch.zeros(1, 3, 200)
    logits[0, 0, :150], logits[0, 1, 150:] = 1.0, 1.0
    logits[0, 2] = torch.linspace(0.0, 0.9, 200)  # below the winner everywhere, never negligible
    logits.requires_grad_()
    masks = torch.softmax(logits, 1)
    assert float(hard_shares(masks)[0, 2]) == 0 and float(masks[0, 2].mean()) > 0.2
    (grad,) = torch.autograd.grad(BalancedAssignmentLoss(min_share=0.05)(masks), logits)
    assert grad[0, 2, -1] < -1e-5  # the old term's gradient was 0 here: now the part is pulled up on its best voxel


def test_discovery_loss_adds_the_usage_terms_with_their_weights():
    masks = [torch.softmax(_masks_with_a_dead_part().detach().reshape(1, 3, 10, 20), 1)]
    image = torch.rand(1, 1, 10, 20)
    total, terms = DiscoveryLoss(lambda_f=0.0, lambda_inv=0.0, lambda_usage=2.0, lambda_balance=0.5)(
        masks, None, image, [None]
    )
    expected_usage = float(PartUsageLoss()(masks[0]))
    expected_balance = float(BalancedAssignmentLoss()(masks[0]))
    assert terms["loss_usage"] == pytest.approx(expected_usage)
    assert terms["loss_balance"] == pytest.approx(expected_balance, rel=1e-5)
    assert float(total) == pytest.approx(terms["loss_v"] + 2.0 * expected_usage + 0.5 * expected_balance, rel=1e-5)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="min_share"):
        PartUsageLoss(min_share=1.5)
    with pytest.raises(ValueError, match="leaves no room"):
        BalancedAssignmentLoss(min_share=0.4)(torch.full((1, 3, 10), 1 / 3))
    with pytest.raises(ValueError, match="sum to 1"):
        sinkhorn_knopp(torch.zeros(1, 2, 5), torch.tensor([[0.5, 0.6]]))
    with pytest.raises(ValueError, match=r"K >= 2"):
        hard_shares(torch.ones(1, 1, 5))

"""Tests for monai_ext.metrics: Hungarian-matched Dice, relabel, ERGAS."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric
from monai.networks import one_hot

from monai_ext.metrics import ERGASMetric, MatchedDiceMetric, MatchedDiceResult, ergas, matched_dice, relabel

# ---------------------------------------------------------------------------------------------------------------
# helpers


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice of two boolean masks, written independently of the library's confusion matrix."""
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _brute_force(pred: np.ndarray, gt: np.ndarray, parts: list[int]) -> float:
    """Best mean Dice over every injective part <-> class assignment; unmatched classes score 0."""
    classes = sorted(np.unique(gt).tolist())
    d = np.array([[_dice(pred == p, gt == g) for g in classes] for p in parts])
    if len(parts) >= len(classes):
        best = max(
            sum(d[p, g] for g, p in enumerate(perm)) for perm in itertools.permutations(range(len(parts)), len(classes))
        )
    else:
        best = max(
            sum(d[p, g] for p, g in enumerate(perm)) for perm in itertools.permutations(range(len(classes)), len(parts))
        )
    return best / len(classes)


def _random_pair(seed: int, n_parts: int, n_classes: int, shape=(10, 9, 7)) -> tuple[np.ndarray, np.ndarray]:
    """A ground truth with ``n_classes`` blocky classes and a noisy prediction with ``n_parts`` parts."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, n_classes, size=tuple(s // 2 + 1 for s in shape))
    gt = np.kron(coarse, np.ones((2, 2, 2), dtype=np.int64))[: shape[0], : shape[1], : shape[2]]
    gt.flat[:n_classes] = np.arange(n_classes)  # every class present
    mapping = rng.integers(0, n_parts, size=n_classes)
    pred = mapping[gt]
    noise = rng.random(shape) < 0.3
    pred[noise] = rng.integers(0, n_parts, size=int(noise.sum()))
    return pred, gt


# ---------------------------------------------------------------------------------------------------------------
# matched_dice


@pytest.mark.parametrize("n_parts,n_classes", [(3, 3), (5, 3), (2, 4), (4, 5), (5, 5), (1, 3), (3, 1)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matched_dice_equals_brute_force(seed: int, n_parts: int, n_classes: int) -> None:
    pred, gt = _random_pair(seed, n_parts, n_classes)
    parts = sorted(np.unique(pred).tolist())
    res = matched_dice(pred, gt)
    assert res.mean == pytest.approx(_brute_force(pred, gt, parts), abs=1e-12)
    assert set(res.per_class) == set(np.unique(gt).tolist())
    for g, p in res.matching.items():  # reported per-class Dice is the Dice of the reported pair
        expected = 0.0 if p is None else _dice(pred == p, gt == g)
        assert res.per_class[g] == pytest.approx(expected, abs=1e-12)
    matched = [p for p in res.matching.values() if p is not None]
    assert len(matched) == len(set(matched)) == min(len(parts), n_classes)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matched_dice_uniform_random_maps_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pred, gt = rng.integers(0, 4, size=(6, 7, 5)), rng.integers(0, 5, size=(6, 7, 5))
    assert matched_dice(pred, gt).mean == pytest.approx(_brute_force(pred, gt, list(range(4))), abs=1e-12)


@pytest.mark.parametrize("seed", [0, 3])
def test_matched_dice_permuted_ground_truth_is_one(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 5, size=(8, 8, 6))
    perm = rng.permutation(5) + 2  # also shift the label values: parts are arbitrary names
    res = matched_dice(perm[gt], gt)
    assert res.mean == 1.0
    assert all(v == 1.0 for v in res.per_class.values())
    assert res.matching == {g: int(perm[g]) for g in range(5)}


def test_matched_dice_hand_computed() -> None:
    gt = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([3, 3, 3, 1, 1, 1, 1, 0])
    # Dice(3,0)=6/7; Dice(1,1)=2*2/(4+2)=2/3; Dice(0,2)=2*1/(1+2)=2/3; any other assignment scores less
    res = matched_dice(pred, gt)
    assert res.matching == {0: 3, 1: 1, 2: 0}
    assert res.per_class == pytest.approx({0: 6 / 7, 1: 2 / 3, 2: 2 / 3})
    assert res.mean == pytest.approx(46 / 63)


def test_unmatched_class_scores_zero() -> None:
    gt = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([3, 3, 3, 1, 1, 1, 1, 3])  # two parts, three classes
    # Dice(3,0)=3/4, Dice(1,1)=2/3 is the best pair set (17/12 vs 13/12 and 1); class 2 stays unmatched
    res = matched_dice(pred, gt)
    assert res.matching == {0: 3, 1: 1, 2: None}
    assert res.per_class == pytest.approx({0: 3 / 4, 1: 2 / 3, 2: 0.0})
    assert res.mean == pytest.approx(17 / 36)


def test_num_parts_adds_absent_parts_with_zero_dice() -> None:
    gt = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    pred = np.array([3, 3, 3, 1, 1, 1, 1, 3])
    res = matched_dice(pred, gt, num_parts=5, num_classes=3)
    assert res.mean == pytest.approx(17 / 36)
    assert res.matching[2] in {0, 2, 4} and res.per_class[2] == 0.0


def test_matched_dice_torch_and_float_labels() -> None:
    pred, gt = _random_pair(5, 4, 3)
    ref = matched_dice(pred, gt)
    assert matched_dice(torch.as_tensor(pred), torch.as_tensor(gt)) == ref
    assert matched_dice(torch.as_tensor(pred).float(), gt.astype(np.float32)) == ref
    assert isinstance(ref, MatchedDiceResult)


def test_matched_dice_large_sparse_labels() -> None:
    gt = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([10**9, 10**9, 7, 7, 7, 10**9])
    res = matched_dice(pred, gt)
    assert res.matching == {0: 10**9, 1: 7, 2: None}
    assert res.per_class[0] == pytest.approx(2 * 2 / (3 + 2))


# ---------------------------------------------------------------------------------------------------------------
# bad inputs


@pytest.mark.parametrize(
    "pred,target,kwargs,match",
    [
        (np.zeros((4, 5), int), np.zeros((5, 4), int), {}, r"\(4, 5\).*\(5, 4\)"),
        (np.array([0.0, np.nan]), np.array([0, 1]), {}, "NaN"),
        (np.zeros((0, 3), int), np.zeros((0, 3), int), {}, "empty"),
        (np.array([0.0, 0.5]), np.array([0, 1]), {}, "non-integer"),
        (np.array([0, 1]), np.array([0, -1]), {}, "negative"),
        (np.array([0, 3]), np.array([0, 1]), {"num_parts": 3}, "num_parts"),
        (np.array([0, 1]), np.array([0, 4]), {"num_classes": 3}, "num_classes"),
        (np.array([0, 1]), np.array([0, 1]), {"num_parts": 0}, "num_parts"),
        (np.array(["a", "b"]), np.array([0, 1]), {}, "dtype"),
    ],
)
def test_matched_dice_bad_inputs(pred, target, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        matched_dice(pred, target, **kwargs)


def test_metric_bad_inputs() -> None:
    m = MatchedDiceMetric()
    with pytest.raises(ValueError, match=r"\(2, 1, 4, 4\).*\(2, 1, 4, 5\)"):
        m(torch.zeros(2, 1, 4, 4), torch.zeros(2, 1, 4, 5))
    probs = torch.rand(2, 3, 4, 4)
    probs[0, 1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        m(probs, torch.zeros(2, 1, 4, 4))
    with pytest.raises(ValueError, match="empty"):
        m(torch.zeros(2, 1, 0, 4), torch.zeros(2, 1, 0, 4))
    with pytest.raises(ValueError, match="dimensions"):
        m(torch.zeros(2, 4), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="non-integer"):
        m(torch.full((1, 1, 2, 2), 0.5), torch.zeros(1, 1, 2, 2))
    with pytest.raises(ValueError, match="num_parts"):
        MatchedDiceMetric(num_parts=-1)
    with pytest.raises(ValueError):
        MatchedDiceMetric(reduction="median")


# ---------------------------------------------------------------------------------------------------------------
# MatchedDiceMetric


def _batch(seeds, n_parts=4, n_classes=3) -> tuple[torch.Tensor, torch.Tensor]:
    pairs = [_random_pair(s, n_parts, n_classes) for s in seeds]
    pred = torch.as_tensor(np.stack([p for p, _ in pairs]))[:, None]
    gt = torch.as_tensor(np.stack([g for _, g in pairs]))[:, None]
    return pred, gt


def test_metric_matches_functional_and_aggregates() -> None:
    pred, gt = _batch([0, 1, 2])
    m = MatchedDiceMetric()
    out = m(pred, gt)
    expected = [matched_dice(p[0], g[0]) for p, g in zip(pred, gt, strict=True)]
    assert out.shape == (3, 1) and out.dtype == torch.float32
    assert out[:, 0].tolist() == pytest.approx([r.mean for r in expected], abs=1e-6)
    assert m.last_results == expected
    assert m.aggregate().item() == pytest.approx(np.mean([r.mean for r in expected]), abs=1e-6)
    assert m.aggregate("none").shape == (3, 1)
    assert m.aggregate("sum").item() == pytest.approx(sum(r.mean for r in expected), abs=1e-5)


def test_metric_one_hot_and_probabilities() -> None:
    pred, gt = _batch([3, 4])
    ref = MatchedDiceMetric()(pred, gt)
    onehot_pred, onehot_gt = one_hot(pred, 4), one_hot(gt, 3)
    assert torch.equal(MatchedDiceMetric()(onehot_pred, onehot_gt), ref)
    probs = torch.softmax(onehot_pred * 5 + 0.1 * torch.rand_like(onehot_pred), dim=1)
    assert torch.equal(MatchedDiceMetric()(probs, gt), ref)


def test_metric_accumulates_and_resets() -> None:
    pred_a, gt_a = _batch([0, 1])
    pred_b, gt_b = _batch([2, 3, 4])
    m = MatchedDiceMetric(num_parts=4, num_classes=3, get_not_nans=True)
    m(pred_a, gt_a)
    m(pred_b, gt_b)
    assert len(m.last_results) == 3  # last call only
    every = [
        matched_dice(p[0], g[0], 4, 3).mean
        for p, g in zip(torch.cat([pred_a, pred_b]), torch.cat([gt_a, gt_b]), strict=True)
    ]
    value, not_nans = m.aggregate()
    assert value.item() == pytest.approx(np.mean(every), abs=1e-6)
    assert not_nans.item() == 5
    m.reset()
    assert m.last_results == [] and m.get_buffer() is None
    with pytest.raises(ValueError, match="aggregate"):
        m.aggregate()
    m(pred_b, gt_b)
    assert m.aggregate()[0].item() == pytest.approx(np.mean(every[2:]), abs=1e-6)


def test_metric_list_input_keeps_all_results() -> None:
    pred, gt = _batch([5, 6, 7])
    m = MatchedDiceMetric()
    out = m(list(pred), list(gt))
    assert out.shape == (3, 1) and len(m.last_results) == 3
    assert torch.equal(out, MatchedDiceMetric()(pred, gt))


# ---------------------------------------------------------------------------------------------------------------
# relabel


@pytest.mark.parametrize("n_parts,n_classes", [(3, 4), (5, 4), (4, 4)])
def test_relabel_then_monai_dice_equals_matched_per_class(n_parts: int, n_classes: int) -> None:
    pred, gt = _random_pair(11, n_parts, n_classes)
    res = matched_dice(pred, gt)
    assert len(res.per_class) == n_classes  # all classes present, so DiceMetric returns no NaN
    lab = relabel(pred, res, unmatched=n_classes)
    y_pred = one_hot(torch.as_tensor(lab)[None, None], n_classes + 1)[:, :n_classes]
    y = one_hot(torch.as_tensor(gt)[None, None], n_classes)
    dice = DiceMetric(include_background=True, reduction="none")(y_pred, y)[0]
    assert dice.tolist() == pytest.approx([res.per_class[g] for g in range(n_classes)], abs=1e-6)


def test_relabel_values_and_types() -> None:
    pred = np.array([[3, 3, 1], [1, 0, 5]])
    matching = {0: 3, 1: 1, 2: None}
    assert relabel(pred, matching).tolist() == [[0, 0, 1], [1, -1, -1]]
    assert relabel(pred, matching, unmatched=9).tolist() == [[0, 0, 1], [1, 9, 9]]
    out = relabel(torch.as_tensor(pred), matching)
    assert isinstance(out, torch.Tensor) and out.tolist() == [[0, 0, 1], [1, -1, -1]]
    with pytest.raises(ValueError, match="same predicted part"):
        relabel(pred, {0: 3, 1: 3})
    with pytest.raises(ValueError, match="negative"):
        relabel(np.array([-1, 0]), matching)


# ---------------------------------------------------------------------------------------------------------------
# ERGAS


def _ergas_numpy(pred: np.ndarray, ref: np.ndarray, ratio: float) -> float:
    """Wald (2000): 100 * h/l * sqrt(1/C * sum_c (RMSE_c / mean_c)^2), channel-first image."""
    terms = []
    for c in range(ref.shape[0]):
        rmse = np.sqrt(np.mean((pred[c] - ref[c]) ** 2))
        terms.append((rmse / np.mean(ref[c])) ** 2)
    return 100.0 * ratio * np.sqrt(np.mean(terms))


def test_ergas_identical_is_zero() -> None:
    img = np.random.default_rng(0).random((3, 16, 16)) + 0.5
    assert ergas(img, img) == 0.0
    assert ERGASMetric()(torch.as_tensor(img)[None], torch.as_tensor(img)[None]).item() == 0.0


def test_ergas_matches_numpy_formula() -> None:
    rng = np.random.default_rng(1)
    ref = rng.random((2, 3, 12, 10)) * np.array([1.0, 5.0, 0.2])[None, :, None, None] + 0.1
    pred = ref + rng.normal(0, 0.1, ref.shape)
    expected = [_ergas_numpy(pred[b], ref[b], 0.25) for b in range(2)]
    assert ergas(pred[0], ref[0], ratio=0.25) == pytest.approx(expected[0], rel=1e-12)
    m = ERGASMetric(ratio=0.25)
    out = m(torch.as_tensor(pred), torch.as_tensor(ref))
    assert out.shape == (2, 1) and out.dtype == torch.float64
    assert out[:, 0].tolist() == pytest.approx(expected, rel=1e-12)
    m(torch.as_tensor(pred[:1]), torch.as_tensor(ref[:1]))
    assert m.aggregate().item() == pytest.approx(
        np.mean([*expected, expected[0]]), rel=1e-6
    )  # MONAI reduces in float32


def test_ergas_ratio_scales_linearly() -> None:
    rng = np.random.default_rng(2)
    ref = rng.random((2, 8, 8, 4)) + 1.0
    pred = ref * 1.1
    base = ergas(pred, ref)
    assert base > 0
    assert ergas(pred, ref, ratio=0.25) == pytest.approx(0.25 * base, rel=1e-12)
    assert ergas(torch.as_tensor(pred), torch.as_tensor(ref), ratio=4) == pytest.approx(4 * base, rel=1e-12)
    # constant channels, 10 % error in each: RMSE_c / mean_c = 0.1 -> ERGAS = 100 * ratio * 0.1
    flat = np.stack([np.full((8, 8), 2.0), np.full((8, 8), 7.0)])
    assert ergas(flat * 1.1, flat) == pytest.approx(10.0, rel=1e-12)
    assert ergas(flat * 1.1, flat, ratio=0.5) == pytest.approx(5.0, rel=1e-12)


def test_ergas_zero_mean_channel() -> None:
    ref = np.ones((2, 4, 4))
    ref[1] = 0.0
    pred = ref + 0.1
    with pytest.raises(ValueError, match="channel 1 of batch item 0 has mean 0"):
        ergas(pred, ref)
    # eps floors the denominator: channel 1 contributes (0.1 / eps)^2
    expected = 100 * np.sqrt(((0.1 / 1.0) ** 2 + (0.1 / 0.5) ** 2) / 2)
    assert ergas(pred, ref, eps=0.5) == pytest.approx(expected, rel=1e-12)


def test_ergas_bad_inputs() -> None:
    a = np.ones((2, 4, 4))
    with pytest.raises(ValueError, match=r"\(2, 4, 4\).*\(2, 4, 5\)"):
        ergas(a, np.ones((2, 4, 5)))
    bad = a.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        ergas(bad, a)
    with pytest.raises(ValueError, match="NaN"):
        ergas(a, bad)
    with pytest.raises(ValueError, match="empty"):
        ergas(np.ones((2, 0)), np.ones((2, 0)))
    with pytest.raises(ValueError, match="dimensions"):
        ergas(np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match="ratio"):
        ERGASMetric(ratio=0)
    with pytest.raises(ValueError, match="eps"):
        ERGASMetric(eps=-1.0)
    with pytest.raises(ValueError, match="shapes"):
        ERGASMetric()(torch.ones(1, 2, 4, 4), torch.ones(1, 2, 4, 5))

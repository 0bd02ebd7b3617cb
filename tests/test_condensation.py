"""Diffusion condensation (CUTS sec. 3.2.1) against a dense reference on all points, and its guarantees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from monai_ext.transforms.condensation import (
    DiffusionCondensation,
    DiffusionCondensationd,
    condensation_memory_bytes,
    condense,
)


def dense_reference(
    points: np.ndarray, bandwidth: float, growth: float, threshold: float, max_clusters: int, max_steps: int
) -> tuple[list[int], list[np.ndarray]]:
    """The textbook process on every point (float64 N x N matrices): X <- D^-1 K X, then the points of each
    connected component of the 'at most threshold apart' graph are set to their mean; a level is recorded when the
    number of components falls (to at most max_clusters)."""
    x = points.astype(np.float64).copy()

    def snap(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        close = np.linalg.norm(x[:, None] - x[None], axis=-1) <= threshold
        labels = -np.ones(len(x), dtype=int)
        for start in range(len(x)):  # components by depth-first search
            if labels[start] >= 0:
                continue
            labels[start], stack = labels.max() + 1, [start]
            while stack:
                for other in np.flatnonzero(close[stack.pop()] & (labels < 0)):
                    labels[other] = labels[start]
                    stack.append(other)
        for label in np.unique(labels):
            x[labels == label] = x[labels == label].mean(axis=0)
        return x, labels

    x, labels = snap(x)
    counts, levels, eps = [labels.max() + 1], [labels], bandwidth
    for _ in range(max_steps):
        if counts[-1] == 1:
            break
        kernel = np.exp(-np.square(np.linalg.norm(x[:, None] - x[None], axis=-1)) / eps)
        x = (kernel / kernel.sum(axis=1, keepdims=True)) @ x
        x, labels = snap(x)
        if labels.max() + 1 < counts[-1] and labels.max() + 1 <= max_clusters:
            counts.append(labels.max() + 1)
            levels.append(labels)
        eps *= growth
    return counts, levels


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Two label vectors name the same partition (labels may differ)."""
    pairs = set(zip(np.asarray(a).tolist(), np.asarray(b).tolist(), strict=True))
    return len(pairs) == len(set(np.asarray(a).tolist())) == len(set(np.asarray(b).tolist()))


def blobs(sizes=(30, 20, 25), spread=0.3, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    centres = torch.tensor([[0.0, 0, 0, 0], [8, 8, 0, 0], [8, -8, 0, 0], [0, 0, 9, 1]])
    return torch.cat(
        [centres[i] + spread * torch.randn(n, 4, generator=generator) for i, n in enumerate(sizes)]
    ).double()


def test_three_separated_blobs_give_a_level_of_exactly_the_three() -> None:
    points = blobs()
    result = condense(points)
    assert 3 in result.num_clusters
    three = result.levels[result.num_clusters.index(3)]
    truth = torch.repeat_interleave(torch.arange(3), torch.tensor([30, 20, 25]))
    assert same_partition(three.numpy(), truth.numpy())
    assert result.num_clusters == sorted(result.num_clusters, reverse=True) and result.num_clusters[-1] == 1
    for level, count in zip(result.levels, result.num_clusters, strict=True):
        assert sorted(torch.unique(level).tolist()) == list(range(count))  # labels 0 .. c - 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_fast_path_agrees_with_the_dense_reference(seed: int) -> None:
    points = blobs(sizes=(12, 9, 15, 7), spread=0.8, seed=seed)
    options = {"bandwidth": 2.0, "bandwidth_growth": 1.1, "merge_fraction": 0.01, "max_clusters": 60}
    result = condense(points, **options, max_steps=300)
    diameter = float(torch.cdist(points, points).max())
    counts, levels = dense_reference(points.numpy(), 2.0, 1.1, 0.01 * diameter, max_clusters=60, max_steps=300)
    assert result.num_clusters == counts
    for ours, reference in zip(result.levels, levels, strict=True):
        assert same_partition(ours.numpy(), reference)


def test_landmarks_keep_the_structure_of_many_points() -> None:
    points = blobs(sizes=(400, 300, 500), spread=0.3).float()
    result = condense(points, landmarks=64)
    assert result.num_clusters[0] <= 64 and 3 in result.num_clusters
    three = result.levels[result.num_clusters.index(3)].numpy()
    assert same_partition(three, np.repeat([0, 1, 2], [400, 300, 500]))


def test_maps_and_dictionaries_and_metadata() -> None:
    points = blobs(sizes=(8, 8, 8, 8)).float()  # 32 points as a (4, 4, 8) map of 4-d embeddings
    embedding = points.T.reshape(4, 4, 8)
    levels = DiffusionCondensation()(embedding)
    assert levels.shape[1:] == (4, 8) and levels.dtype == torch.int64
    assert list(levels.meta["num_clusters"]) == [int(level.max()) + 1 for level in levels]
    d = DiffusionCondensationd("emb")({"emb": embedding})
    assert torch.equal(d["emb_levels"], levels) and d["emb_num_clusters"] == levels.meta["num_clusters"]
    matrix = DiffusionCondensation(channel_first=False)(points)
    assert torch.equal(matrix, levels.reshape(len(levels), -1))


def test_bad_input_is_refused_before_work() -> None:
    with pytest.raises(ValueError, match="NaN or infinite"):
        condense(torch.tensor([[0.0, float("nan")], [1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"\(N, d\)"):
        condense(torch.zeros(3))
    with pytest.raises(ValueError, match="bandwidth_growth"):
        DiffusionCondensation(bandwidth_growth=0.5)
    with pytest.raises(ValueError, match="merge_fraction"):
        DiffusionCondensation(merge_fraction=0)
    needed = condensation_memory_bytes(65536, 128, landmarks=8192, max_clusters=256)
    with pytest.raises(ValueError, match=r"needs about .* GB, above max_memory_gb=0.5"):
        condense(torch.zeros(65536, 128), landmarks=8192, max_memory_gb=0.5)
    assert needed > 0.5 * 2**30
    with pytest.raises(ValueError, match="embedding map"):
        DiffusionCondensation()(torch.zeros(5))


def test_one_point_and_identical_points() -> None:
    assert condense(torch.zeros(1, 3)).num_clusters == [1]
    result = condense(torch.ones(10, 3))
    assert result.num_clusters == [1] and torch.equal(result.levels, torch.zeros(1, 10, dtype=torch.long))


def test_spectral_kmeans_separates_blobs_and_refuses_k_above_the_points() -> None:
    from monai_ext.transforms.condensation import SpectralKMeans, spectral_kmeans

    points = blobs(sizes=(30, 20, 25)).float()
    labels = spectral_kmeans(points, k=3)
    assert same_partition(labels.numpy(), np.repeat([0, 1, 2], [30, 20, 25]))
    many = blobs(sizes=(300, 200, 250)).float()
    assert same_partition(spectral_kmeans(many, k=3, landmarks=50).numpy(), np.repeat([0, 1, 2], [300, 200, 250]))
    label_map = SpectralKMeans(k=3)(points.T.reshape(4, 5, 15))
    assert label_map.shape == (1, 5, 15) and same_partition(label_map.flatten().numpy(), labels.numpy())
    with pytest.raises(ValueError, match="k = 80 is larger than the 75 points"):
        spectral_kmeans(points, k=80)
    with pytest.raises(ValueError, match="k must be >= 2"):
        SpectralKMeans(k=1)

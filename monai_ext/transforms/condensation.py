"""Diffusion condensation (Brugnone et al., IEEE Big Data 2019), the coarse-graining stage of CUTS (Liu, Amodio et
al., "CUTS: A Framework for Multigranular Unsupervised Medical Image Segmentation", sec. 3.2.1, eq. 1-4), and the
persistent structures read from its levels (sec. 3.2.2).

The process moves every point to the kernel-weighted mean of the points around it, X <- D^-1 K X with
K(x_m, x_n) = exp(-||x_m - x_n||^2 / eps), recomputes the kernel from the moved points, lets the bandwidth eps grow
and merges points that come within a threshold of each other. Each time the number of clusters falls, the cluster
of every input point is one level of a fine-to-coarse series of segmentations.

Run densely on all N = H * W pixels this needs N x N matrices at every step (the official pipeline's out-of-memory
"bus errors"). Here it runs on weighted cluster centres: points that merge become one centre whose weight is the
number of points it stands for, and a centre's pull on the others is its kernel times its weight, which is the
dense process exactly when merged points coincide. When there are more than ``landmarks`` points, a weighted
k-means first groups them into ``landmarks`` centres (each pixel follows its centre), so every step costs
``landmarks``^2 d at most, and fewer as clusters merge.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

__all__ = [
    "Condensation",
    "DiffusionCondensation",
    "DiffusionCondensationd",
    "SpectralKMeans",
    "SpectralKMeansd",
    "condensation_memory_bytes",
    "condense",
    "spectral_kmeans",
]

_CHUNK_BYTES = 256 * 2**20  # distance blocks of the landmark assignment


@dataclass
class Condensation:
    """The levels of one condensation run.

    Attributes:
        levels: (L, N) int64 cluster labels, 0 .. c_l - 1 in each level, fine to coarse (the order of the process).
        num_clusters: c_l for each level, never increasing; the last is 1 unless ``max_steps`` stopped the run.
        bandwidths: eps at the step that produced each level (the first level: before any step).
        steps: the step that produced each level (0: the first level, before any step).
    """

    levels: torch.Tensor
    num_clusters: list[int]
    bandwidths: list[float]
    steps: list[int]


def condensation_memory_bytes(num_points: int, dims: int, landmarks: int, max_clusters: int) -> int:
    """An upper bound of the working memory of :func:`condense` in bytes: the float32 centre-to-centre matrices
    (distances, kernel, transition: 3 of min(N, landmarks)^2), the landmark assignment's distance blocks, the points
    and the int64 levels of at most ``max_clusters`` + 1 levels of N labels."""
    centres = min(num_points, landmarks)
    assignment = _CHUNK_BYTES if num_points > landmarks else 0
    return 3 * 4 * centres**2 + assignment + 4 * num_points * dims + 8 * num_points * (max_clusters + 1)


def _components(centres: torch.Tensor, threshold: float) -> np.ndarray:
    """Connected components of the graph joining centres at most ``threshold`` apart (the merge)."""
    close = (torch.cdist(centres, centres) <= threshold).nonzero().cpu().numpy()
    graph = coo_matrix((np.ones(len(close)), (close[:, 0], close[:, 1])), shape=(len(centres), len(centres)))
    return connected_components(graph, directed=False)[1]


def _merge(
    centres: torch.Tensor, weights: torch.Tensor, threshold: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge centres at most ``threshold`` apart (transitively) into their weighted mean; return the new centres, their
    weights and the index of each old centre's new one."""
    index = torch.as_tensor(_components(centres, threshold), device=centres.device)
    count = int(index.max()) + 1
    merged_weights = torch.zeros(count, dtype=weights.dtype, device=weights.device).index_add_(0, index, weights)
    sums = torch.zeros(count, centres.shape[1], dtype=centres.dtype, device=centres.device)
    sums.index_add_(0, index, centres * weights[:, None])
    return sums / merged_weights[:, None], merged_weights, index


def _nearest(points: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centre of every point, in blocks of bounded memory."""
    rows = max(1, _CHUNK_BYTES // (4 * len(centres)))
    return torch.cat([torch.cdist(block, centres).argmin(dim=1) for block in points.split(rows)])


def _landmarks(
    points: torch.Tensor, count: int, iterations: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted k-means (Lloyd) to ``count`` centres from a random draw of the points; return the centres, their
    weights (points per centre; a centre that loses all its points is dropped) and each point's centre."""
    pick = torch.randperm(len(points), generator=generator)[:count].to(points.device)
    centres = points[pick].clone()
    for _ in range(iterations + 1):
        assignment = _nearest(points, centres)
        weights = torch.bincount(assignment, minlength=len(centres)).to(points.dtype)
        sums = torch.zeros_like(centres).index_add_(0, assignment, points)
        kept = weights > 0
        centres = torch.where(kept[:, None], sums / weights.clamp(min=1)[:, None], centres)
    used = torch.unique(assignment)
    relabel = torch.full((len(centres),), -1, dtype=torch.long, device=points.device)
    relabel[used] = torch.arange(len(used), device=points.device)
    return centres[used], weights[used], relabel[assignment]


def _initial_bandwidth(centres: torch.Tensor, neighbours: int) -> float:
    """Median squared distance of a centre to its ``neighbours``-th nearest other centre."""
    k = min(neighbours, len(centres) - 1)
    distances = torch.cdist(centres, centres).square()
    kth = distances.kthvalue(k + 1, dim=1).values  # +1: the centre itself is at distance 0
    return max(float(kth.median()), float(torch.finfo(centres.dtype).tiny))


def _centres_of(points: torch.Tensor, landmarks: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The points themselves (weight 1) or, when there are more than ``landmarks``, weighted k-means centres."""
    if len(points) > landmarks:
        return _landmarks(points, landmarks, iterations=5, generator=torch.Generator().manual_seed(seed))
    return points.clone(), torch.ones(len(points), dtype=points.dtype, device=points.device), torch.arange(len(points))


def _check_spectral(k: int, dims: int, neighbours: int, landmarks: int) -> None:
    if k < 2 or dims < 1 or neighbours < 1 or landmarks < 2:
        raise ValueError(
            f"k must be >= 2, dims and neighbours >= 1, landmarks >= 2; got {k}, {dims}, {neighbours}, {landmarks}."
        )


def spectral_kmeans(
    points: torch.Tensor, k: int = 10, dims: int = 3, neighbours: int = 10, landmarks: int = 2048, seed: int = 0
) -> torch.Tensor:
    """k-means on a ``dims``-dimensional diffusion map of ``points`` (N, d): the single-granularity alternative to
    condensation of CUTS (sec. 4, "spectral k-means", k = 10).

    The diffusion map (Coifman & Lafon 2006) of the centres (:func:`condense`'s landmarks, weights as there): the
    Gaussian kernel with the automatic bandwidth, symmetrised with the weights, the eigenvectors 1 .. ``dims`` of
    D^-1/2 W^1/2 K W^1/2 D^-1/2 scaled back by D^-1/2 and by their eigenvalues; then a weighted k-means (scikit-learn)
    of the centres, which every point follows. Returns (N,) int64 labels 0 .. k - 1.

    Raises:
        ValueError: non-finite points, or ``k`` above the number of distinct centres (``k`` larger than the pixels).
    """
    if points.ndim != 2 or not torch.isfinite(points).all():
        raise ValueError(f"points must be finite (N, d), got shape {tuple(points.shape)} or non-finite values.")
    _check_spectral(k, dims, neighbours, landmarks)
    from sklearn.cluster import KMeans

    x = points.double()
    centres, weights, owner = _centres_of(x, landmarks, seed)
    if k > len(centres):
        raise ValueError(f"k = {k} is larger than the {len(centres)} points (or landmarks) to cluster.")
    root = weights.sqrt()
    affinity = (
        root[:, None]
        * torch.exp(-torch.cdist(centres, centres).square() / _initial_bandwidth(centres, neighbours))
        * root[None, :]
    )
    scale = affinity.sum(dim=1).rsqrt()
    values, vectors = torch.linalg.eigh(scale[:, None] * affinity * scale[None, :])
    order = values.argsort(descending=True)[1 : dims + 1]  # skip the trivial first eigenvector
    coordinates = (scale[:, None] / root[:, None] * vectors[:, order] * values[order]).cpu().numpy()
    model = KMeans(n_clusters=k, n_init=4, random_state=seed)
    labels = model.fit_predict(coordinates, sample_weight=weights.cpu().numpy())
    return torch.as_tensor(labels, dtype=torch.long, device=points.device)[owner.to(points.device)]


def condense(
    points: torch.Tensor,
    bandwidth: float | None = None,
    bandwidth_growth: float = 1.025,
    merge_fraction: float = 1e-3,
    neighbours: int = 10,
    landmarks: int = 2048,
    max_clusters: int = 256,
    max_steps: int = 2000,
    max_memory_gb: float | None = 4.0,
    seed: int = 0,
) -> Condensation:
    """Diffusion condensation of ``points`` (N, d), on weighted cluster centres.

    Args:
        points: (N, d) finite embeddings, N >= 1 (float64 stays float64; other types run in float32).
        bandwidth: eps of the first step; None: the median squared distance of a centre to its ``neighbours``-th
            nearest centre.
        bandwidth_growth: factor of eps per step, >= 1 (1.025: the authors' code grows it by 2.5 %).
        merge_fraction: centres at most this fraction of the initial centres' diameter apart merge, in (0, 1).
        neighbours: the neighbour rank of the automatic bandwidth, >= 1.
        landmarks: at most this many centres: more points are grouped first by a weighted k-means, >= 2.
        max_clusters: record levels with at most this many clusters (the first level always), >= 1.
        max_steps: stop after this many steps even when more than one cluster is left, >= 1.
        max_memory_gb: refuse, before allocating, a run whose :func:`condensation_memory_bytes` exceeds this; None
            never refuses.
        seed: seed of the landmark draw.

    Raises:
        ValueError: a bad argument, points not (N, d), with NaN or infinity, or a run over ``max_memory_gb``.
    """
    if points.ndim != 2 or len(points) < 1:
        raise ValueError(f"points must be (N, d) with N >= 1, got shape {tuple(points.shape)}.")
    if not torch.isfinite(points).all():
        raise ValueError("points hold NaN or infinite values: condensation needs finite embeddings.")
    if bandwidth is not None and not bandwidth > 0:
        raise ValueError(f"bandwidth must be > 0, got {bandwidth}.")
    if not bandwidth_growth >= 1:
        raise ValueError(f"bandwidth_growth must be >= 1, got {bandwidth_growth}.")
    if not 0 < merge_fraction < 1:
        raise ValueError(f"merge_fraction must be in (0, 1), got {merge_fraction}.")
    if neighbours < 1 or landmarks < 2 or max_clusters < 1 or max_steps < 1:
        raise ValueError(
            f"neighbours and max_clusters must be >= 1, landmarks >= 2 and max_steps >= 1; got {neighbours}, "
            f"{max_clusters}, {landmarks} and {max_steps}."
        )
    needed = condensation_memory_bytes(len(points), points.shape[1], landmarks, max_clusters)
    if max_memory_gb is not None and needed > max_memory_gb * 2**30:
        raise ValueError(
            f"condensing {len(points)} points of {points.shape[1]} dimensions with landmarks={landmarks} needs about "
            f"{needed / 2**30:.1f} GB, above max_memory_gb={max_memory_gb}: lower landmarks or max_clusters, or "
            "raise max_memory_gb."
        )
    x = points if points.is_floating_point() else points.float()
    centres, weights, owner = _centres_of(x, landmarks, seed)
    threshold = merge_fraction * float(torch.cdist(centres, centres).max()) if len(centres) > 1 else 0.0
    centres, weights, index = _merge(centres, weights, threshold)
    owner = index[owner]
    eps = bandwidth if bandwidth is not None else _initial_bandwidth(centres, neighbours) if len(centres) > 1 else 1.0
    levels, counts, bandwidths, steps = [owner.clone()], [len(centres)], [eps], [0]
    for step in range(1, max_steps + 1):
        if len(centres) == 1:
            break
        kernel = torch.exp(-torch.cdist(centres, centres).square() / eps) * weights[None, :]
        centres = (kernel / kernel.sum(dim=1, keepdim=True)) @ centres
        centres, weights, index = _merge(centres, weights, threshold)
        owner = index[owner]
        if len(centres) < counts[-1] and len(centres) <= max_clusters:
            levels.append(owner.clone())
            counts.append(len(centres))
            bandwidths.append(eps)
            steps.append(step)
        eps *= bandwidth_growth
    return Condensation(torch.stack(levels).long(), counts, bandwidths, steps)


class DiffusionCondensation(Transform):
    """Diffusion condensation of an embedding map (d, *spatial) or an embedding matrix (N, d): the label map of every
    granularity level, fine to coarse (CUTS, Liu, Amodio et al., sec. 3.2.1, eq. 1-4; see :func:`condense`).

    Returns the levels as (L, *spatial) (or (L, N)) int64 labels, each level's labels 0 .. c_l - 1; a MetaTensor
    input keeps its metadata, with ``num_clusters`` (c_l per level), ``bandwidths`` and ``steps`` added.

    Args:
        channel_first: the input is an embedding map (d, *spatial); False: a matrix (N, d).
        kwargs: the options of :func:`condense` (``bandwidth``, ``bandwidth_growth``, ``merge_fraction``,
            ``neighbours``, ``landmarks``, ``max_clusters``, ``max_steps``, ``max_memory_gb``, ``seed``), checked
            here.
    """

    def __init__(self, channel_first: bool = True, **kwargs) -> None:
        condense(torch.zeros(1, 1), **{**kwargs, "max_memory_gb": None})  # checks the options on a 1-point input
        self.channel_first = channel_first
        self.options = kwargs

    def __call__(self, embedding: torch.Tensor) -> torch.Tensor:
        data = torch.as_tensor(embedding)
        if self.channel_first:
            if data.ndim < 2:
                raise ValueError(f"an embedding map must be (d, *spatial), got shape {tuple(data.shape)}.")
            spatial = tuple(data.shape[1:])
            points = data.reshape(data.shape[0], -1).T
        else:
            spatial, points = (data.shape[0],), data
        result = condense(points, **self.options)
        levels = result.levels.reshape(len(result.levels), *spatial)
        meta = dict(getattr(embedding, "meta", {}))
        meta.update(num_clusters=result.num_clusters, bandwidths=result.bandwidths, steps=result.steps)
        return MetaTensor(levels, meta=meta)


class DiffusionCondensationd(MapTransform):
    """Dictionary form of :class:`DiffusionCondensation`: the levels of ``key`` go to ``{key}_levels`` and the
    number of clusters per level to ``{key}_num_clusters``.

    Args:
        keys: keys of the embedding maps.
        allow_missing_keys: skip absent keys.
        kwargs: as :class:`DiffusionCondensation`.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False, **kwargs) -> None:
        super().__init__(keys, allow_missing_keys)
        self.condensation = DiffusionCondensation(**kwargs)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            levels = self.condensation(d[key])
            d[f"{key}_levels"] = levels
            d[f"{key}_num_clusters"] = list(levels.meta["num_clusters"])
        return d


class SpectralKMeans(Transform):
    """Array form of :func:`spectral_kmeans`: an embedding map (d, *spatial) -> a (1, *spatial) label map.

    Args:
        k: clusters, >= 2 (CUTS: 10).
        dims: diffusion-map dimensions, >= 1 (CUTS: 3).
        neighbours, landmarks, seed: as :func:`spectral_kmeans`.
    """

    def __init__(self, k: int = 10, dims: int = 3, neighbours: int = 10, landmarks: int = 2048, seed: int = 0) -> None:
        _check_spectral(k, dims, neighbours, landmarks)
        self.options = {"k": k, "dims": dims, "neighbours": neighbours, "landmarks": landmarks, "seed": seed}

    def __call__(self, embedding: torch.Tensor) -> torch.Tensor:
        data = torch.as_tensor(embedding)
        if data.ndim < 2:
            raise ValueError(f"an embedding map must be (d, *spatial), got shape {tuple(data.shape)}.")
        labels = spectral_kmeans(data.reshape(data.shape[0], -1).T, **self.options)
        return MetaTensor(labels.reshape(1, *data.shape[1:]), meta=dict(getattr(embedding, "meta", {})))


class SpectralKMeansd(MapTransform):
    """Dictionary form of :class:`SpectralKMeans`: the label map of the embedding under ``keys`` goes to
    ``output_key``.

    Args:
        keys: key of the embedding map (one key).
        output_key: key of the (1, *spatial) label map.
        allow_missing_keys: skip an absent key.
        kwargs: as :class:`SpectralKMeans`.
    """

    def __init__(
        self, keys: KeysCollection, output_key: str = "pred_spectral", allow_missing_keys: bool = False, **kwargs
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"SpectralKMeansd reads one key, got {self.keys}.")
        self.output_key = output_key
        self.transform = SpectralKMeans(**kwargs)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[self.output_key] = self.transform(d[key])
        return d

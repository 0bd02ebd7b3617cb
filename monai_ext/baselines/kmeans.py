"""Non-deep-learning baselines of Tursynbek & Niethammer (MICCAI 2023, Table 1 and 3): k-means on voxel
intensities (or on any voxel features), and BM4D denoising (Maggioni et al., IEEE TIP 2012) followed by k-means;
and the simplest one a user would try first, Gaussian smoothing followed by k-means."""

from __future__ import annotations

import numpy as np


def _as_points(values: np.ndarray, channel_first: bool) -> tuple[np.ndarray, tuple[int, ...]]:
    values = np.asarray(values, dtype=np.float64)
    if channel_first:
        if values.ndim < 2:
            raise ValueError(f"channel-first features need shape (C, *spatial), got {values.shape}.")
        spatial = values.shape[1:]
        points = values.reshape(values.shape[0], -1).T
    else:
        spatial = values.shape
        points = values.reshape(-1, 1)
    if points.shape[0] == 0:
        raise ValueError("k-means needs at least one voxel, got an empty array.")
    if not np.isfinite(points).all():
        raise ValueError("k-means input contains NaN or infinite values.")
    return points, spatial


def kmeans_segment(
    values: np.ndarray, num_parts: int, channel_first: bool = False, seed: int = 0, n_init: int = 4
) -> np.ndarray:
    """Cluster voxels into ``num_parts`` parts with k-means and return the label map.

    Args:
        values: an intensity volume (``channel_first=False``) or features of shape (C, *spatial).
        num_parts: number of clusters K, from 2 to the number of voxels.
        channel_first: whether ``values`` carries a leading feature axis.
        seed: random state of the k-means initialisation.
        n_init: number of k-means restarts; the lowest-inertia run is kept.

    Returns:
        int64 labels in ``[0, num_parts)`` with the spatial shape of ``values``.
    """
    from sklearn.cluster import KMeans

    points, spatial = _as_points(values, channel_first)
    if not 2 <= num_parts <= points.shape[0]:
        raise ValueError(f"num_parts must be between 2 and the number of voxels ({points.shape[0]}), got {num_parts}.")
    if np.ptp(points, axis=0).max() == 0:
        raise ValueError("k-means input is constant: there is nothing to cluster.")
    model = KMeans(n_clusters=num_parts, n_init=n_init, random_state=seed)
    return model.fit_predict(points).reshape(spatial).astype(np.int64)


def order_by_mean(labels: np.ndarray, values: np.ndarray, channel_first: bool = False) -> np.ndarray:
    """Renumber the parts of a partition by ascending mean value (the mean over channels of channel-first
    ``values``): part 0 is the darkest. k-means numbers its clusters arbitrarily, differently for each volume;
    ordered by mean, part k is the same kind of part in every volume (e.g. the warm start's targets, which one
    network must fit on all volumes). Empty label values keep no place: the parts present are numbered from 0.

    Args:
        labels: integer part labels >= 0 with the spatial shape of ``values``.
        values: an intensity volume (``channel_first=False``) or features of shape (C, *spatial).
        channel_first: whether ``values`` carries a leading feature axis.
    """
    points, spatial = _as_points(values, channel_first)
    labels = np.asarray(labels)
    if labels.shape != tuple(spatial):
        raise ValueError(f"labels must have the spatial shape of the values {tuple(spatial)}, got {labels.shape}.")
    present, flat = np.unique(labels.reshape(-1), return_inverse=True)
    means = np.bincount(flat, weights=points.mean(1)) / np.bincount(flat)
    rank = np.empty(len(present), dtype=np.int64)
    rank[np.argsort(means, kind="stable")] = np.arange(len(present))
    return rank[flat].reshape(labels.shape)


def gaussian_smooth(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    """``image`` smoothed by a Gaussian of standard deviation ``sigma`` voxels (> 0; edges reflected)."""
    from scipy import ndimage

    if not sigma > 0:
        raise ValueError(f"sigma must be > 0 (voxels), got {sigma}.")
    return ndimage.gaussian_filter(np.asarray(image, dtype=np.float32), sigma, mode="reflect")


def estimate_noise_std(image: np.ndarray) -> float:
    """Wavelet (median absolute deviation) estimate of the standard deviation of Gaussian noise in ``image``.

    It reads the finest wavelet band, so it under-estimates noise whose power sits at low frequencies
    (pink noise: by about a fifth on the cell phantoms).
    """
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(np.asarray(image, dtype=np.float64)))


def bm4d_denoise(image: np.ndarray, noise_std: float) -> np.ndarray:
    """BM4D denoising of a 3D volume with the ``bm4d`` package's default (normal) profile.

    Args:
        image: a 3D volume.
        noise_std: standard deviation of the noise, in the units of ``image``, > 0.
    """
    import bm4d

    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 3:
        raise ValueError(f"BM4D expects a 3D volume, got shape {image.shape}.")
    if not noise_std > 0:
        raise ValueError(f"noise_std must be > 0, got {noise_std}.")
    if not np.isfinite(image).all():
        raise ValueError("BM4D input contains NaN or infinite values.")
    return np.asarray(bm4d.bm4d(image, float(noise_std)), dtype=np.float32)

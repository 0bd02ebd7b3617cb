"""The classical unsupervised 2D baselines CUTS compares with (Liu, Amodio et al., Table 1): Otsu + watershed,
Felzenszwalb's graph segmentation and SLIC superpixels (scikit-image), on a channel-first image in [0, 1]."""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.morphology import opening
from skimage.segmentation import felzenszwalb, slic, watershed

__all__ = ["BASELINES", "felzenszwalb_segment", "otsu_watershed", "slic_segment"]


def _channels_last(image: np.ndarray) -> np.ndarray:
    """A finite, non-constant (C, H, W) image as (H, W, C) float64."""
    array = np.asarray(image, dtype=np.float64)
    if array.ndim != 3:
        raise ValueError(f"expected a channel-first 2D image (C, H, W), got shape {array.shape}.")
    if not np.isfinite(array).all() or np.ptp(array) == 0:
        raise ValueError("the image holds NaN or infinite values, or is constant: there is nothing to segment.")
    return np.moveaxis(array, 0, -1)


def otsu_watershed(image: np.ndarray, peak_fraction: float = 0.9) -> np.ndarray:
    """Watershed of the distance map inside the Otsu foreground (the authors' baseline): the channel mean opened
    with a 3 x 3 square, thresholded by Otsu (bright foreground), markers at the distance maxima above
    ``peak_fraction`` of the largest; the background is label 0. Returns (H, W) int64 labels."""
    grey = opening(_channels_last(image).mean(axis=-1), np.ones((3, 3)))
    foreground = grey > threshold_otsu(grey)
    distance = ndimage.distance_transform_edt(foreground)
    peaks = peak_local_max(distance, labels=foreground.astype(int), threshold_rel=peak_fraction)
    markers = np.zeros(distance.shape, dtype=np.int64)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    return watershed(-distance, markers, mask=foreground).astype(np.int64)


def felzenszwalb_segment(
    image: np.ndarray, scale: float = 1500.0, sigma: float = 0.8, min_size: int = 20
) -> np.ndarray:
    """Felzenszwalb & Huttenlocher's graph segmentation (the authors' ``scale`` 1500). Returns (H, W) int64."""
    return felzenszwalb(_channels_last(image), scale=scale, sigma=sigma, min_size=min_size, channel_axis=-1).astype(
        np.int64
    )


def slic_segment(image: np.ndarray, n_segments: int = 10, compactness: float = 0.1) -> np.ndarray:
    """SLIC superpixels (Achanta et al. 2012), ``n_segments`` as CUTS's k = 10, on the image's own intensities (no
    Lab conversion, so any channel count works; ``compactness`` suits intensities in [0, 1]). Returns (H, W) int64
    labels from 0."""
    labels = slic(
        _channels_last(image),
        n_segments=n_segments,
        compactness=compactness,
        channel_axis=-1,
        start_label=0,
        convert2lab=False,
    )
    return labels.astype(np.int64)


BASELINES = {"otsu_watershed": otsu_watershed, "felzenszwalb": felzenszwalb_segment, "slic": slic_segment}
"""Name -> baseline, each ``f(image (C, H, W)) -> (H, W) labels``."""

"""Baselines: k-means on intensities, after BM4D or Gaussian smoothing, and on the diffusion model's features or
x0 prediction; the 2D scikit-image baselines of CUTS (Otsu watershed, Felzenszwalb, SLIC)."""

from monai_ext.baselines.diffusion import DiffusionBaselines
from monai_ext.baselines.kmeans import (
    bm4d_denoise,
    estimate_noise_std,
    gaussian_smooth,
    kmeans_segment,
    order_by_mean,
)
from monai_ext.baselines.superpixels import BASELINES, felzenszwalb_segment, otsu_watershed, slic_segment

__all__ = [
    "BASELINES",
    "DiffusionBaselines",
    "bm4d_denoise",
    "estimate_noise_std",
    "felzenszwalb_segment",
    "gaussian_smooth",
    "kmeans_segment",
    "order_by_mean",
    "otsu_watershed",
    "slic_segment",
]

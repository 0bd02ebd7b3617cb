"""Baselines: k-means on intensities, after BM4D or Gaussian smoothing, and on the diffusion model's features or
x0 prediction."""

from monai_ext.baselines.diffusion import DiffusionBaselines
from monai_ext.baselines.kmeans import bm4d_denoise, estimate_noise_std, gaussian_smooth, kmeans_segment

__all__ = ["DiffusionBaselines", "bm4d_denoise", "estimate_noise_std", "gaussian_smooth", "kmeans_segment"]

"""Non-deep-learning baselines: k-means and BM4D + k-means."""

from monai_ext.baselines.kmeans import bm4d_denoise, estimate_noise_std, kmeans_segment

__all__ = ["bm4d_denoise", "estimate_noise_std", "kmeans_segment"]

"""Networks: the diffusion feature extractor and denoiser, and the hierarchical discovery segmenter."""

from monai_ext.networks.denoiser import DiffusionDenoiser
from monai_ext.networks.feature_cache import FeatureCache
from monai_ext.networks.feature_extractor import DiffusionFeatureExtractor
from monai_ext.networks.hierarchical import HierarchicalSegmenter

__all__ = ["DiffusionDenoiser", "DiffusionFeatureExtractor", "FeatureCache", "HierarchicalSegmenter"]

"""Networks: the diffusion feature extractor and the hierarchical discovery segmenter."""

from monai_ext.networks.feature_cache import FeatureCache
from monai_ext.networks.feature_extractor import DiffusionFeatureExtractor
from monai_ext.networks.hierarchical import HierarchicalSegmenter

__all__ = ["DiffusionFeatureExtractor", "FeatureCache", "HierarchicalSegmenter"]

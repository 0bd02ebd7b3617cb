"""Networks: the diffusion feature extractor and denoiser, the hierarchical discovery segmenter, and the CUTS
encoder with its patch reconstructor."""

from monai_ext.networks.cuts import CUTSEncoder, PatchAutoencoder, PatchReconstructor
from monai_ext.networks.denoiser import DiffusionDenoiser
from monai_ext.networks.feature_cache import FeatureCache
from monai_ext.networks.feature_extractor import DiffusionFeatureExtractor
from monai_ext.networks.hierarchical import HierarchicalSegmenter, hierarchy_levels, hierarchy_parts
from monai_ext.networks.upsampled_features import UpsampledFeatures

__all__ = [
    "CUTSEncoder",
    "DiffusionDenoiser",
    "DiffusionFeatureExtractor",
    "FeatureCache",
    "HierarchicalSegmenter",
    "PatchAutoencoder",
    "PatchReconstructor",
    "UpsampledFeatures",
    "hierarchy_levels",
    "hierarchy_parts",
]

"""monai-ext: MONAI bundles and extensions for label-free and uncertainty-aware segmentation."""

__version__ = "0.2.0"

"""Transforms MONAI core lacks: image reading that names the file, input validation, hierarchy helpers, diffusion
condensation, persistent structures, boundary refinement and part merging (CUTS), and merging parts closest
means first (over-clustering)."""

from monai_ext.transforms.agglomeration import agglomerate_means, merge_by_means
from monai_ext.transforms.condensation import (
    DiffusionCondensation,
    DiffusionCondensationd,
    SpectralKMeans,
    SpectralKMeansd,
    condense,
    spectral_kmeans,
)
from monai_ext.transforms.ensemble import SplitEnsembled
from monai_ext.transforms.features import AppendCoordinates, AppendCoordinatesd
from monai_ext.transforms.io import ReadImaged, SetSpatialShaped, read_image_and_labels
from monai_ext.transforms.merging import MergeAdjacentParts, MergeAdjacentPartsd, merge_adjacent_parts
from monai_ext.transforms.persistence import PersistentStructures, PersistentStructuresd, persistent_structures
from monai_ext.transforms.refinement import PottsRefinement, PottsRefinementd, potts_refinement
from monai_ext.transforms.validation import ValidateImaged, ValidateMaskd, check_same_spatial_shape

__all__ = [
    "AppendCoordinates",
    "AppendCoordinatesd",
    "DiffusionCondensation",
    "DiffusionCondensationd",
    "MergeAdjacentParts",
    "MergeAdjacentPartsd",
    "PersistentStructures",
    "PersistentStructuresd",
    "PottsRefinement",
    "PottsRefinementd",
    "ReadImaged",
    "SetSpatialShaped",
    "SpectralKMeans",
    "SpectralKMeansd",
    "SplitEnsembled",
    "ValidateImaged",
    "ValidateMaskd",
    "agglomerate_means",
    "check_same_spatial_shape",
    "condense",
    "merge_adjacent_parts",
    "merge_by_means",
    "persistent_structures",
    "potts_refinement",
    "read_image_and_labels",
    "spectral_kmeans",
]
from monai_ext.transforms.hierarchy import (
    HierarchyAccumulator,
    SplitLevelsd,
    contingency_tables,
    hierarchy_tree,
    level_label_maps,
    level_output_transform,
    level_slices,
    split_levels,
    tree_from_tables,
)
from monai_ext.transforms.nesting import NestLevelsd, assign_parents, nest_probabilities

__all__ += [
    "HierarchyAccumulator",
    "NestLevelsd",
    "SplitLevelsd",
    "assign_parents",
    "contingency_tables",
    "hierarchy_tree",
    "level_label_maps",
    "level_output_transform",
    "level_slices",
    "nest_probabilities",
    "split_levels",
    "tree_from_tables",
]

"""Helpers that bundle configs call (``$monai_ext.bundle.<name>(...)``), one module per concern:

- :mod:`~monai_ext.bundle.root`: where the bundle lives, files it must find, config ids of another bundle;
- :mod:`~monai_ext.bundle.default_data`: the generated data a bundle runs on when no ``dataset_dir`` is given;
- :mod:`~monai_ext.bundle.options`: checks of config options before anything runs;
- :mod:`~monai_ext.bundle.components`: components built from an option's value (scheduler, denoisers).
"""

from monai_ext.bundle.components import (
    MERGE_DENOISER_KEYS,
    SAMPLERS,
    VISUAL_TARGETS,
    diffusion_model,
    merge_denoiser,
    sampling_scheduler,
    visual_denoiser,
)
from monai_ext.bundle.default_data import (
    CACHE_ENV,
    DEFAULT_DATA,
    DEFAULT_PHANTOMS,
    cache_dir,
    datalist_path,
    dataset_items,
    default_dataset_dir,
    ensure_default_data,
)
from monai_ext.bundle.options import check_num_parts, check_spatial_size, set_seed, trained_label_keys
from monai_ext.bundle.root import bundle_component, require_file, resolve_bundle_root

__all__ = [
    "CACHE_ENV",
    "DEFAULT_DATA",
    "DEFAULT_PHANTOMS",
    "MERGE_DENOISER_KEYS",
    "SAMPLERS",
    "VISUAL_TARGETS",
    "bundle_component",
    "cache_dir",
    "check_num_parts",
    "check_spatial_size",
    "datalist_path",
    "dataset_items",
    "default_dataset_dir",
    "diffusion_model",
    "ensure_default_data",
    "merge_denoiser",
    "require_file",
    "resolve_bundle_root",
    "sampling_scheduler",
    "set_seed",
    "trained_label_keys",
    "visual_denoiser",
]

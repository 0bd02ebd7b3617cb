"""BraTS-like multi-contrast brain MRI phantoms with one glioma-like lesion, built on real anatomy.

Each subject starts from the MNI152 2009 (ICBM 2009a symmetric) grey- and white-matter probability maps and brain
mask shipped inside nilearn (no download), deformed by a random affine + elastic transform. One glioblastoma-like
tumour sized like the BraTS'19 high-grade gliomas (15-250 cm^3, median near 100 cm^3) grows inside the brain
(``monai_ext.data.tumour``): a compact irregular core (an enhancing rim around necrosis) and edema spreading along the
white matter. Labels follow BraTS (1 necrotic / non-enhancing core, 2 edema, 4 enhancing tumour) beside the binary
whole tumour, the tissue map and the lateral ventricles (the deep CSF components beside the midline).
Four contrasts imitate a BraTS acquisition (T1, T1ce, T2, FLAIR): each voxel mixes the class intensities of its
tissue fractions (partial volume), then a smooth multiplicative bias field and Rician noise are applied, the
background is zeroed as after skull stripping and each contrast is min-max scaled to [0, 1].

Grids (brain-centred crops of the MNI152 grid, origin at the first voxel):

- ``resolution=2``: 96 x 96 x 96 voxels of 2 mm (the 2 mm MNI grid is 99 x 117 x 95; the brain spans 73 x 90 x 78
  voxels, so the cube holds all of it with room for the deformation, and 96 divides by 32 for U-Nets);
- ``resolution=1``: 200 x 200 x 155 voxels of 1 mm, a BraTS-like field of view (BraTS volumes are 240 x 240 x 155).

Typical use::

    from monai_ext.data.brain import make_brains

    datalist = make_brains("data/brains", n=20, seed=0)  # 3D, 2 mm
    slices = make_brains("data/brain_slices", n=20, mode="2d", slices_per_subject=4)
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from monai.transforms import Rand3DElastic, RandBiasField, RandRicianNoise, Resize
from monai.utils import convert_to_numpy, optional_import
from scipy import ndimage
from tqdm import tqdm

import monai_ext
from monai_ext.data.datalist import save_nifti, split_counts, write_datalist
from monai_ext.data.output_folder import claim_output_dir
from monai_ext.data.tumour import (
    MAX_MASS_EFFECT_MM,
    VOLUME_BOUNDS_CM3,
    draw_tumour_volume,
    grow_tumour,
    mass_effect_coordinates,
    soft_fractions,
    warp,
)
from monai_ext.transforms.io import ReadImaged

nilearn_datasets, _ = optional_import("nilearn.datasets")

__all__ = [
    "BRATS_LABELS",
    "CONTRASTS",
    "GRIDS",
    "LABEL_KEYS",
    "REGIONS",
    "TISSUE_LABELS",
    "TISSUE_MAP_KEYS",
    "brain_capacity_cm3",
    "make_brains",
    "synthesize_brain",
    "tissue_map",
]

CONTRASTS = ("t1", "t1ce", "t2", "flair")
"""Image channels, in the order of the 4-channel image."""

REGIONS = ("background", "csf", "gm", "wm", "edema", "enhancing", "necrosis")
"""Partial-volume classes whose fractions make up every voxel (``synthesize_brain(...)["fractions"]``)."""

TISSUE_LABELS = {"background": 0, "csf": 1, "gm": 2, "wm": 3, "tumour": 4}
"""Values of the tissue map; ``tumour`` (core + edema) overrides the healthy tissue."""

BRATS_LABELS = {"necrosis": 1, "edema": 2, "enhancing": 4}
"""Values of the ``brats`` map (BraTS convention: 1 necrotic / non-enhancing core, 2 edema, 4 enhancing tumour)."""

LABEL_KEYS = ("label", "brats", "tissue", "ventricles")
"""Label maps written for every subject (3D) or slice (2D), each a datalist key."""

TISSUE_MAP_KEYS = ("tissue", "brats")
"""The datalist keys :func:`tissue_map` reads: the tissue map and the BraTS map."""

GRIDS = {2: (96, 96, 96), 1: (200, 200, 155)}
"""Output grid (voxels) for each resolution (mm)."""

MODES = ("3d", "2d")

# Per contrast, the range from which each region's intensity is drawn for every subject. The ranges of the regions
# whose order matters do not overlap, so every draw keeps the usual contrast: T1 WM > GM > CSF with a dark core;
# T1ce as T1 with a bright enhancing rim; T2 CSF > GM > WM with bright edema; FLAIR dark CSF, bright edema and tumour,
# GM > WM. Background is 0 in every contrast. The FLAIR tumour ranges lie just above grey matter (edema 0.14-0.32
# higher): calibrated by benchmarks/brains.py so that k-means (K = 3) on FLAIR scores the paper's whole-tumour Dice.
INTENSITY_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "t1": {
        "csf": (0.15, 0.25),
        "gm": (0.45, 0.55),
        "wm": (0.70, 0.80),
        "edema": (0.36, 0.42),
        "enhancing": (0.30, 0.36),
        "necrosis": (0.15, 0.25),
    },
    "t1ce": {
        "csf": (0.15, 0.25),
        "gm": (0.45, 0.55),
        "wm": (0.70, 0.80),
        "edema": (0.36, 0.42),
        "enhancing": (1.00, 1.20),
        "necrosis": (0.15, 0.25),
    },
    "t2": {
        "csf": (0.90, 1.00),
        "gm": (0.50, 0.60),
        "wm": (0.30, 0.40),
        "edema": (0.75, 0.85),
        "enhancing": (0.55, 0.65),
        "necrosis": (0.85, 0.95),
    },
    "flair": {
        "csf": (0.08, 0.16),
        "gm": (0.48, 0.56),
        "wm": (0.34, 0.42),
        "edema": (0.70, 0.80),
        "enhancing": (0.62, 0.72),
        "necrosis": (0.56, 0.64),
    },
}

MAX_SLICES_PER_SUBJECT = 12
GENERATOR_VERSION = 2  # 1: small round tumours (2-5 cm^3); 2: BraTS-HGG-like tumours, BraTS labels, ventricles
MAX_TUMOUR_SHARE = 0.2  # largest whole tumour allowed, as a share of the template brain volume (about 1880 cm^3)
VENTRICLE_DEPTH_MM = 14.0  # ventricles: CSF at least this deep below the brain surface (sulci are shallower) ...
VENTRICLE_MIN_CM3 = 1.0  # ... in components of at least this volume ...
VENTRICLE_LATERAL_MM = 6.0  # ... lying on average this far beside the midline (the interhemispheric fissure lies on it)
VENTRICLE_CENTRE_MM = 30.0  # ... with the centroid this close to the brain's centroid

ELASTIC_SIGMA_MM = (8.0, 12.0)  # smoothness of the elastic displacement
ELASTIC_DISPLACEMENT_MM = (1.0, 3.0)  # standard deviation of the elastic displacement
ROTATE_RADIANS = 0.15
SCALE_FRACTION = 0.08
TRANSLATE_MM = 4.0
BIAS_COEFF_RANGE = (-0.05, 0.05)  # Legendre coefficients of log(bias): about 15-25 % variation over the brain
NOISE_STD = 0.04  # largest Rician noise level (relative to the brightest class); drawn per contrast in [0, NOISE_STD]


@functools.lru_cache(maxsize=2)
def _mni152_tissues(resolution: int) -> np.ndarray:
    """CSF, GM and WM fractions of the MNI152 2009 anatomy on the brain-centred output grid, shape (3, *grid).

    GM and WM are restricted to nilearn's brain mask (the T1 template thresholded); CSF is the rest of the mask.
    """
    gm = nilearn_datasets.load_mni152_gm_template(resolution=resolution).get_fdata()
    wm = nilearn_datasets.load_mni152_wm_template(resolution=resolution).get_fdata()
    mask = nilearn_datasets.load_mni152_brain_mask(resolution=resolution).get_fdata() > 0.5
    gm, wm = np.clip(gm, 0, 1) * mask, np.clip(wm, 0, 1) * mask
    csf = np.clip(mask - gm - wm, 0, 1)
    voxels = np.argwhere(mask)
    centre = (voxels.min(0) + voxels.max(0) + 1) // 2
    tissues = np.stack([_crop_or_pad(t, centre, GRIDS[resolution]) for t in (csf, gm, wm)]).astype(np.float32)
    tissues.setflags(write=False)
    return tissues


def _crop_or_pad(volume: np.ndarray, centre: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Cut the box of ``size`` voxels centred on ``centre`` out of ``volume``, zero-padding where it sticks out."""
    start = np.asarray(centre) - np.asarray(size) // 2
    stop = start + np.asarray(size)
    pad = [(max(-a, 0), max(b - s, 0)) for a, b, s in zip(start, stop, volume.shape, strict=True)]
    padded = np.pad(volume, pad)
    return padded[tuple(slice(a + p[0], b + p[0]) for a, b, p in zip(start, stop, pad, strict=True))]


def _elastic_magnitude_range(sigma_voxels: float, spacing: float) -> tuple[float, float]:
    """Rand3DElastic ``magnitude_range`` giving an elastic displacement of ``ELASTIC_DISPLACEMENT_MM`` (std).

    Rand3DElastic smooths uniform noise on [-1, 1] (std 1/sqrt(3)) with a Gaussian of std ``sigma_voxels``, which
    divides its standard deviation by about (2 sqrt(pi) sigma)^(3/2) in 3D, then multiplies it by the magnitude.
    """
    smoothed_std = (1 / np.sqrt(3)) / (2 * np.sqrt(np.pi) * sigma_voxels) ** 1.5
    low, high = ELASTIC_DISPLACEMENT_MM
    return low / spacing / smoothed_std, high / spacing / smoothed_std


def _deform(tissues: np.ndarray, spacing: float, state: np.random.RandomState) -> np.ndarray:
    """Random affine + elastic deformation of the tissue fractions (bilinear, zeros outside), shape kept."""
    sigma = tuple(s / spacing for s in ELASTIC_SIGMA_MM)
    deform = Rand3DElastic(
        sigma_range=sigma,
        magnitude_range=_elastic_magnitude_range(float(np.mean(sigma)), spacing),
        prob=1.0,
        rotate_range=(ROTATE_RADIANS,) * 3,
        scale_range=(SCALE_FRACTION,) * 3,
        translate_range=(TRANSLATE_MM / spacing,) * 3,
        mode="bilinear",
        padding_mode="zeros",
    )
    deform.set_random_state(state=state)
    return np.clip(convert_to_numpy(deform(tissues), dtype=np.float32), 0, 1)


def _draw_intensities(rng: np.random.Generator) -> np.ndarray:
    """Class intensities of one subject, shape (len(CONTRASTS), len(REGIONS)); background stays 0."""
    intensities = np.zeros((len(CONTRASTS), len(REGIONS)), np.float32)
    for c, contrast in enumerate(CONTRASTS):
        for r, region in enumerate(REGIONS[1:], start=1):
            intensities[c, r] = rng.uniform(*INTENSITY_RANGES[contrast][region])
    return intensities


def _render_contrasts(
    fractions: np.ndarray, intensities: np.ndarray, foreground: np.ndarray, state: np.random.RandomState
) -> np.ndarray:
    """The four MR contrasts, shape (4, *grid), float32 in [0, 1].

    Partial-volume mixing, one smooth multiplicative bias field and one Rician noise level per contrast, background
    set to 0 outside ``foreground`` (skull stripping), then min-max scaling of each contrast.
    """
    mixed = np.tensordot(intensities, fractions, axes=1)
    bias = RandBiasField(degree=3, coeff_range=BIAS_COEFF_RANGE, prob=1.0).set_random_state(state=state)
    noise = RandRicianNoise(prob=1.0, std=NOISE_STD, sample_std=True).set_random_state(state=state)
    images = np.stack([convert_to_numpy(noise(bias(channel[None])))[0] for channel in mixed]) * foreground
    low = images.min(axis=(1, 2, 3), keepdims=True)
    high = images.max(axis=(1, 2, 3), keepdims=True)
    return ((images - low) / (high - low)).astype(np.float32)


def brain_capacity_cm3(resolution: int) -> float:
    """Largest whole-tumour volume (cm^3) a subject can hold: ``MAX_TUMOUR_SHARE`` of the template brain volume."""
    return MAX_TUMOUR_SHARE * float(_mni152_tissues(resolution).sum()) * resolution**3 / 1000


def _ventricles(tissue: np.ndarray, spacing: float) -> np.ndarray:
    """The lateral ventricles: the CSF components deep inside the brain that lie beside the midline.

    Sulcal CSF is shallower than ``VENTRICLE_DEPTH_MM``; of the deep CSF components, the interhemispheric fissure lies
    on the midline (its mean lateral offset is small) and reaches far from the brain's centroid, while the two lateral
    ventricles spread to both sides of the midline around the centre (axis 0 is left-right, as in MNI space).
    """
    brain = tissue > 0
    depth = ndimage.distance_transform_edt(np.pad(brain, 1), sampling=spacing)[(slice(1, -1),) * brain.ndim]
    deep = (tissue == TISSUE_LABELS["csf"]) & (depth >= VENTRICLE_DEPTH_MM)
    components, count = ndimage.label(deep)
    if count == 0:
        return deep
    index = np.arange(1, count + 1)
    centre = np.argwhere(brain).mean(0)
    lateral = np.abs(np.arange(brain.shape[0]) - centre[0])[:, None, None] * spacing
    sizes = ndimage.sum_labels(deep, components, index) * spacing**3 / 1000
    spread = ndimage.mean(np.broadcast_to(lateral, brain.shape), components, index)
    centroids = np.asarray(ndimage.center_of_mass(deep, components, index)).reshape(count, brain.ndim)
    distance = np.linalg.norm(centroids - centre, axis=1) * spacing
    keep = (sizes >= VENTRICLE_MIN_CM3) & (spread >= VENTRICLE_LATERAL_MM) & (distance <= VENTRICLE_CENTRE_MM)
    return np.isin(components, index[keep])


def _background_and_labels(healthy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The background fraction of healthy tissue fractions (3, *grid) and the hard tissue labels (argmax)."""
    background = np.clip(1 - healthy.sum(0), 0, 1)
    return background, np.argmax(np.concatenate([background[None], healthy]), axis=0).astype(np.uint8)


def synthesize_brain(
    rng: np.random.Generator,
    resolution: int = 2,
    volume_cm3: tuple[float, float] = VOLUME_BOUNDS_CM3,
    subject: str = "subject",
    mass_effect_mm: float = 0.0,
) -> dict[str, np.ndarray]:
    """Simulate one BraTS-like subject in memory: deformed MNI152 anatomy, one tumour, four MR contrasts.

    Args:
        rng: source of every random draw (the MONAI transforms get a RandomState seeded from it).
        resolution: voxel size in mm, 2 (96^3 grid) or 1 (200 x 200 x 155 grid).
        volume_cm3: bounds of the whole-tumour volume, drawn from the truncated log-normal law of
            ``monai_ext.data.tumour.draw_tumour_volume``.
        subject: names the subject in error messages.
        mass_effect_mm: push the healthy anatomy (tissue maps and ventricles) away from the tumour core by up to
            this many mm (``monai_ext.data.tumour.mass_effect_coordinates``); 0 leaves it in place. It uses no
            random draw, so a subject differs from its 0-mm twin only by the displacement.

    Returns:
        ``image`` (4, X, Y, Z) float32 in [0, 1], channels ``CONTRASTS``; ``label`` whole tumour (X, Y, Z) uint8 0/1;
        ``brats`` (X, Y, Z) uint8 with ``BRATS_LABELS``; ``tissue`` (X, Y, Z) uint8 with ``TISSUE_LABELS``;
        ``ventricles`` (X, Y, Z) uint8 0/1; ``fractions`` (7, X, Y, Z) float32, the partial-volume fraction of each
        of ``REGIONS`` (they sum to 1).

    Raises:
        monai_ext.data.tumour.TumourPlacementError: the tumour found no room inside the brain (names ``subject``).
    """
    if resolution not in GRIDS:
        raise ValueError(f"resolution must be one of {tuple(GRIDS)} (mm), got {resolution}.")
    state = np.random.RandomState(int(rng.integers(2**31)))
    spacing = float(resolution)
    healthy = _deform(_mni152_tissues(resolution), spacing, state)
    background, tissue = _background_and_labels(healthy)
    ventricles = _ventricles(tissue, spacing)
    volume = draw_tumour_volume(volume_cm3, rng)
    csf = tissue == TISSUE_LABELS["csf"]
    masks = grow_tumour(tissue > 0, healthy[2], csf, spacing, volume, rng, subject)
    if mass_effect_mm > 0:
        coordinates = mass_effect_coordinates(masks.core, tissue > 0, spacing, mass_effect_mm)
        healthy = np.stack([warp(fraction, coordinates) for fraction in healthy])
        ventricles = warp(ventricles, coordinates, order=0)
        background, tissue = _background_and_labels(healthy)
    tumour = soft_fractions(masks)
    whole_tumour = tumour.sum(0)
    tissue[masks.whole] = TISSUE_LABELS["tumour"]
    brats = np.zeros(tissue.shape, np.uint8)
    brats[masks.whole] = BRATS_LABELS["edema"]
    brats[masks.core] = BRATS_LABELS["enhancing"]
    brats[masks.necrosis] = BRATS_LABELS["necrosis"]
    fractions = np.concatenate([np.stack([background, *healthy]) * (1 - whole_tumour), tumour])
    image = _render_contrasts(fractions, _draw_intensities(rng), tissue > 0, state)
    return {
        "image": image,
        "label": masks.whole.astype(np.uint8),
        "brats": brats,
        "tissue": tissue,
        "ventricles": (ventricles & ~masks.whole).astype(np.uint8),
        "fractions": fractions,
    }


def _tumour_slices(label: np.ndarray, count: int) -> list[int]:
    """``count`` distinct axial slices evenly spread over the tumour, leaving out its two end slices when it can."""
    through = np.flatnonzero(label.any(axis=(0, 1)))
    if len(through) < count:
        raise ValueError(f"slices_per_subject={count} exceeds the {len(through)} slices through a tumour.")
    ends = 2 if len(through) >= count + 2 else 0
    picks = np.round(np.linspace(0, len(through) - 1, count + ends)[ends // 2 : count + ends // 2]).astype(int)
    return [int(z) for z in through[picks]]


def _tumour_free_slices(tissue: np.ndarray, label: np.ndarray, count: int) -> list[int]:
    """``count`` distinct axial slices without tumour, evenly spread over those whose brain area is at least half
    the largest slice's (so each shows a good part of the brain); no random draw."""
    area = (tissue > 0).sum(axis=(0, 1))
    free = np.flatnonzero(~label.any(axis=(0, 1)) & (area >= area.max() / 2))
    if len(free) < count:
        raise ValueError(f"empty_slices_per_subject={count} exceeds the {len(free)} tumour-free slices of a brain.")
    if count == 0:
        return []
    return [int(z) for z in free[np.round(np.linspace(0, len(free) - 1, count)).astype(int)]]


def _write_subject_3d(out: Path, name: str, phantom: dict[str, np.ndarray], spacing: float) -> dict[str, Any]:
    """Write one subject as NIfTI files in ``out/name`` and return its datalist record (paths relative to ``out``)."""
    (out / name).mkdir(exist_ok=True)
    volumes = {**dict(zip(CONTRASTS, phantom["image"], strict=True)), **{k: phantom[k] for k in LABEL_KEYS}}
    paths = {key: f"{name}/{key}.nii.gz" for key in volumes}
    for key, volume in volumes.items():
        save_nifti(volume, out / paths[key], (spacing,) * 3)
    return {"image": [paths[c] for c in CONTRASTS], "flair": paths["flair"], **{k: paths[k] for k in LABEL_KEYS}}


def _write_subject_2d(
    out: Path, name: str, phantom: dict[str, np.ndarray], spacing: float, slices: int, empty: int, size: int
) -> list[dict[str, Any]]:
    """Write ``slices`` axial slices through the tumour and ``empty`` tumour-free ones, resampled to ``size`` x
    ``size``; return their datalist records (tumour slices first, each group in z order).

    Images are (H, W, 4) channel-last NIfTI (each channel min-max scaled to [0, 1]); label maps are (H, W) uint8.
    """
    (out / name).mkdir(exist_ok=True)
    resize_image = Resize((size, size), mode="bilinear", anti_aliasing=True)
    resize_label = Resize((size, size), mode="nearest-exact")
    grid = phantom["label"].shape
    pixel = (spacing * grid[0] / size, spacing * grid[1] / size, 1.0)
    records = []
    picks = _tumour_slices(phantom["label"], slices) + _tumour_free_slices(phantom["tissue"], phantom["label"], empty)
    for z in picks:
        image = convert_to_numpy(resize_image(phantom["image"][..., z]))
        low, high = image.min(axis=(1, 2), keepdims=True), image.max(axis=(1, 2), keepdims=True)
        image = ((image - low) / (high - low)).astype(np.float32)
        record = {key: f"{name}/z{z:03d}_{key}.nii.gz" for key in ("image", *LABEL_KEYS)}
        save_nifti(np.moveaxis(image, 0, -1), out / record["image"], pixel)
        for key in LABEL_KEYS:
            resized = convert_to_numpy(resize_label(phantom[key][None, ..., z]))[0]
            save_nifti(np.rint(resized).astype(np.uint8), out / record[key], pixel)
        records.append(record)
    return records


def _check_options(
    n: int,
    seed: int,
    mode: str,
    resolution: int,
    slices_per_subject: int,
    empty_slices_per_subject: int,
    slice_size: int,
    min_volume_cm3: float,
    max_volume_cm3: float,
    mass_effect_mm: float,
) -> None:
    """Raise ValueError naming the first option outside its allowed range."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}.")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    if resolution not in GRIDS:
        raise ValueError(f"resolution must be one of {tuple(GRIDS)} (mm), got {resolution}.")
    if not 1 <= slices_per_subject <= MAX_SLICES_PER_SUBJECT:
        raise ValueError(f"slices_per_subject must be in [1, {MAX_SLICES_PER_SUBJECT}], got {slices_per_subject}.")
    if not 0 <= empty_slices_per_subject <= MAX_SLICES_PER_SUBJECT:
        raise ValueError(
            f"empty_slices_per_subject must be in [0, {MAX_SLICES_PER_SUBJECT}], got {empty_slices_per_subject}."
        )
    if not 16 <= slice_size <= 1024:
        raise ValueError(f"slice_size must be in [16, 1024], got {slice_size}.")
    if not min_volume_cm3 > 0:
        raise ValueError(f"min_volume_cm3 must be > 0 (cm^3), got {min_volume_cm3}.")
    if max_volume_cm3 < min_volume_cm3:
        raise ValueError(
            f"max_volume_cm3 must be >= min_volume_cm3 = {min_volume_cm3} (cm^3), got {max_volume_cm3} "
            "(reversed bounds)."
        )
    capacity = brain_capacity_cm3(resolution)
    if max_volume_cm3 > capacity:
        raise ValueError(
            f"max_volume_cm3 must be <= {capacity:.0f} cm^3 ({MAX_TUMOUR_SHARE:.0%} of the brain's volume), "
            f"got {max_volume_cm3}."
        )
    if not 0 <= mass_effect_mm <= MAX_MASS_EFFECT_MM:
        raise ValueError(f"mass_effect_mm must be in [0, {MAX_MASS_EFFECT_MM}] (mm), got {mass_effect_mm}.")


def make_brains(
    out: str | Path,
    n: int = 20,
    seed: int = 0,
    mode: str = "3d",
    resolution: int = 2,
    slices_per_subject: int = 4,
    empty_slices_per_subject: int = 0,
    slice_size: int = 128,
    min_volume_cm3: float = VOLUME_BOUNDS_CM3[0],
    max_volume_cm3: float = VOLUME_BOUNDS_CM3[1],
    mass_effect_mm: float = 0.0,
    overwrite: bool = False,
) -> Path:
    """Generate a dataset of BraTS-like multi-contrast brain MRI phantoms with one tumour each.

    Every subject is the MNI152 2009 anatomy under a random affine + elastic deformation with one glioblastoma-like
    tumour inside the brain (whole-tumour volume from a log-normal law of median 100 cm^3 truncated to
    [``min_volume_cm3``, ``max_volume_cm3``], core 20-50 % of it, edema spreading along the white matter; see
    ``monai_ext.data.tumour``), imaged as T1, T1ce, T2 and FLAIR (see the module docstring). Subjects are split
    4:1:1 into training / validation / test before slicing, so 2D slices of one subject never land in two splits.
    The same ``seed`` and options give the same bytes.

    Files, in one folder per subject ``brain_000`` ...:

    - ``mode="3d"``: ``t1``, ``t1ce``, ``t2``, ``flair`` (float32 in [0, 1]), ``label`` (whole tumour, uint8 0/1),
      ``brats`` (uint8, ``BRATS_LABELS``: 1 necrosis, 2 edema, 4 enhancing), ``tissue`` (uint8, ``TISSUE_LABELS``) and
      ``ventricles`` (lateral ventricles, uint8 0/1) ``.nii.gz`` on the ``GRIDS[resolution]`` grid. Datalist records
      are ``{"image": [t1, t1ce, t2, flair], "flair": ..., "label": ..., "brats": ..., "tissue": ...,
      "ventricles": ...}``; ``LoadImaged(keys="image", image_only=True)`` + ``EnsureChannelFirstd(keys="image")``
      stack the four paths into a (4, X, Y, Z) image. ``datalist_t1.json`` ... ``datalist_flair.json`` hold the
      same records with ``image`` set to one contrast (:func:`write_contrast_datalists`).
    - ``mode="2d"``: per axial slice ``z`` (``slices_per_subject`` through the tumour, then
      ``empty_slices_per_subject`` without it), ``z{z:03d}_image`` (``slice_size`` x ``slice_size`` x 4 channel-last
      float32, channels ``CONTRASTS``) and ``z{z:03d}_label``, ``_brats``, ``_tissue``, ``_ventricles``
      (``slice_size`` x ``slice_size`` uint8). ``LoadImaged(keys=["image", "label"], image_only=True)`` then
      ``EnsureChannelFirstd(keys="image", channel_dim=-1)`` and ``EnsureChannelFirstd(keys="label")`` give a
      (4, H, W) image and a (1, H, W) label.

    Args:
        out: dataset folder; created if missing, refused when not empty unless ``overwrite``.
        n: number of subjects (>= 1).
        seed: seed of the one random generator every draw comes from (>= 0).
        mode: ``"3d"`` volumes or ``"2d"`` axial slices through the tumour.
        resolution: voxel size in mm: 2 (96^3 grid) or 1 (200 x 200 x 155 BraTS-like grid).
        slices_per_subject: in 2D mode, number of distinct slices taken through each tumour (1 to 12).
        empty_slices_per_subject: in 2D mode, number of tumour-free slices added per subject (0 to 12; each shows
            at least half the largest brain section), for the empty-prediction count of a segmenter.
        slice_size: in 2D mode, height and width of the resampled slices (16 to 1024).
        min_volume_cm3: smallest whole-tumour volume (> 0).
        max_volume_cm3: largest whole-tumour volume (>= ``min_volume_cm3``, at most a fifth of the brain,
            ``brain_capacity_cm3(resolution)``, about 377 cm^3).
        mass_effect_mm: optional mild mass effect: the healthy anatomy is pushed away from the tumour core by up to
            this many mm (0 to ``MAX_MASS_EFFECT_MM`` = 10; default 0, no displacement).
        overwrite: replace the contents of a non-empty ``out``.

    Returns:
        path of ``datalist.json`` (training / validation / test lists, readable by
        ``monai.data.load_decathlon_datalist``); ``dataset.json`` next to it records generator, version, options,
        seed and the whole-tumour volume of every subject.

    Raises:
        ValueError: an option is outside its allowed range.
        FileExistsError: ``out`` is not empty and ``overwrite`` is False.
        monai_ext.data.tumour.TumourPlacementError: a tumour found no room in its brain (names subject and seed).
    """
    _check_options(
        n,
        seed,
        mode,
        resolution,
        slices_per_subject,
        empty_slices_per_subject,
        slice_size,
        min_volume_cm3,
        max_volume_cm3,
        mass_effect_mm,
    )
    with claim_output_dir(out, overwrite) as out:
        rng = np.random.default_rng(seed)
        spacing = float(resolution)
        records: list[dict[str, Any]] = []
        volumes = []
        for index in tqdm(range(n), desc="brain phantoms", unit="subject"):
            name = f"brain_{index:03d}"
            bounds, subject = (min_volume_cm3, max_volume_cm3), f"{name} (seed {seed})"
            phantom = synthesize_brain(rng, resolution, bounds, subject, mass_effect_mm)
            volumes.append(round(float(phantom["label"].sum()) * spacing**3 / 1000, 3))
            if mode == "3d":
                records.append(_write_subject_3d(out, name, phantom, spacing))
            else:
                slices = (slices_per_subject, empty_slices_per_subject, slice_size)
                records.extend(_write_subject_2d(out, name, phantom, spacing, *slices))
        per_subject = 1 if mode == "3d" else slices_per_subject + empty_slices_per_subject
        counts = [count * per_subject for count in split_counts(n)]
        meta = {
            "name": "brain",
            "description": (
                "BraTS-like multi-contrast brain MRI phantoms (MNI152 2009 anatomy, one BraTS-HGG-like tumour)"
            ),
            "generator": "monai_ext.data.brain.make_brains",
            "version": monai_ext.__version__,
            "generator_version": GENERATOR_VERSION,
            "seed": seed,
            "options": {
                "n": n,
                "mode": mode,
                "resolution": resolution,
                "slices_per_subject": slices_per_subject,
                "empty_slices_per_subject": empty_slices_per_subject,
                "slice_size": slice_size,
                "min_volume_cm3": min_volume_cm3,
                "max_volume_cm3": max_volume_cm3,
                "mass_effect_mm": mass_effect_mm,
            },
            "modality": dict(enumerate(CONTRASTS)),
            "labels": {"0": "background", "1": "whole tumour"},
            "brats_labels": {str(v): k for k, v in BRATS_LABELS.items()},
            "tissue_labels": {str(v): k for k, v in TISSUE_LABELS.items()},
            "ventricle_labels": {"0": "background", "1": "lateral ventricles"},
            "whole_tumour_cm3": volumes,
            "spacing_mm": spacing if mode == "3d" else spacing * GRIDS[resolution][0] / slice_size,
            "shape": list(GRIDS[resolution]) if mode == "3d" else [slice_size, slice_size, len(CONTRASTS)],
        }
        datalist = write_datalist(out, records, counts, meta)
        if mode == "3d":
            write_contrast_datalists(datalist)
        return datalist


def write_contrast_datalists(datalist: Path) -> list[Path]:
    """Beside a 3D ``datalist.json``, write one ``datalist_<contrast>.json`` per contrast whose ``image`` is that
    contrast alone (the single-channel input of the structure discovery and diffusion bundles' brain configs);
    every other key is kept. Returns the paths written."""
    full = json.loads(datalist.read_text())
    paths = []
    for index, contrast in enumerate(CONTRASTS):
        single = {split: [{**item, "image": item["image"][index]} for item in items] for split, items in full.items()}
        path = datalist.with_name(f"datalist_{contrast}.json")
        path.write_text(json.dumps(single, indent=2) + "\n")
        paths.append(path)
    return paths


def tissue_map(item: Mapping[str, str], keys: tuple[str, str] = TISSUE_MAP_KEYS) -> np.ndarray:
    """The phantom's exact tissue partition of a subject or slice, read from its datalist record.

    Background, CSF, grey and white matter keep their ``TISSUE_LABELS`` values; the tumour is split into its
    necrosis, edema and enhancing rim (``TISSUE_LABELS["tumour"]`` plus the ``BRATS_LABELS`` value), each tissue one
    part. Read by the hint rule (``monai_ext.metrics.hint_dice``), it looks at the ground truth: on the whole tumour
    it scores the best that any label map whose parts each lie within one tissue can score.

    Args:
        item: a datalist record with the files of the tissue map and of the BraTS map under ``keys``.
        keys: the record's keys of the tissue map and of the BraTS map.

    Returns:
        an int64 label map on the grid of the two files.

    Raises:
        ValueError: the two maps are on different grids, or the tissue map's tumour is not where the BraTS map's is.
    """
    tissue_key, brats_key = keys
    read = ReadImaged(list(keys), image_only=True)(dict(item))
    tissue, brats = (np.rint(np.asarray(read[key])).astype(np.int64) for key in keys)
    files = f"'{tissue_key}' file '{item[tissue_key]}' and '{brats_key}' file '{item[brats_key]}'"
    if tissue.shape != brats.shape:
        raise ValueError(f"{files} have shapes {tissue.shape} and {brats.shape}: the two maps must share one grid.")
    if not np.array_equal(tissue == TISSUE_LABELS["tumour"], brats > 0):
        raise ValueError(
            f"{files} disagree: the tissue map's tumour ({TISSUE_LABELS['tumour']}) must be exactly where the BraTS "
            "map is above 0."
        )
    return np.where(brats > 0, TISSUE_LABELS["tumour"] + brats, tissue)

"""Glioblastoma-like tumours sized and shaped like the BraTS'19 high-grade gliomas (HGG), grown inside a brain.

Size: the whole-tumour volume V (core + edema) follows a log-normal law with median ``VOLUME_MEDIAN_CM3`` = 100 cm^3
and log-standard deviation ``VOLUME_LOG_SD`` = 0.6, truncated to the requested bounds (15-250 cm^3 by default) by
inverse-CDF sampling, so no probability piles up at a bound. Untruncated, its central 95 % spans 31-322 cm^3; truncated
to 15-250 cm^3 its median stays near 95 cm^3: BraTS'19 HGG whole tumours are mostly 20-250 cm^3 with a median near
100 cm^3 (Bakas et al., "Identifying the best machine learning algorithms for brain tumor segmentation ...",
arXiv:1811.02629, 2018). The core (necrosis + enhancing rim) takes a uniform 20-50 % of V.

Shape, by front propagation (minimal-path arrival times, ``skimage.graph.MCP_Geometric``) inside the brain, kept
``MARGIN_VOXELS`` away from its surface and out of CSF:

1. the core grows from a white-matter seed with a nearly uniform speed, modulated by a smooth random field, so it is
   compact but irregular; its earliest-reached part (20-60 % of it) is the necrosis, the rest the enhancing rim;
2. the edema grows from the whole core with a speed proportional to ``GM_SPEED + wm`` (white-matter fraction), so the
   front runs along the white-matter tracts and stays out of the cortex, as vasogenic edema does; it stops when the
   drawn volume V is reached. The result is irregular, finger-like and not a concentric shell.

A seed whose reachable region is too small (an enclosed pocket) is redrawn; after ``MAX_TRIES`` seeds the growth
raises :class:`TumourPlacementError` naming the subject, never loops forever.

Mass effect (optional, :func:`mass_effect_coordinates`): the surrounding anatomy is pushed radially away from the core
by up to a given number of mm, the push fading with distance from the core and vanishing at the brain surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.stats import norm
from skimage.graph import MCP_Geometric

__all__ = [
    "VOLUME_BOUNDS_CM3",
    "TumourMasks",
    "TumourPlacementError",
    "draw_tumour_volume",
    "grow_tumour",
    "mass_effect_coordinates",
    "soft_fractions",
    "warp",
]

VOLUME_BOUNDS_CM3 = (15.0, 250.0)
VOLUME_MEDIAN_CM3 = 100.0
VOLUME_LOG_SD = 0.6
CORE_FRACTION = (0.2, 0.5)  # core volume / whole-tumour volume
NECROSIS_FRACTION = (0.2, 0.6)  # necrosis volume / core volume
GM_SPEED = 0.1  # edema front speed in grey matter relative to pure white matter (speed = GM_SPEED + wm)
NOISE_SIGMA_MM = 6.0  # smoothness of the random speed modulation
NOISE_AMPLITUDE = (0.4, 0.8)  # standard deviation of log(speed) modulation: core, edema
SEED_WM = 0.6  # the seed lies in white matter at least this pure
MARGIN_VOXELS = 2  # distance kept between the whole tumour and the brain surface
EDGE_SIGMA_VOXELS = 0.6  # Gaussian blur of the label masks giving the partial-volume fractions
MAX_TRIES = 8
MAX_MASS_EFFECT_MM = 10.0  # largest push of the anatomy away from the core ("mild": a few mm)
MASS_EFFECT_DECAY_MM = 15.0  # the push decays as exp(-distance from the core / this)
MASS_EFFECT_EDGE_MM = 10.0  # and ramps from 0 at the brain surface (the skull does not move) to full over this


class TumourPlacementError(ValueError):
    """No seed let a tumour of the drawn volume grow inside the brain within ``MAX_TRIES`` tries."""


@dataclass(frozen=True)
class TumourMasks:
    """Nested boolean masks of one tumour: ``necrosis`` within ``core`` within ``whole``."""

    whole: np.ndarray
    core: np.ndarray
    necrosis: np.ndarray


def draw_tumour_volume(bounds_cm3: tuple[float, float], rng: np.random.Generator) -> float:
    """Whole-tumour volume (cm^3): log-normal (median 100 cm^3, log-sd 0.6) truncated to ``bounds_cm3``."""
    low, high = (norm.cdf((np.log(b) - np.log(VOLUME_MEDIAN_CM3)) / VOLUME_LOG_SD) for b in bounds_cm3)
    quantile = low + (high - low) * rng.uniform()
    volume = float(np.exp(np.log(VOLUME_MEDIAN_CM3) + VOLUME_LOG_SD * norm.ppf(quantile)))
    return float(np.clip(volume, *bounds_cm3))  # guards the rounding of ppf(cdf(bound))


def _log_speed_noise(shape: tuple[int, ...], spacing: float, amplitude: float, rng: np.random.Generator) -> np.ndarray:
    """exp of a smooth zero-mean Gaussian random field with standard deviation ``amplitude``."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape, dtype=np.float32), NOISE_SIGMA_MM / spacing)
    return np.exp(amplitude * field / max(float(field.std()), 1e-6))


def _grow(cost: np.ndarray, starts: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The ``count`` voxels reached first by a front from ``starts`` at speed 1 / ``cost`` (inf: impassable).

    Returns:
        the mask of those voxels and the arrival times, or None when fewer than ``count`` voxels are reachable.
    """
    coverage = min(1.0, 1.5 * count / cost.size)
    arrival, _ = MCP_Geometric(cost).find_costs([tuple(p) for p in starts], max_coverage=coverage)
    reached = np.isfinite(arrival)
    if reached.sum() < count:
        return None
    order = np.argsort(np.where(reached, arrival, np.inf), axis=None, kind="stable")[:count]
    mask = np.zeros(cost.shape, bool)
    mask.flat[order] = True
    return mask, arrival


def grow_tumour(
    brain: np.ndarray,
    wm: np.ndarray,
    csf: np.ndarray,
    spacing: float,
    volume_cm3: float,
    rng: np.random.Generator,
    subject: str,
) -> TumourMasks:
    """Grow one BraTS-HGG-like tumour of ``volume_cm3`` inside ``brain`` (see the module docstring).

    Args:
        brain: boolean brain mask.
        wm: white-matter fraction in [0, 1], same shape.
        csf: boolean CSF mask (the tumour does not grow into it).
        spacing: isotropic voxel size in mm.
        volume_cm3: whole-tumour volume.
        rng: source of the seed, core / necrosis fractions and speed fields.
        subject: names the subject in the error message (e.g. ``"brain_003 (seed 0)"``).

    Raises:
        TumourPlacementError: no seed among ``MAX_TRIES`` leaves room for the tumour.
    """
    voxel_cm3 = spacing**3 / 1000
    whole_count = max(round(volume_cm3 / voxel_cm3), 1)
    core_count = max(round(rng.uniform(*CORE_FRACTION) * whole_count), 1)
    necrosis_count = max(round(rng.uniform(*NECROSIS_FRACTION) * core_count), 1)
    room = ndimage.binary_erosion(np.pad(brain, 1), iterations=MARGIN_VOXELS)[(slice(1, -1),) * brain.ndim] & ~csf
    core_cost = np.where(room, 1 / _log_speed_noise(brain.shape, spacing, NOISE_AMPLITUDE[0], rng), np.inf)
    edema_speed = (GM_SPEED + wm) * _log_speed_noise(brain.shape, spacing, NOISE_AMPLITUDE[1], rng)
    edema_cost = np.where(room, 1 / edema_speed, np.inf)
    seeds = np.argwhere(room & (wm >= SEED_WM))
    for _ in range(MAX_TRIES if len(seeds) else 0):
        seed = seeds[rng.integers(len(seeds))]
        grown = _grow(core_cost, seed[None], core_count)
        if grown is None:
            continue
        core, core_arrival = grown
        grown = _grow(edema_cost, np.argwhere(core), whole_count)
        if grown is None:
            continue
        whole = grown[0] | core
        order = np.argsort(np.where(core, core_arrival, np.inf), axis=None, kind="stable")[:necrosis_count]
        necrosis = np.zeros_like(core)
        necrosis.flat[order] = True
        return TumourMasks(whole=whole, core=core, necrosis=necrosis)
    raise TumourPlacementError(
        f"could not place a tumour of {volume_cm3:.1f} cm^3 inside the brain of {subject} after {MAX_TRIES} tries "
        f"(the brain, kept {MARGIN_VOXELS} voxels from its surface and out of CSF, has {int(room.sum())} voxels of "
        f"{spacing} mm, {room.sum() * voxel_cm3:.1f} cm^3); lower max_volume_cm3."
    )


def soft_fractions(masks: TumourMasks) -> np.ndarray:
    """Edema, enhancing-rim and necrosis fractions, shape (3, *grid): the nested masks blurred into a partial-volume
    ramp about one voxel wide (blurring keeps the nesting, so the fractions are non-negative)."""
    inside = [
        ndimage.gaussian_filter(mask.astype(np.float32), EDGE_SIGMA_VOXELS)
        for mask in (masks.whole, masks.core, masks.necrosis)
    ]
    return np.stack([inside[0] - inside[1], inside[1] - inside[2], inside[2]]).clip(0, 1)


def mass_effect_coordinates(core: np.ndarray, brain: np.ndarray, spacing: float, shift_mm: float) -> np.ndarray:
    """Sampling coordinates (3, *grid) of a backward warp that pushes the anatomy radially away from the tumour core.

    The displacement at a voxel x points from the core's centroid c to x; its length is
    ``shift_mm * exp(-d_core(x) / MASS_EFFECT_DECAY_MM) * min(1, d_out(x) / MASS_EFFECT_EDGE_MM)`` (in mm, at most the
    distance |x - c|), with d_core the distance to the core and d_out the depth inside ``brain``: full next to the
    core, fading away from it, and zero on the brain surface, so the brain's outline stays where it is. Resampling a
    map at ``x - u(x)`` (:func:`warp`) moves its content outward by u.

    Args:
        core: boolean tumour core (necrosis + enhancing), the source of the push.
        brain: boolean brain mask (CSF included) on the same grid.
        spacing: isotropic voxel size in mm.
        shift_mm: largest displacement in mm, in [0, ``MAX_MASS_EFFECT_MM``].
    """
    if not 0 <= shift_mm <= MAX_MASS_EFFECT_MM:
        raise ValueError(f"mass_effect_mm must be in [0, {MAX_MASS_EFFECT_MM}] (mm), got {shift_mm}.")
    if core.shape != brain.shape or not core.any():
        raise ValueError(f"core must be a non-empty mask of the brain's shape {brain.shape}, got {core.shape}.")
    grid = np.indices(core.shape, dtype=np.float32)
    offset = grid - np.array(ndimage.center_of_mass(core), np.float32).reshape(3, 1, 1, 1)
    radius = np.sqrt((offset**2).sum(0))
    d_core = ndimage.distance_transform_edt(~core) * spacing
    d_out = (ndimage.distance_transform_edt(brain) - 1).clip(0) * spacing  # 0 on the surface voxels
    length = shift_mm * np.exp(-d_core / MASS_EFFECT_DECAY_MM) * np.minimum(1.0, d_out / MASS_EFFECT_EDGE_MM)
    length = np.minimum(length / spacing, radius)  # in voxels, never past the centroid
    return grid - offset * (length / np.maximum(radius, 1e-6))


def warp(volume: np.ndarray, coordinates: np.ndarray, order: int = 1) -> np.ndarray:
    """``volume`` (X, Y, Z) resampled at ``coordinates`` (3, X, Y, Z): linear (``order=1``) for partial-volume maps,
    nearest (``order=0``) for masks; outside the grid the edge value is repeated."""
    return ndimage.map_coordinates(volume, coordinates, order=order, mode="nearest").astype(volume.dtype)

"""Hierarchical cell phantoms: an open generator for the synthetic cryo-ET-like benchmark.

Hsu et al. (NeurIPS 2021) introduced, and Tursynbek & Niethammer (MICCAI 2023, sec. 4.1, Table 1) reused,
120 volumes of 50^3 voxels with a three-level hierarchy: a cell; inside it vesicles and mitochondria;
and four kinds of small protein aggregate, all with randomised positions and intensities and pink noise of
magnitude 0.25. That data set was never published as code, so this module regenerates its description:

* level 1 (K = 2): background, cell;
* level 2 (K = 4): background, cell body, vesicle, mitochondrion;
* level 3 (K = 8): the level-2 classes and aggregates A-D, each lying inside a single level-2 region.

The ``regular`` variant uses spheres and boxes; ``irregular`` keeps the same tree with non-convex shapes
(unions of balls, curved tubes) seen through a smooth random warp.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from monai_ext import __version__
from monai_ext.data.datalist import save_nifti, split_counts, write_datalist
from monai_ext.data.noise import power_law_noise
from monai_ext.data.output_folder import claim_output_dir

VARIANTS = ("regular", "irregular")
LEVEL_CLASSES: dict[int, tuple[str, ...]] = {
    1: ("background", "cell"),
    2: ("background", "cell body", "vesicle", "mitochondrion"),
    3: (
        "background",
        "cell body",
        "vesicle",
        "mitochondrion",
        "aggregate A",
        "aggregate B",
        "aggregate C",
        "aggregate D",
    ),
}
LABEL_KEYS = {1: "label_l1", 2: "label_l2", 3: "label_l3"}
MIN_SIZE = 24
# Per-volume class intensities are drawn uniformly from these ranges (level-3 classes, in LEVEL_CLASSES order):
# each class keeps its place in expectation, while neighbouring ranges overlap across volumes.
CLASS_INTENSITY_RANGES: tuple[tuple[float, float], ...] = (
    (0.00, 0.10),  # background
    (0.45, 0.60),  # cell body
    (0.70, 0.85),  # vesicle
    (0.20, 0.35),  # mitochondrion
    (0.85, 1.00),  # aggregate A
    (0.60, 0.75),  # aggregate B
    (0.30, 0.45),  # aggregate C
    (0.90, 1.00),  # aggregate D
)

Mask = np.ndarray
ShapeFn = Callable[[np.ndarray, np.random.Generator, float], Mask]


@dataclass(frozen=True)
class PhantomOptions:
    """Options of the cell-phantom generator (recorded in ``dataset.json``).

    Args:
        variant: ``"regular"`` (spheres, cubes, boxes) or ``"irregular"`` (curved, non-convex shapes).
        size: edge length of the cubic volume in voxels, >= 24.
        noise: pink-noise standard deviation as a fraction of the clean intensity range, >= 0 (paper: 0.25).
        noise_exponent: power-law exponent of the noise spectrum (1 = pink, 0 = white).
        vesicles: inclusive range of the number of vesicles per cell.
        mitochondria: inclusive range of the number of mitochondria per cell.
        aggregates_per_kind: inclusive range of the number of aggregates of each of the four kinds.
    """

    variant: str = "regular"
    size: int = 50
    noise: float = 0.25
    noise_exponent: float = 1.0
    vesicles: tuple[int, int] = (4, 6)
    mitochondria: tuple[int, int] = (3, 5)
    aggregates_per_kind: tuple[int, int] = (3, 5)

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got '{self.variant}'.")
        if int(self.size) != self.size or self.size < MIN_SIZE:
            raise ValueError(f"size must be an integer >= {MIN_SIZE} to hold the three-level tree, got {self.size}.")
        if not self.noise >= 0:
            raise ValueError(f"noise must be >= 0 (a fraction of the intensity range), got {self.noise}.")
        if not self.noise_exponent >= 0:
            raise ValueError(f"noise_exponent must be >= 0, got {self.noise_exponent}.")
        for name in ("vesicles", "mitochondria", "aggregates_per_kind"):
            low, high = getattr(self, name)
            if not 1 <= low <= high:
                raise ValueError(f"{name} must be a range (low, high) with 1 <= low <= high, got {(low, high)}.")


@dataclass(frozen=True)
class Phantom:
    """One generated volume: the noisy image in [0, 1], its three nested label maps, and the standard deviation
    of the added noise in the units of the normalised image (what a denoiser told the noise level would use)."""

    image: np.ndarray
    labels: dict[int, np.ndarray]
    noise_std: float


class _Canvas:
    """Voxel coordinates of a volume, optionally seen through a smooth warp, and shape rasterisers.

    Every shape is evaluated only inside a window around it (its extent plus the largest warp displacement),
    which keeps rejection sampling cheap.
    """

    def __init__(self, size: int, warp: np.ndarray | None = None) -> None:
        self.size = size
        self.grid = np.indices((size,) * 3, dtype=np.float32)
        self.slack = 1.0
        if warp is not None:
            self.grid = self.grid + warp
            self.slack += float(np.abs(warp).max())

    def _window(self, centre: np.ndarray, extent: float) -> tuple[slice, ...]:
        reach = extent + self.slack
        return tuple(
            slice(max(int(np.floor(c - reach)), 0), min(int(np.ceil(c + reach)) + 1, self.size)) for c in centre
        )

    def _fill(self, window: tuple[slice, ...], inside: np.ndarray) -> Mask:
        mask = np.zeros((self.size,) * 3, dtype=bool)
        mask[window] = inside
        return mask

    def _ball_in(self, window: tuple[slice, ...], centre: np.ndarray, radius: float) -> np.ndarray:
        grid = self.grid[(slice(None), *window)]
        return sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True)) <= radius**2

    def ball(self, centre: np.ndarray, radius: float) -> Mask:
        window = self._window(centre, radius)
        return self._fill(window, self._ball_in(window, centre, radius))

    def box(self, centre: np.ndarray, half: Sequence[float]) -> Mask:
        window = self._window(centre, float(np.max(half)) * np.sqrt(3))
        grid = self.grid[(slice(None), *window)]
        inside = np.ones(grid.shape[1:], dtype=bool)
        for g, c, h in zip(grid, centre, half, strict=True):
            inside &= np.abs(g - c) <= h
        return self._fill(window, inside)

    def balls(self, centres: Sequence[np.ndarray], radii: Sequence[float]) -> Mask:
        """The union of several balls, evaluated in one window that covers them all."""
        low = np.min([c - r for c, r in zip(centres, radii, strict=True)], axis=0)
        high = np.max([c + r for c, r in zip(centres, radii, strict=True)], axis=0)
        window = self._window((low + high) / 2, float(np.max(high - low)) / 2)
        inside = np.zeros([w.stop - w.start for w in window], dtype=bool)
        for c, r in zip(centres, radii, strict=True):
            inside |= self._ball_in(window, c, r)
        return self._fill(window, inside)

    def blob(self, centre: np.ndarray, radius: float, rng: np.random.Generator, lobes: int) -> Mask:
        """A union of ``lobes`` balls scattered around ``centre``: a non-convex blob of about ``radius``."""
        centres, radii = [centre], [0.6 * radius]
        for _ in range(lobes):
            centres.append(centre + _random_direction(rng) * rng.uniform(0.3, 0.55) * radius)
            radii.append(rng.uniform(0.45, 0.6) * radius)
        return self.balls(centres, radii)

    def tube(self, centre: np.ndarray, length: float, radius: float, rng: np.random.Generator) -> Mask:
        """A curved tube: balls along a bent path through ``centre``."""
        direction, bend = _random_direction(rng), _random_direction(rng)
        steps = np.linspace(-0.5, 0.5, 7)
        centres = [centre + direction * s * length + bend * (0.25 - s**2) * length * 0.6 for s in steps]
        return self.balls(centres, [radius] * len(centres))


def _random_direction(rng: np.random.Generator) -> np.ndarray:
    v = rng.standard_normal(3)
    return v / np.linalg.norm(v)


def _smooth_warp(size: int, rng: np.random.Generator, amplitude: float, sigma: float) -> np.ndarray:
    """A smooth random displacement field (3, size, size, size) whose largest component is ``amplitude``."""
    field = np.stack([ndimage.gaussian_filter(rng.standard_normal((size,) * 3), sigma) for _ in range(3)])
    return (field * (amplitude / np.abs(field).max())).astype(np.float32)


def _cell_shape(canvas: _Canvas, variant: str, rng: np.random.Generator, scale: float) -> Mask:
    centre = canvas.size / 2 - 0.5 + rng.uniform(-2, 2, size=3) * scale
    if variant == "irregular":
        return canvas.blob(centre, rng.uniform(23, 26) * scale, rng, lobes=int(rng.integers(4, 7)))
    if rng.random() < 0.5:
        return canvas.ball(centre, rng.uniform(19, 22) * scale)
    return canvas.box(centre, [rng.uniform(16, 19) * scale] * 3)


def _vesicle_shape(canvas: _Canvas, centre: np.ndarray, variant: str, rng: np.random.Generator, scale: float) -> Mask:
    if variant == "irregular":
        return canvas.blob(centre, rng.uniform(6.5, 9) * scale, rng, lobes=int(rng.integers(2, 4)))
    return canvas.ball(centre, rng.uniform(4.5, 7) * scale)


def _mitochondrion_shape(
    canvas: _Canvas, centre: np.ndarray, variant: str, rng: np.random.Generator, scale: float
) -> Mask:
    if variant == "irregular":
        return canvas.tube(centre, rng.uniform(12, 18) * scale, rng.uniform(3, 4) * scale, rng)
    half = rng.permutation([rng.uniform(6, 10), rng.uniform(3, 4.5), rng.uniform(3, 4.5)]) * scale
    return canvas.box(centre, half)


def _aggregate_shape(canvas: _Canvas, centre: np.ndarray, variant: str, rng: np.random.Generator, _: float) -> Mask:
    radius = rng.uniform(1, 3)
    if variant == "irregular":
        return canvas.blob(centre, radius + 0.8, rng, lobes=2)
    if rng.random() < 0.5:
        return canvas.ball(centre, radius)
    return canvas.box(centre, [radius * 0.8] * 3)


def _place(
    shape: Callable[[np.ndarray], Mask], allowed: Mask, rng: np.random.Generator, tries: int = 200
) -> Mask | None:
    """Draw centres inside ``allowed`` until ``shape(centre)`` lies wholly inside ``allowed``; None if none fits."""
    candidates = np.argwhere(allowed)
    for _ in range(tries):
        centre = candidates[rng.integers(len(candidates))].astype(np.float32)
        mask = shape(centre)
        if mask.any() and not (mask & ~allowed).any():
            return mask
    return None


def _draw_labels(options: PhantomOptions, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """Paint the level-2 and level-3 maps of one cell; None when some class could not be placed.

    Aggregates are painted into the level-3 map only, each inside a single level-2 region, so the level-2 map
    keeps the region an aggregate lies in and the nesting holds by construction.
    """
    size, variant = options.size, options.variant
    scale = size / 50.0
    warp = _smooth_warp(size, rng, 2.5 * scale, 5 * scale) if variant == "irregular" else None
    canvas = _Canvas(size, warp)
    level2 = _cell_shape(canvas, variant, rng, scale).astype(np.uint8)
    margin = ndimage.binary_erosion(level2 == 1, iterations=1)
    for label, count, shape_fn in (  # the longer mitochondria first, while the cell still has room
        (3, options.mitochondria, _mitochondrion_shape),
        (2, options.vesicles, _vesicle_shape),
    ):
        for _ in range(int(rng.integers(count[0], count[1] + 1))):
            free = margin & ~ndimage.binary_dilation(level2 > 1, iterations=1)
            mask = _place(lambda c, f=shape_fn: f(canvas, c, variant, rng, scale), free, rng)
            if mask is not None:
                level2[mask] = label
    level3 = level2.copy()
    low, high = options.aggregates_per_kind
    for kind in range(4):
        for _ in range(int(rng.integers(low, high + 1))):
            free = (level2 > 0) & ~ndimage.binary_dilation(level3 > 3, iterations=1)
            centre_region = np.argwhere(free)
            if len(centre_region) == 0:
                break
            parent = level2[tuple(centre_region[rng.integers(len(centre_region))])]
            mask = _place(
                lambda c: _aggregate_shape(canvas, c, variant, rng, scale), free & (level2 == parent), rng, tries=20
            )
            if mask is not None:
                level3[mask] = 4 + kind
    if len(np.unique(level3)) != len(LEVEL_CLASSES[3]):
        return None
    return level2, level3


def make_phantom(options: PhantomOptions, rng: np.random.Generator) -> Phantom:
    """Generate one noisy phantom volume and its nested level-1/2/3 label maps.

    Args:
        options: generator options.
        rng: source of randomness; the volume depends on nothing else.
    """
    maps = None
    while maps is None:
        maps = _draw_labels(options, rng)
    level2, level3 = maps
    level1 = (level2 > 0).astype(np.uint8)
    intensities = np.array([rng.uniform(lo, hi) for lo, hi in CLASS_INTENSITY_RANGES], dtype=np.float32)
    clean = intensities[level3]
    value_range = float(clean.max() - clean.min())
    noise_std = options.noise * value_range
    noisy = clean + noise_std * power_law_noise(clean.shape, rng, options.noise_exponent)
    noisy_range = float(noisy.max() - noisy.min())
    image = ((noisy - noisy.min()) / noisy_range).astype(np.float32)
    return Phantom(image=image, labels={1: level1, 2: level2, 3: level3}, noise_std=noise_std / noisy_range)


def _write_phantom(
    task: tuple[PhantomOptions, np.random.SeedSequence, Path, str, str],
) -> dict[str, str | float]:
    """Generate one phantom from its own seed and write its image and label maps (the whole volume, or its
    central axial slice in ``"2d"`` mode); return its datalist entry."""
    options, seed, folder, name, mode = task
    phantom = make_phantom(options, np.random.default_rng(seed))
    cut = (lambda volume: volume[..., options.size // 2]) if mode == "2d" else (lambda volume: volume)
    save_nifti(cut(phantom.image), folder / f"{name}_image.nii.gz")
    record: dict[str, str | float] = {"image": f"{name}_image.nii.gz", "noise_std": round(phantom.noise_std, 6)}
    for level, key in LABEL_KEYS.items():
        save_nifti(cut(phantom.labels[level]), folder / f"{name}_{key}.nii.gz")
        record[key] = f"{name}_{key}.nii.gz"
    return record


def make_phantoms(
    out: str,
    variant: str = "regular",
    n: int = 120,
    seed: int = 0,
    size: int = 50,
    noise: float = 0.25,
    overwrite: bool = False,
    workers: int | None = None,
    mode: str = "3d",
) -> Path:
    """Write ``n`` cell phantoms as NIfTI with a MONAI datalist (80 / 20 / 20 split for 120 volumes).

    Each volume ``i`` is drawn from its own child of ``SeedSequence(seed)``, so a volume does not depend on
    ``n`` or ``workers``, and the same seed gives the same bytes.

    Args:
        out: output folder; created if missing, refused if non-empty unless ``overwrite``.
        variant: ``"regular"`` or ``"irregular"``.
        n: number of volumes, >= 1.
        seed: random seed.
        size: edge length of the cubic volumes in voxels.
        noise: pink-noise magnitude as a fraction of the clean intensity range.
        overwrite: replace the contents of a non-empty folder.
        workers: processes generating volumes in parallel (default: the number of cores).
        mode: ``"3d"`` writes the volumes; ``"2d"`` writes the central axial slice of each (``size`` x ``size``
            image and label maps under the same keys; e.g. for the 2D CUTS bundle).

    Returns:
        path of the written ``datalist.json``.
    """
    options = PhantomOptions(variant=variant, size=size, noise=noise)
    if mode not in ("2d", "3d"):
        raise ValueError(f"mode must be '2d' or '3d', got {mode!r}.")
    if int(n) != n or n < 1:
        raise ValueError(f"n (number of volumes) must be an integer >= 1, got {n}.")
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}.")
    with claim_output_dir(out, overwrite) as folder:
        tasks = [
            (options, child, folder, f"phantom_{index:03d}", mode)
            for index, child in enumerate(np.random.SeedSequence(seed).spawn(n))
        ]
        progress = partial(tqdm, total=n, desc=f"{variant} phantoms")
        if workers == 1:
            records = list(progress(map(_write_phantom, tasks)))
        else:
            with ProcessPoolExecutor(max_workers=min(workers, n)) as pool:
                records = list(progress(pool.map(_write_phantom, tasks)))
        meta = {
            "generator": "monai_ext.data.phantoms",
            "version": __version__,
            "seed": seed,
            "n": n,
            "options": asdict(options),
            "mode": mode,
            "class_intensity_ranges": CLASS_INTENSITY_RANGES,
            "classes": {key: LEVEL_CLASSES[level] for level, key in LABEL_KEYS.items()},
        }
        return write_datalist(folder, records, split_counts(n), json.loads(json.dumps(meta)))

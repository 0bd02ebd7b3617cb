"""A look at the BraTS-like brain phantoms: the four contrasts, the BraTS labels and the optional mass effect.

Synthesizes the first ``--subjects`` subjects of ``make_brains(seed=0)`` (3D, 2 mm: the subjects of the brain
configs' default dataset) twice from the same random state, without and with ``--mass-effect-mm`` of mass effect,
and writes one row per subject: T1, T1ce, T2 and FLAIR on the axial slice through the tumour's centre, FLAIR with
the BraTS labels (red necrosis, yellow edema, cyan enhancing) and the lateral ventricles (blue outline), the same
with mass effect (the ventricles without it outlined in dotted white), and where the mass effect changed FLAIR
(|difference|; both twins share every random draw, so only the displacement shows).

    python benchmarks/brain_figure.py --out benchmarks/results/brains.png
"""

from __future__ import annotations

import argparse
import copy
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from scipy import ndimage
from steps import RESULTS, save_image_grid

from monai_ext.data.brain import BRATS_LABELS, CONTRASTS, synthesize_brain
from monai_ext.provenance import refuse_existing

FLAIR = CONTRASTS.index("flair")
COLOURS = {"necrosis": "red", "edema": "yellow", "enhancing": "cyan"}
BRATS_CMAP = ListedColormap([COLOURS[name] for name, _ in sorted(BRATS_LABELS.items(), key=lambda kv: kv[1])])


def subject_pairs(count: int, mass_effect_mm: float) -> list[tuple[dict, dict]]:
    """The first ``count`` subjects of ``make_brains(seed=0)``, each without and with mass effect."""
    rng = np.random.default_rng(0)
    pairs = []
    for index in range(count):
        twin = copy.deepcopy(rng)  # same draws: the pushed subject differs only by its displacement
        name = f"brain_{index:03d} (seed 0)"
        pairs.append(
            (synthesize_brain(rng, subject=name), synthesize_brain(twin, subject=name, mass_effect_mm=mass_effect_mm))
        )
    return pairs


def _overlay(axis, flair: np.ndarray, brats: np.ndarray, ventricles: np.ndarray, reference: np.ndarray | None) -> None:
    axis.imshow(flair.T, cmap="gray", origin="lower")
    codes = np.searchsorted(sorted(BRATS_LABELS.values()), brats).astype(float)
    axis.imshow(np.ma.masked_where(brats.T == 0, codes.T), cmap=BRATS_CMAP, vmin=0, vmax=2, alpha=0.45, origin="lower")
    axis.contour(ventricles.T, levels=[0.5], colors="blue", linewidths=0.8, origin="lower")
    if reference is not None:
        axis.contour(reference.T, levels=[0.5], colors="white", linewidths=0.6, linestyles="dotted", origin="lower")


def figure(pairs: list[tuple[dict, dict]], mass_effect_mm: float, out: Path) -> None:
    """Write the PNG: one row per subject (see the module docstring)."""
    columns = [*CONTRASTS, "FLAIR + BraTS labels", f"mass effect {mass_effect_mm:g} mm", "|FLAIR change|"]
    fig = Figure(figsize=(2.2 * len(columns), 2.3 * len(pairs)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(pairs), len(columns), squeeze=False)
    for row, (still, pushed) in enumerate(pairs):
        z = round(ndimage.center_of_mass(still["label"])[2])
        for col in range(len(CONTRASTS)):
            axes[row, col].imshow(still["image"][col, ..., z].T, cmap="gray", origin="lower")
        labels, pushed_labels, change = axes[row, len(CONTRASTS) :]
        _overlay(labels, still["image"][FLAIR, ..., z], still["brats"][..., z], still["ventricles"][..., z], None)
        _overlay(
            pushed_labels,
            pushed["image"][FLAIR, ..., z],
            pushed["brats"][..., z],
            pushed["ventricles"][..., z],
            still["ventricles"][..., z],
        )
        difference = np.abs(pushed["image"][FLAIR, ..., z] - still["image"][FLAIR, ..., z])
        change.imshow(difference.T, cmap="magma", vmin=0, vmax=0.25, origin="lower")
        axes[row, 0].set_ylabel(f"brain_{row:03d}, z = {z}", fontsize=8)
    save_image_grid(fig, axes, columns, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(RESULTS / "brains.png"))
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--mass-effect-mm", type=float, default=6.0)
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    refuse_existing(out, args.overwrite)
    figure(subject_pairs(args.subjects, args.mass_effect_mm), args.mass_effect_mm, out)
    print(f"figure written to {out}")


if __name__ == "__main__":
    main()

"""The phantoms' calibration: the simple baselines on the cell and brain phantoms beside the papers."""

from __future__ import annotations

from summaries.common import load, table_header, table_row
from summaries.structure_discovery import LEVELS, METHODS


def calibration(result: dict) -> str:
    lines = [f"Calibration of the phantoms (`{result['command']}`), matched Dice on 20 test volumes, ours (paper):"]
    lines.append(table_header(["variant", "method", *LEVELS]))
    for variant, data in result["variants"].items():
        for method in ("kmeans", "bm4d_kmeans"):
            cells = [data["cells"][f"{method}/label_l{level}"] for level in (1, 2, 3)]
            values = [f"{c['measured']:.3f} ({c['paper']:.3f})" for c in cells]
            lines.append(table_row([variant, METHODS[method], *values]))
    times = ", ".join(f"{v} {d['generation_seconds_120']} s" for v, d in result["variants"].items())
    lines.append(f"\nGeneration of 120 volumes: {times}.")
    return "\n".join(lines)


def brains(result: dict) -> str:
    kmeans = result["kmeans_3d"]
    dice, hd, paper = kmeans["dice"], kmeans["hd95_mm"], kmeans["paper"]
    lines = [
        f"Calibration of the brain phantoms (`{result['command']}`, {dice['n']} test subjects, FLAIR, 2 mm); paper "
        "values: Tursynbek & Niethammer 2023 (BraTS'19) for 3D k-means, CUTS (Liu, Amodio et al.) for the 2D baselines:"
    ]
    lines.append(table_header(["method", "target", "Dice", "paper Dice", "HD95 (mm)", "paper HD95 (mm)"]))
    cells = [f"{dice['mean']:.3f} ± {dice['sd']:.3f}", f"{paper['dice']:.3f}", f"{hd['mean']:.1f} ± {hd['sd']:.1f}"]
    lines.append(table_row(["k-means 3D (K = 3, matched)", "whole tumour", *cells, f"{paper['hd95_mm']:.1f}"]))
    targets = {"label": "whole tumour", "ventricles": "ventricles"}
    for method, scores in result["baselines_2d"].items():
        for target, name in targets.items():
            measured = scores[target]
            ours = f"{measured['mean']:.3f} ± {measured['sd']:.3f} (n = {measured['n']})" if measured else "-"
            reference = result["paper_cuts"].get(method, {}).get(target)
            paper_cell = f"{reference:.3f}" if reference is not None else "-"
            lines.append(table_row([f"{method} 2D (CUTS rule)", name, ours, paper_cell, "-", "-"]))
    volumes, seconds = result["whole_tumour_cm3"], result["generation_seconds_per_subject"]
    lines.append(
        f"\nWhole tumour over {len(volumes['per_subject'])} subjects: min {volumes['min']:.1f}, median "
        f"{volumes['median']:.1f}, max {volumes['max']:.1f} cm^3. Generation: {seconds['3d']:.2f} s per subject (3D), "
        f"{seconds['2d']:.2f} s (2D). Calibrated (|Dice - paper| <= {kmeans['tolerance']}): {kmeans['calibrated']}."
    )
    return "\n".join(lines)


SOURCES = {  # section: (table function, reader of the results it needs)
    "calibration": (calibration, lambda: load("phantoms.json")),
    "brains": (brains, lambda: load("brains.json")),
}

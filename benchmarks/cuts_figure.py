"""A look at CUTS on the brain slices (issue 11): the label maps behind the Dice of ``benchmarks/cuts.py``.

For the first ``--slices`` slices of the split that hold both targets, one row each: FLAIR with the ground truth
(tumour outlined in red, ventricles in cyan), then the label maps of the bundle (``CUTS + persistent
structures``), of the paper's reading of the same encoder, of k-means on the intensities and of the oracle level
(the condensation level with the best tumour Dice), each part in its own colour, with the part the hint rule picks
for each target outlined in the target's colour and its Dice in the title. The maps are computed as
``benchmarks/cuts.py`` computes them (``cuts_methods.label_maps``).

    python benchmarks/cuts_figure.py --out benchmarks/results/cuts.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from cuts_methods import CUTS_ROW, TARGETS, ComparedMethods, inference_parser, label_maps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from steps import BUNDLES, RESULTS, save_image_grid

from monai_ext.data.brain import CONTRASTS
from monai_ext.metrics.hint import hint_dice, hint_mask
from monai_ext.provenance import refuse_existing

FLAIR = CONTRASTS.index("flair")
OUTLINES = {"tumour": "red", "ventricles": "cyan"}
METHODS = {  # cuts.py row -> column title
    CUTS_ROW: "CUTS (bundle)",
    "CUTS + persistent structures (paper)": "CUTS (paper's reading)",
    "k-means": "k-means",
}
ORACLE_COLUMN = "oracle level (tumour)"


def rows(split: str, count: int, ckpt: str) -> list[dict]:
    """The first ``count`` slices of ``split`` with both targets: FLAIR, the truths and the label maps."""
    parser = inference_parser(ckpt, None)
    parser["input_split"] = split
    methods = ComparedMethods(parser)
    found = []
    for item in parser.get_parsed_content("dataset").data:
        data, maps, levels, _ = label_maps(item, parser, methods)
        grid = maps[CUTS_ROW].shape
        truths = {t: np.asarray(data[key]).reshape(grid) > 0 for t, key in TARGETS.items()}
        if not all(truth.any() for truth in truths.values()):
            continue
        shown = {METHODS[m]: maps[m] for m in METHODS}
        shown[ORACLE_COLUMN] = max(levels, key=lambda level: hint_dice(level, truths["tumour"]))
        name = Path(item["image"]).name.split(".")[0]
        found.append({"name": name, "flair": np.asarray(data["image"])[FLAIR], "truths": truths, "maps": shown})
        print(f"{name}: {len(found)}/{count}", flush=True)
        if len(found) == count:
            break
    return found


def figure(slices: list[dict], out: Path) -> None:
    """Write the PNG: one row per slice (see the module docstring)."""
    columns = ["FLAIR + ground truth", *METHODS.values(), ORACLE_COLUMN]
    fig = Figure(figsize=(2.4 * len(columns), 2.5 * len(slices)))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(slices), len(columns), squeeze=False)
    for row, shown in enumerate(slices):
        axes[row, 0].imshow(shown["flair"].T, cmap="gray", origin="lower")
        for target, truth in shown["truths"].items():
            axes[row, 0].contour(truth.T, levels=[0.5], colors=OUTLINES[target], linewidths=0.8, origin="lower")
        axes[row, 0].set_ylabel(shown["name"], fontsize=7)
        for col, label_map in enumerate(shown["maps"].values(), start=1):
            axis = axes[row, col]
            axis.imshow(label_map.T % 20, cmap="tab20", vmin=0, vmax=19, interpolation="nearest", origin="lower")
            dice = []
            for target, truth in shown["truths"].items():
                picked = hint_mask(label_map, truth).astype(float)
                axis.contour(picked.T, levels=[0.5], colors=OUTLINES[target], linewidths=0.9, origin="lower")
                dice.append(f"{hint_dice(label_map, truth):.2f}")
            axis.set_xlabel(f"Dice T {dice[0]} / V {dice[1]}", fontsize=7)
    save_image_grid(fig, axes, columns, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=str(RESULTS / "cuts.png"))
    parser.add_argument("--split", default="test", choices=("training", "validation", "test"))
    parser.add_argument("--slices", type=int, default=4, help="how many slices with both targets, from the first")
    parser.add_argument("--encoder-ckpt", default=str(BUNDLES / "cuts" / "models" / "model.pt"))
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    if args.slices < 1:
        parser.error("--slices must be >= 1.")
    out = refuse_existing(args.out, args.overwrite)
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    slices = rows(args.split, args.slices, args.encoder_ckpt)
    if not slices:
        raise SystemExit(f"no slice of the {args.split} split holds both targets.")
    figure(slices, out)
    print(f"figure written to {out}")


if __name__ == "__main__":
    main()

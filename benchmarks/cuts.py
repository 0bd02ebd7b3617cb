"""CUTS on the brain phantom slices in the layout of Liu, Amodio et al., Table 1 (issue 11): the bundle's encoder,
diffusion condensation and persistent structures, its spectral k-means and the oracle best level, against the
scikit-image baselines (Otsu watershed, Felzenszwalb, SLIC) and k-means on the intensities (alone, on smoothed
intensities, refined as the bundle refines, and refined and merged as the bundle merges its parts), all in the same
run and binarised by the same hint rule, for the two targets (whole tumour, lateral ventricles); the paper's values
beside. On the brain slices the row ``tissue map (oracle)`` reads the phantom's exact tissue partition (the tumour's
three tissues as three parts) by the same rule: on the tumour, the best any map whose parts each lie within one
tissue can score.

Two readings of the same levels-from-embedding: ``CUTS + persistent structures`` is the bundle's inference (the
embedding with the pixel coordinates, the authors' code's persistent-structures rule, boundaries refined on the
intensities, comparable adjacent parts merged when ``merge_parts`` is on); ``CUTS + persistent structures
(paper)`` is the paper's (the embedding alone, the paper's rule, no refinement), as bundle 0.2.0 shipped it.

    python benchmarks/cuts.py --out benchmarks/results/cuts.json             # the shipped encoder
    python benchmarks/cuts.py --train --workdir benchmarks/.work/cuts ...     # train the bundle first
    python benchmarks/cuts.py --split validation --out ...                    # choose settings on validation
    python benchmarks/cuts.py --data cell_slices --out ...                    # the cell phantom slices, their encoder

Every method sees the bundle's preprocessed slice (the four contrasts, each min-max scaled, at the network's
size); the label maps are scored on the slice's own grid.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from cuts_methods import (
    CUTS_ROW,
    DATASETS,
    KMEANS_BASELINES,
    MERGING,
    ComparedMethods,
    add_encoder_arguments,
    encoder_config,
    label_maps,
    tissue_keys_of,
)
from monai.bundle import ConfigParser
from steps import RESULTS

from monai_ext.engines.cuts_report import ORACLE, CUTSReport
from monai_ext.metrics import paired_differences
from monai_ext.provenance import environment, write_json

PAPER_TABLE1 = {  # Liu, Amodio et al., Table 1, brain tumour / brain ventricles: Dice, Hausdorff (pixels)
    "watershed": {"tumour": (0.188, 53.96), "ventricles": (0.631, 30.25)},
    "felzenszwalb": {"tumour": (0.127, 64.90), "ventricles": (0.716, 20.35)},
    "slic": {"tumour": (0.242, 47.51), "ventricles": (0.475, 37.96)},
    "CUTS + spectral k-means": {"tumour": (0.479, 33.52), "ventricles": (0.774, 8.11)},
    "CUTS + persistent structures": {"tumour": (0.447, 32.54), "ventricles": (0.628, 16.34)},
    ORACLE: {"tumour": (0.489, 30.64), "ventricles": (0.819, 12.90)},
}
MERGED_BASELINE = "k-means + refinement" + MERGING  # k-means given the bundle's whole postprocessing of a label map
PAIRED_BASELINES = (*KMEANS_BASELINES, MERGED_BASELINE)  # the baselines it must beat


def is_paired_baseline(method: str) -> bool:
    """Whether CUTS is paired against ``method``: ``PAIRED_BASELINES`` and k-means with other part counts."""
    return method in PAIRED_BASELINES or method.startswith(("k-means (k = ", "smoothing + k-means (k = "))


def evaluate(parser: ConfigParser, max_slices: int | None, work: Path, dataset: str = "brain_slices") -> dict:
    """Scores of every method and of the targets of ``dataset`` (a key of ``DATASETS``) over the slices of the
    parser's ``input_split`` (``CUTSReport``, as the bundle's evaluation); CUTS paired against every k-means row."""
    benchmark = DATASETS[dataset]
    targets = benchmark.targets
    items = parser.get_parsed_content("dataset").data[:max_slices]
    methods = ComparedMethods(parser, benchmark.other_parts, tissue_keys_of(items, benchmark.tissue_keys))
    report, seconds = None, []
    for index, item in enumerate(items):
        data, maps, levels, condensation_seconds = label_maps(item, parser, methods)
        report = report or CUTSReport(work, {method: method for method in maps}, targets, levels_key="pred_levels")
        report.add({**data, **maps, "pred_levels": levels})
        seconds.append(condensation_seconds)
        print(f"slice {index + 1}/{len(items)}: condensation {condensation_seconds:.1f} s", flush=True)
    dice = {t: {m: [s["dice"] for s in rows] for m, rows in report.scores[t].items()} for t in targets}
    return {
        "slices": len(items),
        "condensation_seconds_per_slice": float(np.mean(seconds)),
        "targets": report.report()["targets"],
        "paired_dice": {
            t: {b: paired_differences(dice[t][CUTS_ROW], dice[t][b]) for b in dice[t] if is_paired_baseline(b)}
            for t in targets
        },
    }


def table(result: dict) -> str:
    """Dice and Hausdorff per method (rows) and target, the paper's Dice / Hausdorff beside."""
    targets = list(result["targets"])
    lines = [f"{'method':<30}" + "".join(f"{t + ' Dice / HD / HD95':<28}{'paper':<16}" for t in targets)]
    methods = list(result["targets"][targets[0]]["methods"])
    for method in methods:
        row = f"{method:<30}"
        for target in targets:
            s = result["targets"][target]["methods"].get(method)
            cell = f"{s['dice']['mean']:.3f} / {s['hausdorff']['mean']:.1f} / {s['hd95']['mean']:.1f}" if s else "-"
            paper = PAPER_TABLE1.get(method, {}).get(target)
            row += f"{cell:<28}{(f'{paper[0]:.3f} / {paper[1]:.1f}' if paper else '-'):<16}"
        lines.append(row)
    counts = ", ".join(f"{t}: {result['targets'][t]['images']} slices" for t in targets)
    lines.append(f"{counts}; condensation {result['condensation_seconds_per_slice']:.1f} s a slice")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_encoder_arguments(parser, "cuts", split="test")
    parser.add_argument("--data", default="brain_slices", choices=tuple(DATASETS), help="the bundle's data")
    parser.add_argument("--dataset-dir", default=None, help="a slice dataset (default: the bundle's data)")
    parser.add_argument("--out", default=str(RESULTS / "cuts.json"))
    args = parser.parse_args()
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    config, ckpt, training = encoder_config(args, args.dataset_dir, {}, args.data)
    result = {
        **environment(),
        "dataset": str(args.dataset_dir or f"{args.data} (the bundle's data)"),
        "split": args.split,
        "kernel_size": config["kernel_size"],
        "spatial_size": config["spatial_size"],
        "encoder_ckpt": ckpt,
        "training": training,
        **evaluate(config, args.max_slices, Path(args.workdir), args.data),
        "paper_table1": {
            m: {t: {"dice": v[0], "hausdorff": v[1]} for t, v in r.items()} for m, r in PAPER_TABLE1.items()
        },
    }
    write_json(args.out, result, overwrite=True)
    print(table(result))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

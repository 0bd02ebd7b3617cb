"""Where CUTS + persistent structures loses to k-means on the brain slices (issue 11): one encoder's condensation
levels read by label-free selection rules, on three kinds of condensed features, beside the oracle best level, the
true tissue map and k-means on the intensities (alone, refined as the bundle refines, smoothed, and with the pixel
coordinates), all in the same run. Run it on the validation split to choose, and on the training split (more
slices, seen by the encoder without labels) to confirm a choice: it is not for reporting. Each row's ``worst
margin`` is its smallest Dice lead, over the two targets, on the best of k-means, k-means + refinement and
smoothing + k-means, and for a row with merged parts also k-means + refinement merged the same way: the quality
target asks for a lead on both.

    python benchmarks/cuts_selection.py --out benchmarks/results/cuts_selection.json
    python benchmarks/cuts_selection.py --split training --max-slices 120 --features bundle --out ...
    python benchmarks/cuts_selection.py --train --patch-size 9 --workdir benchmarks/.work/patch9 --out ...
    python benchmarks/cuts_selection.py --train --temperature 0.1 --contrastive-weight 0.001 --anchors-per-image 8 \
        --workdir benchmarks/.work/authors --features bundle --out ...

Features, each condensed with the bundle's settings:
- ``embedding``: the encoder's output, as the bundle condenses it;
- ``embedding + coordinates w``: the pixel's (row, column), centred, scaled so that their total standard
  deviation is w times the embedding's (``AppendCoordinates``: colour + position, as SLIC clusters);
- ``embedding + intensities``: the slice's contrasts, centred, scaled to the embedding's total standard deviation;
- with ``--features bundle``, only the bundle's: the embedding with the coordinates at its ``coordinate_weight``.

Rules, each giving one label map per slice:
- ``persistent structures (paper)`` and ``(lineage)``: by the paper's rule (Liu, Amodio et al., sec. 3.2.2) and
  by its authors' public code's (``PersistentStructures``, ``rule``), each also ``+ refinement``: the boundaries
  sharpened on the intensities by the bundle's ``PottsRefinement``;
- ``persistent structures (lineage, part ratio r) + refinement``: the lineage rule where a lineage absorbed by one
  less than 1 / r times its size is a part of the merged whole, not painted alone (``part_ratio``), refined;
- ``persistent structures (lineage) + refinement + merging (s, r)``: the refined lineage map with its parts merged
  by ``MergeAdjacentParts`` (a part that has at least a share s of its boundary along one neighbour and at least r
  times its size joins it); ``k-means + refinement + merging (s, r)`` is k-means given the same;
- ``excess of mass p``: the non-overlapping segments of the condensation tree with the largest total stability
  size^p x persistence (Campello et al., "Density-based clustering based on hierarchical density estimates", 2013,
  the cluster selection of HDBSCAN, which uses p = 1); segments under the bundle's ``min_segment_size`` are not
  chosen;
- ``best level (oracle)``: the level with the best Dice, which looks at the ground truth;
- ``tissue map (oracle)``: the phantom's exact tissue partition, the tumour's three tissues as three parts
  (``monai_ext.data.brain.tissue_map``): on the tumour, the best any map whose parts each lie within one tissue
  can score.

Every map is binarised by the hint rule and scored by Dice on the network's grid (the labels resampled by the
bundle's preprocessing).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch
from cuts_methods import (
    DATASETS,
    KMEANS_BASELINES,
    KMEANS_PARTS,
    TARGETS,
    add_encoder_arguments,
    encoder_config,
    kmeans_baselines,
    on_grid,
    persistence_with_rule,
    postprocessing_transforms,
    tissue_keys_of,
)
from monai.bundle import ConfigParser
from steps import RESULTS, TISSUE_ROW, read_config

from monai_ext.baselines.kmeans import kmeans_segment
from monai_ext.data.brain import tissue_map
from monai_ext.engines.cuts_report import ORACLE
from monai_ext.metrics.hint import hint_dice
from monai_ext.provenance import environment, write_json
from monai_ext.transforms import (
    AppendCoordinates,
    DiffusionCondensationd,
    MergeAdjacentParts,
    PottsRefinement,
    PottsRefinementd,
)
from monai_ext.transforms.features import total_sd
from monai_ext.transforms.persistence import PERSISTENCE_RULES, excess_of_mass

TRAINING_OPTIONS = {  # train.json ids the selection may train with (--train), and what each is
    "patch_size": "patch",
    "temperature": "NT-Xent temperature",
    "contrastive_weight": "lambda",
    "anchors_per_image": "anchors per image",
    "seed": "seed",
    "positive_radius": "positive-pair radius",
}


def feature_sets(
    embedding: torch.Tensor, image: torch.Tensor, weights: list[float], bundle_only: bool
) -> dict[str, torch.Tensor]:
    """The condensed features of one slice (see the module docstring); ``bundle_only``: with coordinates only."""
    features = {f"embedding + coordinates {w:g}": torch.as_tensor(AppendCoordinates(w)(embedding)) for w in weights}
    if bundle_only:
        return features
    intensities = image - image.reshape(len(image), -1).mean(dim=1)[:, None, None]
    return {
        "embedding": embedding,
        **features,
        "embedding + intensities": torch.cat([embedding, total_sd(embedding) * intensities / total_sd(intensities)]),
    }


def merging_suffix(merging: MergeAdjacentParts) -> str:
    """The row-name suffix of a part merging: `` + merging (s, r)``."""
    return f" + merging ({merging.boundary_share:g}, {merging.size_ratio:g})"


def kmeans_maps(
    image: torch.Tensor, weights: list[float], refinement: PottsRefinement, mergings: dict[str, MergeAdjacentParts]
) -> dict[str, np.ndarray]:
    """``cuts.py``'s baselines (:func:`cuts_methods.kmeans_baselines`, with k-means + refinement merged by each of
    ``mergings``, by row-name suffix) and k-means (k = 10) on the intensities with the coordinates appended as in
    :func:`feature_sets`."""
    maps = kmeans_baselines(image, refinement, mergings)
    for w in weights:
        features = np.asarray(AppendCoordinates(w)(image))
        maps[f"k-means + coordinates {w:g}"] = kmeans_segment(features, KMEANS_PARTS, channel_first=True)
    return maps


def worst_margins(summary: dict, counterparts: dict[str, str]) -> dict[str, float]:
    """Per row, its smaller lead over the two targets on the best of ``KMEANS_BASELINES`` and of its counterpart
    (``counterparts``: for a row whose parts are merged, k-means + refinement merged the same way)."""
    margins = {}
    for row, targets in summary.items():
        baselines = [*KMEANS_BASELINES, *([counterparts[row]] if row in counterparts else [])]
        margins[row] = min(targets[t]["mean"] - max(summary[b][t]["mean"] for b in baselines) for t in TARGETS)
    return margins


def evaluate(
    parser: ConfigParser,
    weights: list[float],
    powers: list[float],
    part_ratios: list[float],
    mergings: dict[str, MergeAdjacentParts],
    bundle_only: bool,
    max_slices: int | None,
) -> dict:
    """Dice of every (features, rule) pair and of the k-means rows, per target, over the split's slices."""
    network = parser.get_parsed_content("network").eval()
    postprocessing = postprocessing_transforms(parser)
    condensation = postprocessing[DiffusionCondensationd].condensation
    refinement = postprocessing[PottsRefinementd].refinement
    persistence = {rule: persistence_with_rule(postprocessing, rule) for rule in PERSISTENCE_RULES}
    parts = {r: persistence_with_rule(postprocessing, "lineage", r) for r in part_ratios}
    min_size = parser["min_segment_size"]
    items = parser.get_parsed_content("dataset").data[:max_slices]
    tissue_keys = tissue_keys_of(items, DATASETS["brain_slices"].tissue_keys)
    dice = defaultdict(lambda: defaultdict(list))  # row -> target -> per-slice Dice
    counterparts = {}  # merged row -> k-means + refinement merged the same way
    for index, item in enumerate(items):
        data = parser.get_parsed_content("preprocessing")(dict(item))
        image = torch.as_tensor(data["image"]).float()
        with torch.no_grad():
            embedding = network(image[None].to(next(network.parameters()).device))[0].cpu()
        maps = kmeans_maps(image, weights, refinement, mergings)
        if tissue_keys:
            maps[TISSUE_ROW] = on_grid(tissue_map(item, tissue_keys), tuple(image.shape[1:]))
        for name, features in feature_sets(embedding, image, weights, bundle_only).items():
            levels = condensation(features)
            steps = list(levels.meta["steps"])
            for rule, structures in persistence.items():
                label_map = structures(levels)
                maps[f"{name}: persistent structures ({rule})"] = np.asarray(label_map)[0]
                refined = refinement(label_map, image)
                maps[f"{name}: persistent structures ({rule}) + refinement"] = np.asarray(refined)[0]
                if rule == "lineage":
                    for suffix, merging in mergings.items():
                        row = f"{name}: persistent structures ({rule}) + refinement{suffix}"
                        maps[row] = np.asarray(merging(refined))[0]
                        counterparts[row] = "k-means + refinement" + suffix
            for r, structures in parts.items():
                refined = refinement(structures(levels), image)
                maps[f"{name}: persistent structures (lineage, part ratio {r:g}) + refinement"] = np.asarray(refined)[0]
            for p in powers:
                maps[f"{name}: excess of mass {p:g}"] = excess_of_mass(np.asarray(levels), steps, p, min_size)
            maps[f"{name}: {ORACLE}"] = np.asarray(levels)  # scored by its best level
        for target, key in TARGETS.items():
            truth = np.asarray(data[key]).reshape(image.shape[1:])
            if not truth.any():
                continue
            for row, label_map in maps.items():
                series = label_map if row.endswith(ORACLE) else [label_map]
                dice[row][target].append(max(hint_dice(level, truth) for level in series))
        print(f"slice {index + 1}/{len(items)}", flush=True)
    summary = {
        row: {t: {"mean": float(np.mean(v)), "sd": float(np.std(v)), "n": len(v)} for t, v in targets.items()}
        for row, targets in dice.items()
    }
    return {"slices": len(items), "dice": summary, "worst_margin": worst_margins(summary, counterparts)}


def table(result: dict) -> str:
    """Mean Dice per row and target, and the row's worst margin on the baselines."""
    lines = [f"{'features: rule':<100}" + "".join(f"{t:>12}" for t in TARGETS) + f"{'worst margin':>14}"]
    for row, targets in result["dice"].items():
        cells = "".join(f"{targets[t]['mean']:>12.3f}" for t in TARGETS)
        lines.append(f"{row:<100}{cells}{result['worst_margin'][row]:>+14.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_encoder_arguments(parser, "cuts_selection", split="validation")
    training = read_config("cuts", "train.json")
    for key, what in TRAINING_OPTIONS.items():
        option = "--" + key.replace("_", "-")
        help_text = f"training's {what} (default: the bundle's, {training[key]})"
        parser.add_argument(option, type=type(training[key]), default=None, help=help_text)
    parser.add_argument("--coordinate-weights", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--size-powers", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--part-ratios", type=float, nargs="+", default=[0.6, 0.75, 0.9])
    parser.add_argument("--boundary-shares", type=float, nargs="+", default=[0.5, 0.6, 0.7])
    parser.add_argument("--size-ratios", type=float, nargs="+", default=[0.6, 0.75, 0.9])
    parser.add_argument("--features", choices=("all", "bundle"), default="all", help="bundle: its features only")
    parser.add_argument("--out", default=str(RESULTS / "cuts_selection.json"))
    args = parser.parse_args()
    if any(w <= 0 for w in args.coordinate_weights) or any(p < 0 for p in args.size_powers):
        parser.error("--coordinate-weights must be > 0 and --size-powers >= 0.")
    if any(not 0 < r <= 1 for r in args.part_ratios):
        parser.error("--part-ratios must be in (0, 1].")
    if any(not 0 < s <= 1 for s in args.boundary_shares) or any(not 0 <= r <= 1 for r in args.size_ratios):
        parser.error("--boundary-shares must be in (0, 1] and --size-ratios in [0, 1].")
    training_overrides = {key: getattr(args, key) for key in TRAINING_OPTIONS}
    if not args.train and (args.max_epochs is not None or any(v is not None for v in training_overrides.values())):
        options = [f"--{key.replace('_', '-')}" for key in (*training_overrides, "max_epochs")]
        parser.error(f"{', '.join(options[:-1])} and {options[-1]} set the training: pass --train.")
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    config, ckpt, training = encoder_config(args, None, training_overrides)
    weights = [config["coordinate_weight"]] if args.features == "bundle" else args.coordinate_weights
    mergings = [MergeAdjacentParts(s, r) for s in args.boundary_shares for r in args.size_ratios]
    result = {
        **environment(),
        "split": args.split,
        "kernel_size": config["kernel_size"],
        "encoder_ckpt": ckpt,
        "training": training,
        "coordinate_weights": weights,
        "size_powers": args.size_powers,
        "part_ratios": args.part_ratios,
        "mergings": {"boundary_shares": args.boundary_shares, "size_ratios": args.size_ratios},
        "features": args.features,
        **evaluate(
            config,
            weights,
            args.size_powers,
            args.part_ratios,
            {merging_suffix(m): m for m in mergings},
            args.features == "bundle",
            args.max_slices,
        ),
    }
    write_json(args.out, result, overwrite=True)
    print(table(result))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

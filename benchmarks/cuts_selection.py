"""Where CUTS + persistent structures loses to k-means on the brain slices (issue 11): one encoder's condensation
levels read by label-free selection rules, on three kinds of condensed features, beside the oracle best level and
k-means on the intensities (alone, refined as the bundle refines, and with the pixel coordinates), all in the same
run. Run it on the validation
split: it is for choosing, not for reporting.

    python benchmarks/cuts_selection.py --out benchmarks/results/cuts_selection.json
    python benchmarks/cuts_selection.py --train --patch-size 9 --workdir benchmarks/.work/patch9 --out ...

Features, each condensed with the bundle's settings:
- ``embedding``: the encoder's output, as the bundle condenses it;
- ``embedding + coordinates w``: the pixel's (row, column), centred, scaled so that their total standard
  deviation is w times the embedding's (``AppendCoordinates``: colour + position, as SLIC clusters);
- ``embedding + intensities``: the slice's contrasts, centred, scaled to the embedding's total standard deviation.

Rules, each giving one label map per slice:
- ``persistent structures (paper)`` and ``(lineage)``: by the paper's rule (Liu, Amodio et al., sec. 3.2.2) and
  by its authors' public code's (``PersistentStructures``, ``rule``), each also ``+ refinement``: the boundaries
  sharpened on the intensities by the bundle's ``PottsRefinement``;
- ``excess of mass p``: the non-overlapping segments of the condensation tree with the largest total stability
  size^p x persistence (Campello et al., "Density-based clustering based on hierarchical density estimates", 2013,
  the cluster selection of HDBSCAN, which uses p = 1); segments under the bundle's ``min_segment_size`` are not
  chosen;
- ``best level (oracle)``: the level with the best Dice, which looks at the ground truth.

Every map is binarised by the hint rule and scored by Dice on the network's grid (the labels resampled by the
bundle's preprocessing).
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np
import torch
from _runner import ROOT
from cuts import (
    KMEANS_PARTS,
    TARGETS,
    add_encoder_arguments,
    encoder_config,
    persistence_with_rule,
    postprocessing_transforms,
)
from monai.bundle import ConfigParser

from monai_ext.baselines.kmeans import kmeans_segment
from monai_ext.metrics.hint import hint_mask
from monai_ext.provenance import environment, write_json
from monai_ext.transforms import (
    AppendCoordinates,
    DiffusionCondensationd,
    PottsRefinement,
    PottsRefinementd,
)
from monai_ext.transforms.features import total_sd
from monai_ext.transforms.persistence import PERSISTENCE_RULES, segment_lifetimes

ORACLE = "best level (oracle)"


def hint_dice(label_map: np.ndarray, truth: np.ndarray) -> float:
    """Dice of the hint-rule mask of ``label_map`` against a non-empty ``truth``."""
    mask, reference = hint_mask(label_map, truth), np.asarray(truth) > 0
    return float(2 * (mask & reference).sum() / (mask.sum() + reference.sum()))


def excess_of_mass(levels: np.ndarray, steps: list[int], size_power: float, min_size: float) -> np.ndarray:
    """The label map of the segments chosen by excess of mass (HDBSCAN's selection) from the condensation tree of
    ``levels`` (L, *spatial): a segment is chosen when its stability size^p x persistence (in condensation steps)
    exceeds the best total of the segments below it; pixels under no chosen segment keep label 0.
    """
    flat = torch.as_tensor(levels).long().reshape(len(levels), -1)
    pixels = flat.shape[1]
    segments = segment_lifetimes(flat, steps)
    children = defaultdict(list)
    for index, segment in enumerate(segments):
        if segment["parent"] is not None:
            children[segment["parent"]].append(index)
    best, chosen = {}, {}
    for index in sorted(range(len(segments)), key=lambda i: segments[i]["level"]):  # children before parents
        segment = segments[index]
        eligible = min_size * pixels <= segment["size"] < pixels
        own = segment["size"] ** size_power * segment["persistence"] if eligible else 0.0
        below = sum(best[child] for child in children[index])
        chosen[index] = eligible and (not children[index] or own > below)
        best[index] = own if chosen[index] else below
    label_map = np.zeros(pixels, dtype=np.int64)
    pending = [index for index, segment in enumerate(segments) if segment["parent"] is None]
    while pending:
        index = pending.pop()
        if chosen[index]:
            segment = segments[index]
            label_map[(flat[segment["level"]] == segment["label"]).numpy()] = int(label_map.max()) + 1
        else:
            pending.extend(children[index])
    return label_map.reshape(levels.shape[1:])


def feature_sets(embedding: torch.Tensor, image: torch.Tensor, weights: list[float]) -> dict[str, torch.Tensor]:
    """The condensed features of one slice (see the module docstring)."""
    intensities = image - image.reshape(len(image), -1).mean(dim=1)[:, None, None]
    return {
        "embedding": embedding,
        **{f"embedding + coordinates {w:g}": torch.as_tensor(AppendCoordinates(w)(embedding)) for w in weights},
        "embedding + intensities": torch.cat([embedding, total_sd(embedding) * intensities / total_sd(intensities)]),
    }


def kmeans_maps(image: torch.Tensor, weights: list[float], refinement: PottsRefinement) -> dict[str, np.ndarray]:
    """k-means (k = 10) on the intensities, alone, refined as the bundle refines, and with the coordinates appended
    as in :func:`feature_sets`."""
    kmeans = kmeans_segment(image.numpy(), KMEANS_PARTS, channel_first=True)
    maps = {"k-means": kmeans, "k-means + refinement": np.asarray(refinement(torch.as_tensor(kmeans)[None], image))[0]}
    for w in weights:
        features = np.asarray(AppendCoordinates(w)(image))
        maps[f"k-means + coordinates {w:g}"] = kmeans_segment(features, KMEANS_PARTS, channel_first=True)
    return maps


def evaluate(parser: ConfigParser, weights: list[float], powers: list[float], max_slices: int | None) -> dict:
    """Dice of every (features, rule) pair and of the k-means rows, per target, over the split's slices."""
    network = parser.get_parsed_content("network").eval()
    postprocessing = postprocessing_transforms(parser)
    condensation = postprocessing[DiffusionCondensationd].condensation
    refinement = postprocessing[PottsRefinementd].refinement
    persistence = {rule: persistence_with_rule(postprocessing, rule) for rule in PERSISTENCE_RULES}
    min_size = parser["min_segment_size"]
    items = parser.get_parsed_content("dataset").data[:max_slices]
    dice = defaultdict(lambda: defaultdict(list))  # row -> target -> per-slice Dice
    for index, item in enumerate(items):
        data = parser.get_parsed_content("preprocessing")(dict(item))
        image = torch.as_tensor(data["image"]).float()
        with torch.no_grad():
            embedding = network(image[None].to(next(network.parameters()).device))[0].cpu()
        maps = kmeans_maps(image, weights, refinement)
        for name, features in feature_sets(embedding, image, weights).items():
            levels = condensation(features)
            steps = list(levels.meta["steps"])
            for rule, structures in persistence.items():
                label_map = structures(levels)
                maps[f"{name}: persistent structures ({rule})"] = np.asarray(label_map)[0]
                refined = refinement(label_map, image)
                maps[f"{name}: persistent structures ({rule}) + refinement"] = np.asarray(refined)[0]
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
    return {
        "slices": len(items),
        "dice": {
            row: {t: {"mean": float(np.mean(v)), "sd": float(np.std(v)), "n": len(v)} for t, v in targets.items()}
            for row, targets in dice.items()
        },
    }


def table(result: dict) -> str:
    """Mean Dice per row and target."""
    lines = [f"{'features: rule':<76}" + "".join(f"{t:>12}" for t in TARGETS)]
    for row, targets in result["dice"].items():
        lines.append(f"{row:<76}" + "".join(f"{targets[t]['mean']:>12.3f}" for t in TARGETS))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_encoder_arguments(parser, "cuts_selection", split="validation")
    parser.add_argument("--patch-size", type=int, default=None, help="training's patch (default: the bundle's)")
    parser.add_argument("--coordinate-weights", type=float, nargs="+", default=[0.5, 1.0])
    parser.add_argument("--size-powers", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cuts_selection.json"))
    args = parser.parse_args()
    if any(w <= 0 for w in args.coordinate_weights) or any(p < 0 for p in args.size_powers):
        parser.error("--coordinate-weights must be > 0 and --size-powers >= 0.")
    if not args.train and (args.patch_size or args.max_epochs):
        parser.error("--patch-size and --max-epochs set the training: pass --train.")
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    config, ckpt, training = encoder_config(args, None, {"patch_size": args.patch_size})
    result = {
        **environment(),
        "split": args.split,
        "kernel_size": config["kernel_size"],
        "encoder_ckpt": ckpt,
        "training": training,
        "coordinate_weights": args.coordinate_weights,
        "size_powers": args.size_powers,
        **evaluate(config, args.coordinate_weights, args.size_powers, args.max_slices),
    }
    write_json(args.out, result, overwrite=True)
    print(table(result))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

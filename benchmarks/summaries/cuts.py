"""The cuts bundle's results: the paper's Table 1, the level selection, the encoders and the condensation."""

from __future__ import annotations

import functools

from steps import TISSUE_ROW, read_config

from summaries.common import load, load_each, repo_relative, table_header, table_row

TISSUE_NOTE = (
    f" The row `{TISSUE_ROW}` reads the phantom's exact tissue partition (CSF, grey and white matter, and the tumour's "
    "necrosis, edema and enhancing rim as three parts) by the same hint rule: on the tumour, the best any map whose "
    "parts each lie within one tissue can score. It looks at the ground truth too."
)
INFERENCE, TRAINING = (read_config("cuts", name) for name in ("inference.json", "train.json"))
CUTS_FEATURES = f"embedding + coordinates {INFERENCE['coordinate_weight']:g}"  # cuts_selection.py's bundle features
CUTS_READING = f"{CUTS_FEATURES}: persistent structures ({INFERENCE['persistence_rule']}) + refinement"
CUTS_ORACLE = f"{CUTS_FEATURES}: best level (oracle)"
CUTS_SHIPPED = f"shipped (0.4.0): the 0.2.0 recipe with positive radius {TRAINING['positive_radius']}"
CUTS_0_2_0 = "0.2.0: 3 x 3, 24 epochs, seed 0"
CUTS_ENCODERS = {  # cuts_selection.py results on the validation split: file, encoder
    "cuts_selection_radius2.json": CUTS_SHIPPED,
    "cuts_selection.json": CUTS_0_2_0,
    "cuts_selection_seed1.json": "the 0.2.0 recipe with seed 1",
    "cuts_selection_lambda0.03.json": "the 0.2.0 recipe with lambda 0.03",
    "cuts_selection_lambda0.1.json": "the 0.2.0 recipe with lambda 0.1",
    "cuts_selection_authors.json": "the 0.2.0 recipe with the authors' temperature 0.1, lambda 0.001, 8 anchors",
    "cuts_selection_radius2_lambda0.1.json": "the 0.2.0 recipe with positive radius 2 and lambda 0.1",
    "cuts_selection_0.1.0.json": "0.1.0: the paper's 5 x 5, 20 epochs",
}
CUTS_ENCODERS_TRAINING = {  # the same on the training slices, for the encoders that passed on validation
    "cuts_selection_training_radius2.json": CUTS_SHIPPED,
    "cuts_selection_training.json": CUTS_0_2_0,
}


def headline(result: dict) -> str:
    """Dice and Hausdorff distances of every method of ``benchmarks/cuts.py`` per target, the paper's beside."""
    targets = list(result["targets"])
    paper = result["paper_table1"]
    paper_targets = {t for scores in paper.values() for t in scores} & set(targets)
    columns = ("Dice", "HD / HD95", "paper Dice / HD") if paper_targets else ("Dice", "HD / HD95")
    lines = [
        f"CUTS (`{result['command']}`), "
        + ", ".join(f"{result['targets'][t]['images']} {result.get('split', 'test')} slices with {t}" for t in targets)
        + "; every label map binarised by the hint rule (the part most frequent under the ground truth); Dice and "
        "Hausdorff / HD95 in pixels"
        + ("; paper = Liu, Amodio et al., Table 1 (BraTS tumour, brain ventricles):" if paper_targets else ":"),
        table_header(["method", *[f"{t} {c}" for t in targets for c in columns]]),
    ]
    for method in result["targets"][targets[0]]["methods"]:
        cells = [method]
        for target in targets:
            s = result["targets"][target]["methods"].get(method)
            reference = paper.get(method, {}).get(target)
            cells += [
                f"{s['dice']['mean']:.3f} ± {s['dice']['sd']:.3f}" if s else "-",
                f"{s['hausdorff']['mean']:.1f} / {s['hd95']['mean']:.1f}" if s else "-",
                *(
                    [f"{reference['dice']:.3f} / {reference['hausdorff']:.1f}" if reference else "-"]
                    if paper_targets
                    else []
                ),
            ]
        lines.append(table_row(cells))
    return "\n".join(lines)


def cuts(result: dict) -> str:
    """:func:`headline`, then the time of the postprocessing, what the oracle rows are and the paired differences."""
    targets = list(result["targets"])
    side = result.get("spatial_size", [128, 128])
    lines = [headline(result)]
    merged = ", merging" if "k-means + refinement + merging" in result["targets"][targets[0]]["methods"] else ""
    lines.append(
        f"\nThe bundle's postprocessing (coordinates, condensation, persistent structures, refinement{merged}): "
        f"{result['condensation_seconds_per_slice']:.1f} s a slice ({side[0]} x {side[1]}, this CPU). The oracle "
        "row picks, per slice, the level with the best Dice: it looks at the ground truth."
        + (TISSUE_NOTE if TISSUE_ROW in result["targets"][targets[0]]["methods"] else "")
    )
    for target, baselines in result.get("paired_dice", {}).items():
        pairs = "; ".join(
            f"{name} {p['mean']:+.3f} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}], higher on {p['higher']} of {p['n']}"
            for name, p in baselines.items()
        )
        lines.append(f"\nPaired per slice, {target}: CUTS + persistent structures minus {pairs} (bootstrap 95 %).")
    return "\n".join(lines)


def cuts_selection(result: dict) -> str:
    targets = list(next(iter(result["dice"].values())))
    margins = result.get("worst_margin", {})
    features = (
        "the bundle's condensed features" if result.get("features") == "bundle" else "three kinds of condensed features"
    )
    lines = [
        f"CUTS level selection (`{result['command']}`), {result['split']} split, {result['slices']} slices: label-free "
        f"rules on {features}, with and without the boundary refinement"
        + (" and the part merging" if result.get("mergings") else "")
        + (
            ", beside k-means, the oracle best level and the exact tissue map (an oracle too)"
            if TISSUE_ROW in result["dice"]
            else ", beside k-means and the oracle best level"
        )
        + "; hint-rule Dice"
        + ("; worst margin: the smaller lead of the two targets on the best k-means row" if margins else "")
        + (
            " (for a row with merged parts, also k-means + refinement merged the same way)"
            if result.get("mergings")
            else ""
        )
        + ":",
        table_header(["features: rule", *[f"{t} Dice" for t in targets], *(["worst margin"] if margins else [])]),
    ]
    for row, scores in result["dice"].items():
        margin = [f"{margins[row]:+.3f}"] if margins else []
        lines.append(table_row([row, *[f"{scores[t]['mean']:.3f} ± {scores[t]['sd']:.3f}" for t in targets], *margin]))
    return "\n".join(lines)


def cuts_encoders(results: dict[str, dict], split: str = "validation") -> str:
    """One row per encoder: the bundle's reading of its condensation levels (``CUTS_READING``) on ``split``, from
    its own ``cuts_selection.py`` run (k-means in the same run).

    Args:
        results: ``cuts_selection.py`` results by file name, each a key of the split's labels.
        split: "validation" (labels ``CUTS_ENCODERS``) or "training" (``CUTS_ENCODERS_TRAINING``).

    Raises:
        ValueError: another split, or a result from a split other than ``split``.
    """
    labels = {"validation": CUTS_ENCODERS, "training": CUTS_ENCODERS_TRAINING}.get(split)
    if labels is None:
        raise ValueError(f"the encoders are compared on the validation or the training split, not {split}.")
    lines = [
        "CUTS encoders read the bundle's way (coordinates, the lineage rule, the refinement), each in its own "
        f"`cuts_selection.py` run on the {split} split with k-means in the same run; hint-rule Dice, tumour / "
        "ventricles; worst margin: the smaller lead of the two targets on the best k-means row, as in the selection "
        "tables; best level: the unrefined level with the best Dice, per slice (an oracle):",
        table_header(["encoder", "command", "bundle's reading", "worst margin", "k-means", "best level (oracle)"]),
    ]
    for name, result in results.items():
        if result["split"] != split:
            raise ValueError(f"{name}: the encoders are compared on the {split} split, not {result['split']}.")
        reading, kmeans, best = (result["dice"][row] for row in (CUTS_READING, "k-means", CUTS_ORACLE))
        targets = list(kmeans)
        lines.append(
            table_row(
                [
                    labels[name],
                    f"`{result['command']}`",
                    " / ".join(f"{reading[t]['mean']:.3f}" for t in targets),
                    f"{result['worst_margin'][CUTS_READING]:+.3f}",
                    " / ".join(f"{kmeans[t]['mean']:.3f}" for t in targets),
                    " / ".join(f"{best[t]['mean']:.3f}" for t in targets),
                ]
            )
        )
    return "\n".join(lines)


def condensation(result: dict) -> str:
    lines = [
        f"Diffusion condensation (`{result['command']}`): one CUTS embedding map (d = {result['embedding_dim']}) per "
        "size, each run in its own process (peak resident memory of that process, including Python and torch); "
        f"log-log plot `{repo_relative(result['figure'])}`:",
        table_header(["method", "side", "pixels N", "seconds", "peak memory (GB)", "levels"]),
    ]
    for method, rows in result["runs"].items():
        for row in rows:
            if "seconds" in row:
                cells = [f"{row['seconds']}", f"{row['peak_memory_mb'] / 1024:.2f}", str(row["levels"])]
            else:
                cells = [row["failed"], "-", "-"]
            lines.append(table_row([method, str(row["side"]), str(row["pixels"]), *cells]))
    if ratios := result.get("phate_over_ours_seconds"):
        lines.append(
            "\nmultiscale_phate's time over ours: " + ", ".join(f"{side}^2: {r}x" for side, r in ratios.items()) + "."
        )
    return "\n".join(lines)


SOURCES = {
    "cuts": (cuts, lambda: load("cuts.json")),
    "cuts_headline": (headline, lambda: load("cuts.json")),
    "cuts_cells": (cuts, lambda: load("cuts_cells.json")),
    "condensation": (condensation, lambda: load("condensation.json")),
    "cuts_selection": (cuts_selection, lambda: load("cuts_selection.json")),
    "cuts_selection_training": (cuts_selection, lambda: load("cuts_selection_training.json")),
    "cuts_encoders": (cuts_encoders, lambda: load_each(CUTS_ENCODERS)),
    "cuts_encoders_training": (
        functools.partial(cuts_encoders, split="training"),
        lambda: load_each(CUTS_ENCODERS_TRAINING),
    ),
}

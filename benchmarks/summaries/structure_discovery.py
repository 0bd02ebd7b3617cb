"""The structure_discovery bundle's results: the paper's Tables 1, 2 and 3, the variants and the wall times."""

from __future__ import annotations

from steps import CELL_LEVEL_PARTS, RESULTS

from monai_ext.baselines.evaluate import SMOOTHING_SIGMA
from monai_ext.metrics import paired_differences
from summaries.common import load, load_each, paired_cell, repo_relative, table_header, table_row

LEVELS = tuple(f"level {level} (K={k})" for level, k in enumerate(CELL_LEVEL_PARTS, start=1))
METHODS = {  # baseline of monai_ext.baselines.evaluate: its name in the tables
    "ours": "ours (structure discovery)",
    "bm4d_kmeans": "BM4D + k-means",
    "kmeans": "k-means",
    "smooth_kmeans": f"Gaussian smoothing (sigma {SMOOTHING_SIGMA:g}) + k-means",
    "features_kmeans": "k-means on the diffusion features",
    "x0_kmeans": "diffusion x0 prediction + k-means",
    "smooth_kmeans_merged": "Gaussian smoothing + k-means, finest K merged to the coarser",
    "x0_kmeans_merged": "diffusion x0 prediction + k-means, finest K merged to the coarser",
    "lambda_inv=0": "ours without the invariance term (lambda_inv = 0)",
    "lambda_f=0": "ours without the feature term (lambda_f = 0)",
    "lambda_v=0": "ours without the visual term (lambda_v = 0)",
}


def headline(results: list[dict]) -> str:
    """Per method, the matched Dice of each level on each phantom variant, the paper's beside where it has the row."""
    reports = {variant: run["report"] for result in results for variant, run in result["runs"].items()}
    parts = " / ".join(str(k) for k in CELL_LEVEL_PARTS)
    lines = [
        f"Matched Dice (mean over the 20 test volumes) at K = {parts}, ours (paper: Tursynbek & Niethammer 2023, "
        "Table 1, where it has the row):",
        table_header(["method", *(f"{variant} phantoms" for variant in reports)]),
    ]
    for method, name in METHODS.items():
        if not all(method in report["matched_dice"] for report in reports.values()):
            continue
        cells = []
        for report in reports.values():
            ours = " / ".join(f"{level['mean']:.3f}" for level in report["matched_dice"][method])
            paper = (report.get("paper_table1") or {}).get(method)
            cells.append(ours + (f" ({' / '.join(f'{v:.3f}' for v in paper)})" if paper else ""))
        lines.append(table_row([name, *cells]))
    return "\n".join(lines)


def parts_used_cell(report: dict) -> str:
    """Parts used per volume at each level (mean) and the share of volumes using all of them; "-" for reports
    written before evaluations counted them."""
    if "parts_used" not in report:
        return "-"
    levels = report["parts_used"]
    means = " / ".join(f"{level['mean']:.2f}" for level in levels)
    shares = " / ".join(f"{100 * level['all_used']:.0f}" for level in levels)
    return f"{means} ({shares} %)"


def table1(results: list[dict]) -> str:
    lines = ["Table 1: matched Dice (mean ± sd, 20 test volumes), ours (paper, where it has the row); HD95 at level 1:"]
    lines.append(table_header(["variant", "method", *LEVELS, "HD95 l1 (voxels)", "parts used (all used on)"]))
    for result in results:
        for variant, run in result["runs"].items():
            report = run["report"]
            paper_table = report.get("paper_table1") or {}
            hd95 = report.get("matched_hd95_first_level") or {"ours": report["matched_hd95"][0]}
            for method, name in METHODS.items():
                if method not in report["matched_dice"]:
                    continue
                paper = paper_table.get(method, [None] * 3)
                cells = [
                    f"{level['mean']:.3f} ± {level['sd']:.3f}" + (f" ({ref:.3f})" if ref is not None else "")
                    for level, ref in zip(report["matched_dice"][method], paper, strict=True)
                ]
                distance = hd95.get(method, {}).get("mean")
                used = parts_used_cell(report) if method == "ours" else "-"
                lines.append(
                    table_row([variant, name, *cells, f"{distance:.2f}" if distance is not None else "-", used])
                )
    commands = "; ".join(f"`{r['command']}`" for r in results)
    lines.append(f"\nCommands: {commands}.")
    return "\n".join(lines)


def table1_pairs(results: list[dict]) -> str:
    """Table 1's paired differences: per variant, level and baseline, ours minus the baseline, test volume by volume
    (runs whose report holds ``matched_dice_per_volume``)."""
    lines = []
    for result in results:
        for variant, run in result["runs"].items():
            per_volume = run["report"].get("matched_dice_per_volume")
            if not per_volume:
                continue
            lines += [
                f"{variant.capitalize()} phantoms, ours minus each baseline on the same test volumes; each cell: mean "
                "difference (95 % interval), volumes where ours is higher:",
                table_header(["baseline", *LEVELS]),
            ]
            for method, values in per_volume.items():
                if method == "ours":
                    continue
                pairs = [
                    paired_differences(ours, theirs) for ours, theirs in zip(per_volume["ours"], values, strict=True)
                ]
                lines.append(table_row([METHODS[method], *(paired_cell(pair) for pair in pairs)]))
            lines.append("")
    return "\n".join(lines).rstrip()


def variants(result: dict) -> str:
    """The variant table of ``benchmarks/discovery_variants.py``: each variant with its parts used, then the baselines
    of the same run; the commands below the table."""
    protocol = result["protocol"]
    split = protocol["scored_split"]
    lines = [
        f"Structure discovery variants (`{result['command']}`): trained on {protocol['splits']['training']} volumes "
        f"for {protocol['max_epochs']} epochs, seed {protocol['seed']}, levels selected label-free on "
        f"{protocol['splits']['validation']} validation volumes; matched Dice on the "
        f"{protocol['scored_volumes']} {split} volumes, HD95 at level 1 in voxels, parts used per volume (holding "
        "at least 0.5 % of it; mean over volumes); one factor at a time from "
        + (
            "the study's base (`defaults`: train.json before the study):"
            if "defaults" in result["runs"]
            else f"the first row, `{next(iter(result['runs']))}`:"
        )
    ]
    lines.append(table_header(["variant", *LEVELS, "HD95 l1", "parts used", "training (min)"]))
    for name, run in result["runs"].items():
        report = run["report"]
        dice = [f"{level['mean']:.3f}" for level in report["matched_dice"]["ours"]]
        hd95 = report["matched_hd95"][0]["mean"]
        used = " / ".join(f"{level['mean']:.2f}" for level in report["parts_used"])
        lines.append(table_row([name, *dice, f"{hd95:.2f}", used, f"{run['training']['seconds'] / 60:.1f}"]))
    first = next(iter(result["runs"].values()))["report"]
    for method, name in METHODS.items():
        if method != "ours" and method in first["matched_dice"]:
            dice = [f"{level['mean']:.3f}" for level in first["matched_dice"][method]]
            hd95 = first["matched_hd95_first_level"][method]["mean"]
            lines.append(table_row([f"baseline: {name}", *dice, f"{hd95:.2f}", "-", "-"]))
    return "\n".join(lines + _commands(result))


def _commands(result: dict) -> list[str]:
    lines = ["\nCommands of the rows:\n"]
    for name, run in result["runs"].items():
        arguments = repo_relative(run["command"]).partition(" ")[2]  # after the venv's python, as recorded
        lines.append(f"- {name}: `python {arguments}`")
    return lines


def brain_variants(result: dict) -> str:
    """The brain rows of ``benchmarks/discovery_variants.py --dataset brains``: whole-tumour Dice at every level
    (K = 3 first, merged or trained), HD95 at the first, the parts of every level, then the baselines of the same
    run."""
    protocol = result["protocol"]
    lines = [
        f"Structure discovery variants on the brain phantoms (`{result['command']}`): trained on "
        f"{protocol['splits']['training']} brains for {protocol['max_epochs']} epochs, seed {protocol['seed']}, "
        f"selected label-free on {protocol['splits']['validation']} validation brains; whole-tumour matched Dice per "
        f"level (mean ± sd) and HD95 (mm) of the first level on the {protocol['scored_volumes']} "
        f"{protocol['scored_split']} brains, parts used per level (mean over brains):"
    ]
    lines.append(table_header(["variant", "K per level", "whole tumour", "HD95 (mm)", "parts used", "training (min)"]))

    def per_level(levels: list[dict]) -> str:
        return " / ".join(f"{level['mean']:.3f} ± {level['sd']:.3f}" for level in levels)

    for name, run in result["runs"].items():
        report = run["report"]
        used = " / ".join(f"{level['mean']:.2f}" for level in report["parts_used"])
        row = [name, " / ".join(map(str, report["num_parts"])), per_level(report["matched_dice"]["ours"])]
        row += [f"{report['matched_hd95'][0]['mean']:.1f}", used, f"{run['training']['seconds'] / 60:.1f}"]
        lines.append(table_row(row))
    first = next(iter(result["runs"].values()))["report"]
    for method, name in METHODS.items():
        if method != "ours" and method in first["matched_dice"]:
            hd95 = first["matched_hd95_first_level"][method]["mean"]
            levels = first["matched_dice"][method]
            k = " / ".join(map(str, first["num_parts"][: len(levels)]))
            cells = [k, per_level(levels), f"{hd95:.1f}", "-", "-"]
            lines.append(table_row([f"baseline: {name}", *cells]))
    return "\n".join(lines + _commands(result))


def overclustering(result: dict) -> str:
    """``benchmarks/overclustering.py``: whole-tumour Dice of k-means with K_fine parts merged to 3, per input."""
    rows = next(iter(result["dice"].values()))
    lines = [
        f"k-means with K_fine parts merged to {result['parts']} (`{result['command']}`): whole-tumour matched Dice, "
        f"mean ± sd over {len(result['volumes'])} validation brains (brains above 0.5 in brackets); centroid: "
        "closest means first (`merged_parts`), ward: Ward's linkage:",
        table_header(
            ["input", *(row.replace(f"K={result['parts']} centroid", f"K={result['parts']}") for row in rows)]
        ),
    ]  # with K_fine = 3 nothing is merged: plain k-means
    for name, per_row in result["dice"].items():
        cells = [f"{s['mean']:.3f} ± {s['sd']:.3f} ({result['above_half'][name][row]})" for row, s in per_row.items()]
        lines.append(table_row([name, *cells]))
    return "\n".join(lines)


def objective_gap(results: dict[str, dict]) -> str:
    """``benchmarks/objective_gap.py``: the loss of eq. 4 and the Dice of the network's masks and of k-means
    partitions, per dataset and trained level."""
    lines = []
    for result in results.values():
        weights = "" if result.get("weights", "model.pt") == "model.pt" else f", weights `{result['weights']}`"
        lines.append(
            f"{result['dataset'].capitalize()}, variant `{result['variant']}`{weights} (`{result['command']}`), mean "
            f"over {len(result['volumes'])} validation volumes:"
        )
        merged = "dice_merged" in result["means"][0][next(iter(result["means"][0]))]
        header = ["level", "partition", "lambda_v C(x0)", "lambda_f C(phi)", "loss", "Dice"]
        lines.append(table_header(header + (["Dice, merged to the coarsest level"] if merged else [])))
        for level, partitions in enumerate(result["means"], start=1):
            for name, s in partitions.items():
                cells = [f"{s[key]:.4f}" for key in ("loss_v", "loss_f", "loss")]
                cells += [f"{s[key]:.3f}" for key in ("dice", "dice_merged") if key in s]
                lines.append(table_row([str(level), name, *cells]))
        lines.append("")
    return "\n".join(lines).rstrip()


def merge_rule(result: dict) -> str:
    """``benchmarks/merge_rule.py``: a run's finest level merged by the image's or by x0's part means."""
    cells = result.get("dataset") == "cells"
    volumes, score = ("cell volumes", "matched Dice") if cells else ("brains", "whole tumour")
    lines = [
        f"{'Weights' if cells else 'Variant'} `{result['variant']}` (`{result['command']}`), {score} (mean ± sd) on "
        f"{len(result['volumes'])} validation {volumes}, on the network's grid:",
        table_header(["level / merge" if cells else "finest level / merge", score]),
    ]
    for name, stats in result["dice"].items():
        lines.append(table_row([name, f"{stats['mean']:.3f} ± {stats['sd']:.3f}"]))
    if cells:  # each merge minus the level trained for that K, volume by volume
        lines.append("\nEach merge minus the trained level, volume by volume (mean (95 % interval), volumes higher):\n")
        for name in result["dice"]:
            level, _, merge = name.partition(": ")
            if merge != "trained":
                trained = [row[f"{level}: trained"] for row in result["volumes"]]
                pair = paired_differences([row[name] for row in result["volumes"]], trained)
                lines.append(f"- {name}: {paired_cell(pair)}")
    return "\n".join(lines)


def variant_pairs(results: dict[str, dict]) -> str:
    """``benchmarks/variant_pairs.py``: per variant and level, its Dice minus the reference's, volume by volume."""
    lines = []
    for result in results.values():
        levels = [f"level {level + 1}" for level in range(len(next(iter(result["pairs"].values()))))]
        seeds = result.get("seeds", {})
        averaged = f", each volume's Dice averaged over the training seeds {', '.join(seeds)}" if seeds else ""
        lines += [
            f"{result['dataset'].capitalize()}, minus `{result['reference']}` (`{result['command']}`), "
            f"{result['split']} volumes{averaged}; each cell: mean difference (95 % interval), volumes where the "
            "variant is higher:",
            table_header(["variant", *levels]),
        ]
        for name, pairs in result["pairs"].items():
            lines.append(table_row([name, *(paired_cell(p) for p in pairs)]))
        if seeds:
            lines += ["", "Per training seed: each variant's mean Dice, and its difference to the reference:"]
            lines.append(table_header(["variant", "seed", *levels]))
            for seed, per_seed in seeds.items():
                for name, dice in per_seed["mean_dice"].items():
                    pairs = per_seed["pairs"].get(name)  # none for the reference
                    differences = [f", {paired_cell(p)}" for p in pairs] if pairs else [""] * len(dice)
                    cells = [f"{d:.3f}{difference}" for d, difference in zip(dice, differences, strict=True)]
                    lines.append(table_row([name, seed, *cells]))
        lines.append("")
    return "\n".join(lines).rstrip()


def probes(results: dict[str, dict]) -> str:
    """The linear probes of ``benchmarks/probe.py``: per target and input, the probe's and k-means' matched Dice."""
    lines = []
    for result in results.values():
        protocol = result["protocol"]
        lines.append(
            f"{protocol['dataset'].capitalize()}: probes fitted on {protocol['train_volumes']} training volumes, "
            f"matched Dice on {protocol['scored_volumes']} validation volumes (mean ± sd; `{result['command']}`):"
        )
        scores = result["scores"]
        inputs = list(next(iter(scores.values())))
        lines.append(table_header(["target", *inputs]))
        for target, per_input in scores.items():
            for column in ("probe", "kmeans"):
                cells = [
                    f"{per_input[name][column]['mean']:.3f} ± {per_input[name][column]['sd']:.3f}" for name in inputs
                ]
                lines.append(table_row([f"{target}: {'linear probe' if column == 'probe' else 'k-means'}", *cells]))
        lines.append("")
    return "\n".join(lines).rstrip()


def pretraining_probe(result: dict) -> str:
    """The brain probes of ``benchmarks/pretraining_probe.py`` against pretraining iterations: per target and input,
    the linear probe's and k-means' whole-tumour / tissue matched Dice (mean over the scored volumes)."""
    rows = result["rows"]
    first = next(iter(rows.values()))
    targets = [target for target in first if target != "epochs"]
    columns = [(target, name) for target in targets for name in first[target]]
    lines = [
        f"Brain diffusion model pretrained longer in one resumed run ({result['iterations_per_epoch']} iterations "
        f"per epoch; `{result['command']}`): matched Dice of the linear probe / k-means, mean over "
        f"{first[targets[0]][columns[0][1]]['probe']['n']} validation brains:",
        table_header(["iterations (epochs)", *(f"{target}: {name}" for target, name in columns)]),
    ]
    for iterations, row in rows.items():
        cells = [f"{row[t][n]['probe']['mean']:.3f} / {row[t][n]['kmeans']['mean']:.3f}" for t, n in columns]
        lines.append(table_row([f"{iterations} ({row['epochs']})", *cells]))
    return "\n".join(lines)


def step_speed(result: dict) -> str:
    """One discovery step per volume against the segmenter alone (``benchmarks/discovery_step.py``)."""
    seconds = result["median_seconds_per_volume"]
    size = "^3".join([str(result["spatial_size"][0]), ""])
    lines = [
        f"One training step per {size} volume (`{result['command']}`, median of {result['timed_steps_per_kind']}):"
    ]
    lines.append(table_header(["step", "s / volume", "x segmenter alone"]))
    lines.append(
        table_row(["segmenter alone (forward and backward on x and T(x))", f"{seconds['segmenter']:.3f}", "1.00"])
    )
    lines.append(
        table_row(
            [
                "cached, features on their own grids",
                f"{seconds['cached']:.3f}",
                f"{result['cached_over_segmenter']:.2f}",
            ]
        )
    )
    lines.append(
        table_row(
            [
                "cached, features upsampled first",
                f"{seconds['cached_upsampled']:.3f}",
                f"{result['cached_upsampled_over_segmenter']:.2f}",
            ]
        )
    )
    lines.append(
        f"\nLargest relative difference of the two cached losses: {result['max_relative_loss_difference']:.1e}."
    )
    return "\n".join(lines)


def recipes(result: dict) -> str:
    """The wall time of the CPU recipes as a user reruns them (``benchmarks/recipes.py``), against their targets."""
    lines = [
        f"Wall time of the CPU recipes, each step a bundle command on the default data with torch on "
        f"{result['machine']['cores']} cores (`{result['command']}`):",
        table_header(["recipe", "diffusion pretraining", "structure discovery (train.json)", "total", "target"]),
    ]
    for name, recipe in result["recipes"].items():
        steps = [f"{step['seconds'] / 60:.1f} min" for step in recipe["steps"].values()]
        total = f"{recipe['total_seconds'] / 60:.1f} min"
        lines.append(table_row([name, *steps, total, f"{recipe['target_minutes']} min"]))
    return "\n".join(lines)


def table2(result: dict) -> str:
    lines = [f"Table 2 (regular phantoms, one feature stage for every level; `{result['command']}`), ours (paper):"]
    lines.append(table_header(["feature stage", *LEVELS, "parts used (all used on)"]))
    for stage, values in result["table2"].items():
        paper = result["paper_table2"][stage]
        cells = [f"{v:.3f} ({p:.3f})" for v, p in zip(values, paper, strict=True)]
        lines.append(table_row([stage, *cells, parts_used_cell(result["stage_runs"][stage])]))
    return "\n".join(lines)


def table3(result: dict) -> str:
    settings = result["dataset"]
    lines = [
        f"Table 3 on brain phantoms (FLAIR, K = 3, {settings['test_volumes']} test volumes of "
        f"{settings['n']} phantoms drawn with seed {settings['seed']}, {settings['resolution_mm']} mm; "
        f"`{result['command']}`); paper values are on BraTS'19:"
    ]
    lines.append(table_header(["method", "whole-tumour Dice", "HD95 (mm)", "paper Dice", "paper HD95 (mm)"]))
    for row, values in result["table3"].items():
        dice, hd = values["dice"], values["hd95_mm"]
        paper = result["paper_table3"].get(row)
        cells = [
            f"{dice['mean']:.3f} ± {dice['sd']:.3f}" if dice else "-",
            f"{hd['mean']:.1f} ± {hd['sd']:.1f}" if hd else "-",
            *([f"{paper['dice']:.3f}", f"{paper['hd95_mm']:.1f}"] if paper else ["-", "-"]),
        ]
        lines.append(table_row([METHODS.get(row, row) if row != "ours" else row, *cells]))
    if comparison := result.get("per_volume"):
        lines += [
            "",
            "Per test volume: the volumes whose whole tumour is matched with Dice above 0.5, and ours minus each "
            "method, volume by volume (mean difference, 95 % bootstrap interval, volumes where ours is higher):",
            table_header(["method", "Dice > 0.5", "ours minus it"]),
        ]
        for method, count in comparison["volumes_above_half"].items():
            paired = comparison["ours_minus"].get(method)
            name = METHODS.get(method, method) if method != "ours" else method
            cells = [f"{count} / {settings['test_volumes']}", paired_cell(paired) if paired else "-"]
            lines.append(table_row([name, *cells]))
    ours = result["runs"].get("ours", {})
    if "parts_used" in ours:
        used = parts_used_cell(ours)
        lines.append(f"\nParts used by `ours` per volume, per level (mean; volumes using all of them): {used}.")
    shares = ours.get("part_tissue_shares")
    if shares:
        lines.append("")
        lines.append(
            "What the parts of `ours` are made of (share of their voxels per tissue class, largest part first):"
        )
        lines.append(table_header(["part", *shares[0]]))
        lines.extend(table_row([str(k), *(f"{v:.2f}" for v in part.values())]) for k, part in enumerate(shares))
    if "steps_seconds" in result:
        trained = sum("training" in run.get("timing", {}) for run in result["runs"].values())
        pretraining = "reused pretraining" if "reused" in result["timings"]["pretraining"] else "pretraining"
        lines.append("")
        lines.append(
            f"All steps ({pretraining}, {trained} training(s) and evaluation(s), k-means): "
            f"{result['steps_seconds'] / 60:.0f} min."
        )
    return "\n".join(lines)


def _discovery() -> list[dict] | None:
    return [r for name in ("discovery_regular.json", "discovery_irregular.json") if (r := load(name))] or None


def _stages() -> dict | None:
    stages = load("discovery_stages.json")
    return stages if stages and stages.get("table2") else None


def brain_headline(result: dict) -> str:
    """Table 3 in short: each method's whole-tumour Dice, HD95 and test brains found (Dice above 0.5)."""
    above = result["per_volume"]["volumes_above_half"]
    n = result["dataset"]["test_volumes"]
    lines = [
        f"Whole tumour on {n} test brain phantoms (K = 3 on FLAIR; mean ± sd; `brain.json`, Table 3 of the results):",
        table_header(["method", "Dice", "HD95 (mm)", "brains with Dice > 0.5"]),
    ]
    for method, count in above.items():
        if result["runs"][method].get("overrides"):  # an ablation: in Table 3 only
            continue
        dice, hd95 = result["table3"][method]["dice"], result["table3"][method]["hd95_mm"]
        cells = [f"{dice['mean']:.3f} ± {dice['sd']:.3f}", f"{hd95['mean']:.1f}", f"{count} / {n}"]
        lines.append(table_row([METHODS.get(method, method), *cells]))
    return "\n".join(lines)


SOURCES = {
    "discovery_headline": (headline, _discovery),
    "table1": (table1, _discovery),
    "variants": (variants, lambda: load("discovery_variants.json")),
    "brain_variants": (brain_variants, lambda: load("discovery_variants_brains.json")),
    "overclustering": (overclustering, lambda: load("overclustering.json")),
    "objective_gap": (
        objective_gap,
        lambda: load_each({path.name: path.stem for path in sorted(RESULTS.glob("objective_gap_*.json"))}),
    ),
    "merge_rule": (merge_rule, lambda: load("merge_rule.json")),
    "variant_pairs": (
        variant_pairs,
        lambda: load_each({"variant_pairs_cells.json": "cells", "variant_pairs_brains.json": "brains"}),
    ),
    "probes": (probes, lambda: load_each({"probe_cells.json": "cells", "probe_brains.json": "brains"})),
    "pretraining_probe": (pretraining_probe, lambda: load("pretraining_probe.json")),
    "discovery_step": (step_speed, lambda: load("discovery_step.json")),
    "recipes": (recipes, lambda: load("recipes.json")),
    "table1_pairs": (table1_pairs, _discovery),
    "table2": (table2, _stages),
    "merge_rule_cells": (merge_rule, lambda: load("merge_rule_cells.json")),
    "variants_merged": (variants, lambda: load("discovery_variants_merged.json")),
    "variant_pairs_merged": (variant_pairs, lambda: load_each({"variant_pairs_cells_merged.json": "cells"})),
    "variants_hybrid": (variants, lambda: load("discovery_variants_hybrid.json")),
    "variant_pairs_hybrid": (variant_pairs, lambda: load_each({"variant_pairs_cells_hybrid.json": "cells"})),
    "table3": (table3, lambda: load("brain.json")),
    "brain_headline": (brain_headline, lambda: load("brain.json")),
    "table3_second_draw": (table3, lambda: load("brain_seed1.json")),
}

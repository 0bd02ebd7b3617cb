"""Markdown tables of every measured result in benchmarks/results/, for READMEs, the CHANGELOG and issue notes.

Reads only the JSON files the other scripts wrote (each carries its command, machine and versions) and prints
the tables whose files exist, with the paper's values beside ours:

    python benchmarks/summarize.py                 # every table
    python benchmarks/summarize.py table1 speed    # some of them
    python benchmarks/summarize.py --update README.md bundles/*/docs/README.md

``--update`` rewrites, in each file, every block between ``<!-- summarize: SECTION ... -->`` and
``<!-- /summarize -->`` with those sections, so the documents quote the results files and nothing typed by hand.
"""

from __future__ import annotations

import argparse
import functools
import json
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
LEVELS = ("level 1 (K=2)", "level 2 (K=4)", "level 3 (K=8)")
TISSUE_ROW = "tissue map (oracle)"  # benchmarks/cuts.py's TISSUE_ROW (this module reads JSON only)
TISSUE_NOTE = (
    f" The row `{TISSUE_ROW}` reads the phantom's exact tissue partition (CSF, grey and white matter, and the tumour's "
    "necrosis, edema and enhancing rim as three parts) by the same hint rule: on the tumour, the best any map whose "
    "parts each lie within one tissue can score. It looks at the ground truth too."
)
CUTS_COORDINATE_WEIGHT = 0.5  # bundles/cuts/configs/inference.json's coordinate_weight
CUTS_FEATURES = f"embedding + coordinates {CUTS_COORDINATE_WEIGHT:g}"  # cuts_selection.py's bundle features
CUTS_READING = f"{CUTS_FEATURES}: persistent structures (lineage) + refinement"
CUTS_ORACLE = f"{CUTS_FEATURES}: best level (oracle)"
CUTS_SHIPPED = "shipped (0.4.0): the 0.2.0 recipe with positive radius 2"
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
METHODS = {
    "ours": "ours (structure discovery)",
    "bm4d_kmeans": "BM4D + k-means",
    "kmeans": "k-means",
    "smooth_kmeans": "Gaussian smoothing (sigma 1) + k-means",
    "features_kmeans": "k-means on the diffusion features",
    "x0_kmeans": "diffusion x0 prediction + k-means",
}


def repo_relative(command: str) -> str:
    """A recorded command with absolute paths into a checkout (``/any/where/benchmarks/...``,
    ``/any/where/bundles/...``) written from the repository root, as a reader would run it."""
    return re.sub(r"(?<![\w.])/\S*?/(?=(?:benchmarks|bundles)/)", "", command)


def _load(name: str) -> dict | None:
    path = RESULTS / name
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if "command" in result:
        result["command"] = repo_relative(result["command"])
    return result


def _load_each(names: dict[str, str]) -> dict[str, dict] | None:
    """The results files of ``names`` that exist, by name (None when none does)."""
    return {name: result for name in names if (result := _load(name))} or None


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _header(cells: list[str]) -> str:
    """A table header, after a blank line so that the table starts its own Markdown block."""
    return "\n" + _row(cells) + "\n" + _row(["---"] * len(cells))


def calibration(result: dict) -> str:
    lines = [f"Calibration of the phantoms (`{result['command']}`), matched Dice on 20 test volumes, ours (paper):"]
    lines.append(_header(["variant", "method", *LEVELS]))
    for variant, data in result["variants"].items():
        for method in ("kmeans", "bm4d_kmeans"):
            cells = [data["cells"][f"{method}/label_l{level}"] for level in (1, 2, 3)]
            values = [f"{c['measured']:.3f} ({c['paper']:.3f})" for c in cells]
            lines.append(_row([variant, METHODS[method], *values]))
    times = ", ".join(f"{v} {d['generation_seconds_120']} s" for v, d in result["variants"].items())
    lines.append(f"\nGeneration of 120 volumes: {times}.")
    return "\n".join(lines)


def table1(results: list[dict]) -> str:
    lines = ["Table 1: matched Dice (mean ± sd, 20 test volumes), ours (paper, where it has the row); HD95 at level 1:"]
    lines.append(_header(["variant", "method", *LEVELS, "HD95 l1 (voxels)"]))
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
                lines.append(_row([variant, name, *cells, f"{distance:.2f}" if distance is not None else "-"]))
    commands = "; ".join(f"`{r['command']}`" for r in results)
    lines.append(f"\nCommands: {commands}.")
    return "\n".join(lines)


def variants(result: dict) -> str:
    """The variant table of ``benchmarks/discovery_variants.py``: each variant as trained and nested, then the
    baselines of the same run."""
    protocol = result["protocol"]
    lines = [
        f"Structure discovery variants (`{result['command']}`): trained on {protocol['splits']['training']} volumes "
        f"for {protocol['max_epochs']} epochs, seed {protocol['seed']}; matched Dice on the 20 test volumes, "
        "HD95 at level 1 in voxels; one factor at a time from the paper's setting:"
    ]
    lines.append(
        _header(["variant", *LEVELS, "HD95 l1", "nested by construction", "parts > 0.5 % of voxels", "training (min)"])
    )
    for name, run in result["runs"].items():
        dice = [f"{level['mean']:.3f}" for level in run["report"]["matched_dice"]["ours"]]
        nested = " / ".join(f"{level['mean']:.3f}" for level in run["report_nested"]["matched_dice"]["ours"])
        hd95 = run["report"]["matched_hd95"][0]["mean"]
        used = " / ".join(str(n) for n in run["parts_used"])
        lines.append(_row([name, *dice, f"{hd95:.2f}", nested, used, f"{run['training']['seconds'] / 60:.1f}"]))
    first = next(iter(result["runs"].values()))["report"]
    for method, name in METHODS.items():
        if method != "ours" and method in first["matched_dice"]:
            dice = [f"{level['mean']:.3f}" for level in first["matched_dice"][method]]
            hd95 = first["matched_hd95_first_level"][method]["mean"]
            lines.append(_row([f"baseline: {name}", *dice, f"{hd95:.2f}", "-", "-", "-"]))
    return "\n".join(lines)


def wall_times(results: list[dict]) -> str:
    lines = ["Wall time of the CPU recipe (2 cores):"]
    lines.append(_header(["variant", "diffusion pretraining", "structure discovery (3 levels)", "total"]))
    for result in results:
        for variant, run in result["runs"].items():
            pretraining = run["pretraining"].get("seconds", run["pretraining"].get("seconds_from_log"))
            discovery = run["discovery"]["seconds"]
            if pretraining is None:  # a shipped checkpoint was reused: its training time is not in this run
                lines.append(_row([variant, "reused checkpoint", f"{discovery / 60:.1f} min", "-"]))
                continue
            total = (pretraining + discovery) / 60
            lines.append(
                _row([variant, f"{pretraining / 60:.1f} min", f"{discovery / 60:.1f} min", f"{total:.1f} min"])
            )
    return "\n".join(lines)


def table2(result: dict) -> str:
    lines = [f"Table 2 (regular phantoms, one feature stage for every level; `{result['command']}`), ours (paper):"]
    lines.append(_header(["feature stage", *LEVELS]))
    for stage, values in result["table2"].items():
        paper = result["paper_table2"][stage]
        lines.append(_row([stage, *(f"{v:.3f} ({p:.3f})" for v, p in zip(values, paper, strict=True))]))
    return "\n".join(lines)


def table3(result: dict) -> str:
    settings = result["dataset"]
    lines = [
        f"Table 3 on brain phantoms (FLAIR, K = 3, {settings['test_volumes']} test volumes, "
        f"{settings['resolution_mm']} mm; `{result['command']}`); paper values are on BraTS'19:"
    ]
    lines.append(_header(["method", "whole-tumour Dice", "HD95 (mm)", "paper Dice", "paper HD95 (mm)"]))
    for row, values in result["table3"].items():
        dice, hd = values["dice"], values["hd95_mm"]
        paper = result["paper_table3"][row]
        cells = [
            f"{dice['mean']:.3f} ± {dice['sd']:.3f}" if dice else "-",
            f"{hd['mean']:.1f} ± {hd['sd']:.1f}" if hd else "-",
        ]
        lines.append(_row([row, *cells, f"{paper['dice']:.3f}", f"{paper['hd95_mm']:.1f}"]))
    shares = result["runs"].get("ours", {}).get("part_tissue_shares")
    if shares:
        lines.append("")
        lines.append(
            "What the parts of `ours` are made of (share of their voxels per tissue class, largest part first):"
        )
        lines.append(_header(["part", *shares[0]]))
        lines.extend(_row([str(k), *(f"{v:.2f}" for v in part.values())]) for k, part in enumerate(shares))
    if "steps_seconds" in result:
        trained = sum("training" in run.get("timing", {}) for run in result["runs"].values())
        pretraining = "reused pretraining" if "reused" in result["timings"]["pretraining"] else "pretraining"
        lines.append("")
        lines.append(
            f"All steps ({pretraining}, {trained} training(s) and evaluation(s), k-means): "
            f"{result['steps_seconds'] / 60:.0f} min."
        )
    return "\n".join(lines)


def speed(result: dict) -> str:
    lines = [f"Speed (`{result['command']}`, {result['machine']['cores']} cores):"]
    lines.append(_header(["diffusion pretraining", "batch", "parameters (M)", "s / iteration", "peak memory (GB)"]))
    for name in ("cpu_recipe", "paper"):
        entry = result.get(f"pretraining_{name}")
        if entry is None:
            continue
        if "error" in entry:
            lines.append(
                _row([name, "-", "-", f"failed: {entry['error'][:80]}", f"{entry['peak_memory_mb'] / 1024:.1f}"])
            )
            continue
        lines.append(
            _row(
                [
                    name,
                    entry["batch"],
                    f"{entry['parameters_m']:.1f}",
                    f"{entry['seconds_per_iteration']:.2f}",
                    f"{entry['peak_memory_mb'] / 1024:.1f}",
                ]
            )
        )
    lines.append(_header(["discovery step, features of", "s / volume cached", "s / volume recomputed", "speedup"]))
    for name in ("cpu_recipe", "paper"):
        entry = result.get(f"discovery_{name}_features")
        if entry:
            cells = [f"{entry['seconds_per_volume_cached']:.3f}", f"{entry['seconds_per_volume_recomputed']:.3f}"]
            lines.append(_row([f"{name} diffusion model", *cells, f"{entry['speedup']:.1f}x"]))
    bundle = result.get("bundle_feature_cache")
    if bundle:
        cached, recomputed = bundle["cached"], bundle["recomputed"]
        lines.append(
            f"\nstructure_discovery bundle, {bundle['training_volumes']} training volumes x {bundle['epochs']} epochs: "
            f"median epoch {cached['median_epoch_seconds_after_first']:.1f} s with the cache, "
            f"{recomputed['median_epoch_seconds_after_first']:.1f} s without ({bundle.get('speedup', '-')}x); "
            f"matched Dice with minus without the cache per level: {bundle['dice_difference']}."
        )
    return "\n".join(lines)


def pretraining(result: dict) -> str:
    l1 = result["denoising_l1"]
    steps = ", ".join(f"t = {k.rsplit('_t', 1)[1]}: {v:.4f}" for k, v in l1.items() if "_t" in k)
    sampling = result["sampling"]
    return (
        f"Shipped diffusion weights (`{result['command']}`): held-out denoising L1 of the x0 prediction on "
        f"{result['test_split']}: {steps} (mean {l1['val_denoising_l1']:.4f}; images in [-1, 1]). DDIM sampling, "
        f"{sampling['ddim_steps']} steps: {sampling['seconds_per_sample']} s per sample ({sampling['note']})."
    )


def clients(result: dict) -> str:
    machine = result["machine"]
    where = f"{machine['cores']} cores, {machine['device']}"
    lines = [f"Bundle tasks as a user runs them (`{result['command']}`, {where}):"]
    lines.append(_header(["bundle", "task", "what was run", "seconds", "peak memory (GB)"]))
    for run in result["runs"].values():
        if "error" in run:
            lines.append(_row([run["bundle"], run["task"], "-", f"failed: {run['error'][:80]}", "-"]))
            continue
        per_unit = run["seconds_per_unit"] or run["wall_seconds_per_unit"]  # no engine time logged: wall time
        seconds = f"{per_unit:.2f} s" if per_unit < 10 else f"{per_unit:.0f} s"
        seconds += f" / {run['unit']}"
        if run.get("training_seconds") is not None:
            seconds += f" (training {run['training_seconds']:.0f} s + validation {run['validation_seconds']:.0f} s)"
        seconds += f"; whole command {run['seconds']:.0f} s"
        memory = f"{run['peak_memory_mb_max_child'] / 1024:.2f}"
        if len(run.get("epoch_seconds_per_rank", [])) > 1:
            memory += f" per process, {run['peak_pss_total_mb_sampled'] / 1024:.2f} all processes"
        lines.append(_row([run["bundle"], run["task"], f"`{run['what']}`", seconds, memory]))
    if ratio := result.get("two_process_epoch_over_one_process"):
        one, two = (
            result["runs"][k]["engine_seconds"]
            for k in ("structure_discovery_train", "structure_discovery_train_2proc")
        )
        lines.append(
            f"\nTwo CPU processes ({result['ddp_threads']}) against one ({result['single_process_threads']}): "
            f"epoch {two:.0f} s against {one:.0f} s (x{ratio:.2f})."
        )
    lines.append(
        f"\nGPU memory: {result['gpu_memory']}. Peak memory: {result['memory_method']}. Seconds: "
        f"{result['seconds_method']}. {result['note']}"
    )
    return "\n".join(lines)


def brains(result: dict) -> str:
    kmeans = result["kmeans_3d"]
    dice, hd, paper = kmeans["dice"], kmeans["hd95_mm"], kmeans["paper"]
    lines = [
        f"Calibration of the brain phantoms (`{result['command']}`, {dice['n']} test subjects, FLAIR, 2 mm); paper "
        "values: Tursynbek & Niethammer 2023 (BraTS'19) for 3D k-means, CUTS (Liu, Amodio et al.) for the 2D baselines:"
    ]
    lines.append(_header(["method", "target", "Dice", "paper Dice", "HD95 (mm)", "paper HD95 (mm)"]))
    cells = [f"{dice['mean']:.3f} ± {dice['sd']:.3f}", f"{paper['dice']:.3f}", f"{hd['mean']:.1f} ± {hd['sd']:.1f}"]
    lines.append(_row(["k-means 3D (K = 3, matched)", "whole tumour", *cells, f"{paper['hd95_mm']:.1f}"]))
    targets = {"label": "whole tumour", "ventricles": "ventricles"}
    for method, scores in result["baselines_2d"].items():
        for target, name in targets.items():
            measured = scores[target]
            ours = f"{measured['mean']:.3f} ± {measured['sd']:.3f} (n = {measured['n']})" if measured else "-"
            reference = result["paper_cuts"].get(method, {}).get(target)
            paper_cell = f"{reference:.3f}" if reference is not None else "-"
            lines.append(_row([f"{method} 2D (CUTS rule)", name, ours, paper_cell, "-", "-"]))
    volumes, seconds = result["whole_tumour_cm3"], result["generation_seconds_per_subject"]
    lines.append(
        f"\nWhole tumour over {len(volumes['per_subject'])} subjects: min {volumes['min']:.1f}, median "
        f"{volumes['median']:.1f}, max {volumes['max']:.1f} cm^3. Generation: {seconds['3d']:.2f} s per subject (3D), "
        f"{seconds['2d']:.2f} s (2D). Calibrated (|Dice - paper| <= {kmeans['tolerance']}): {kmeans['calibrated']}."
    )
    return "\n".join(lines)


def _scores(s: dict) -> list[str]:
    """Dice [without empty], HD95, Jaccard [without empty], empty predictions of one ``summarize_scores`` row."""
    cell = lambda stats, digits=3: f"{stats['mean']:.{digits}f}" if stats else "-"  # noqa: E731
    return [
        f"{cell(s['dice'])} [{cell(s['dice_without_empty'])}]",
        cell(s["hd95"], 2),
        f"{cell(s['jaccard'])} [{cell(s['jaccard_without_empty'])}]",
        f"{s['empty_predictions']} / {s['slices']}",
    ]


def diffusion_segmentation(result: dict) -> str:
    ensemble, supervised, paper = result["ensemble"], result["supervised"], result["paper_table1"]
    lines = [
        f"Diffusion segmentation ensembles (`{result['command']}`), {result['tumour_slices']} test slices through "
        f"the tumour of {result['test_slices']} (64 x 64, DDIM 50 steps); Dice and Jaccard over every tumour slice "
        "[without the empty predictions], HD95 in pixels over the non-empty ones; paper = Wolleb et al. 2022 on "
        "BraTS (nnU-Net for the supervised row):",
        _header(["method", "Dice", "HD95", "Jaccard", "empty predictions", "paper Dice / HD95 / Jaccard"]),
    ]
    rows = [
        ("1 sampling run", ensemble["report"]["single_sample"], paper["1 sampling run"]),
        ("ensemble of 5", ensemble["report"]["ensemble"], paper["ensemble of 5"]),
        ("supervised U-Net", supervised["dropout_off"], paper["nnU-Net"]),
        ("U-Net, MC-dropout ensemble of 5", supervised["mc_dropout"]["ensemble"], None),
    ]
    for name, scores, reference in rows:
        lines.append(_row([name, *_scores(scores), " / ".join(f"{v:.3f}" for v in reference) if reference else "-"]))
    lines += [
        "",
        _header(["uncertainty map", "boundary / elsewhere variance", "variance-error AUROC", "ECE of the mean"]),
    ]
    for name, u in (
        ("diffusion ensemble of 5", ensemble["report"]["uncertainty"]),
        ("U-Net MC dropout x5", supervised["mc_dropout"]["uncertainty"]),
    ):
        cells = [f"{u['boundary_variance_ratio']:.2f}", f"{u['variance_error_auroc']:.3f}", f"{u['mean_map_ece']:.4f}"]
        lines.append(_row([name, *cells]))
    lines += [
        "",
        f"Samplers on the first {result['sampler_slices']} tumour slices (ensembles of 5):",
        _header(["sampler", "steps", "Dice (ensemble)", "s / sample", "speed-up vs DDPM"]),
    ]
    for name, row in result["samplers"].items():
        dice = row["report"]["ensemble"]["dice"]
        cells = [name, str(row["steps"]), f"{dice['mean']:.3f}" if dice else "-", f"{row['seconds_per_sample']}"]
        lines.append(_row([*cells, f"{row['speedup_vs_ddpm']}x"]))
    curve = ", ".join(f"{k}: {v['mean']:.3f}" for k, v in result["dice_vs_ensemble_size"].items())
    lines += [
        "",
        f"Dice against ensemble size (DDIM 50; `{repo_relative(result['figure'])}`): {curve}. One ensemble of "
        f"{max(int(k) for k in result['dice_vs_ensemble_size'])} samples: "
        f"{result['ensemble']['seconds_per_ensemble_of_largest']} s per slice "
        f"({result['ensemble']['seconds_per_sample']} s per sample, batched); peak resident memory of the "
        f"benchmark process {result['peak_memory_mb_process'] / 1024:.2f} GB.",
    ]
    if timing := result.get("timing_128"):
        lines += ["", "Cost at 128 x 128 (one ensemble of 5, this CPU):"]
        lines.append(_header(["sampler", "s / sample", "s / ensemble of 5", "peak resident memory (GB)"]))
        for name, row in timing.items():
            cells = [f"{row['seconds_per_sample']}", f"{row['seconds_per_ensemble']}"]
            lines.append(_row([name, *cells, f"{row['peak_memory_mb_process'] / 1024:.2f}"]))
    return "\n".join(lines)


def cuts(result: dict) -> str:
    targets = list(result["targets"])
    paper = result["paper_table1"]
    paper_targets = {t for row in paper.values() for t in row} & set(targets)
    side = result.get("spatial_size", [128, 128])
    columns = ("Dice", "HD / HD95", "paper Dice / HD") if paper_targets else ("Dice", "HD / HD95")
    lines = [
        f"CUTS (`{result['command']}`), "
        + ", ".join(f"{result['targets'][t]['images']} {result.get('split', 'test')} slices with {t}" for t in targets)
        + "; every label map binarised by the hint rule (the part most frequent under the ground truth); Dice and "
        "Hausdorff / HD95 in pixels"
        + ("; paper = Liu, Amodio et al., Table 1 (BraTS tumour, brain ventricles):" if paper_targets else ":"),
        _header(["method", *[f"{t} {c}" for t in targets for c in columns]]),
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
        lines.append(_row(cells))
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
        _header(["features: rule", *[f"{t} Dice" for t in targets], *(["worst margin"] if margins else [])]),
    ]
    for row, scores in result["dice"].items():
        margin = [f"{margins[row]:+.3f}"] if margins else []
        lines.append(_row([row, *[f"{scores[t]['mean']:.3f} ± {scores[t]['sd']:.3f}" for t in targets], *margin]))
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
        _header(["encoder", "command", "bundle's reading", "worst margin", "k-means", "best level (oracle)"]),
    ]
    for name, result in results.items():
        if result["split"] != split:
            raise ValueError(f"{name}: the encoders are compared on the {split} split, not {result['split']}.")
        reading, kmeans, best = (result["dice"][row] for row in (CUTS_READING, "k-means", CUTS_ORACLE))
        targets = list(kmeans)
        lines.append(
            _row(
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
        _header(["method", "side", "pixels N", "seconds", "peak memory (GB)", "levels"]),
    ]
    for method, rows in result["runs"].items():
        for row in rows:
            if "seconds" in row:
                cells = [f"{row['seconds']}", f"{row['peak_memory_mb'] / 1024:.2f}", str(row["levels"])]
            else:
                cells = [row["failed"], "-", "-"]
            lines.append(_row([method, str(row["side"]), str(row["pixels"]), *cells]))
    if ratios := result.get("phate_over_ours_seconds"):
        lines.append(
            "\nmultiscale_phate's time over ours: " + ", ".join(f"{side}^2: {r}x" for side, r in ratios.items()) + "."
        )
    return "\n".join(lines)


def _discovery() -> list[dict] | None:
    return [r for name in ("discovery_regular.json", "discovery_irregular.json") if (r := _load(name))] or None


def _stages() -> dict | None:
    stages = _load("discovery_stages.json")
    return stages if stages and stages.get("table2") else None


SOURCES = {  # section: (table function, reader of the results it needs)
    "calibration": (calibration, lambda: _load("phantoms.json")),
    "table1": (table1, _discovery),
    "variants": (variants, lambda: _load("discovery_variants.json")),
    "wall_time": (wall_times, _discovery),
    "table2": (table2, _stages),
    "table3": (table3, lambda: _load("brain.json")),
    "pretraining": (pretraining, lambda: _load("pretraining.json")),
    "speed": (speed, lambda: _load("speed.json")),
    "clients": (clients, lambda: _load("clients.json")),
    "brains": (brains, lambda: _load("brains.json")),
    "diffusion_segmentation": (diffusion_segmentation, lambda: _load("diffusion_segmentation.json")),
    "cuts": (cuts, lambda: _load("cuts.json")),
    "cuts_cells": (cuts, lambda: _load("cuts_cells.json")),
    "condensation": (condensation, lambda: _load("condensation.json")),
    "cuts_selection": (cuts_selection, lambda: _load("cuts_selection.json")),
    "cuts_selection_training": (cuts_selection, lambda: _load("cuts_selection_training.json")),
    "cuts_encoders": (cuts_encoders, lambda: _load_each(CUTS_ENCODERS)),
    "cuts_encoders_training": (
        functools.partial(cuts_encoders, split="training"),
        lambda: _load_each(CUTS_ENCODERS_TRAINING),
    ),
}


SECTIONS = tuple(SOURCES)


def render(section: str) -> str | None:
    """One section as Markdown, or None when its results file is missing (reads only that section's files)."""
    function, read = SOURCES[section]
    result = read()
    return function(result) if result is not None else None


BLOCK = re.compile(r"(<!-- summarize: ([a-z0-9_ ]+) -->\n).*?(<!-- /summarize -->)", re.DOTALL)


def update(path: Path) -> int:
    """Rewrite the summarize blocks of a Markdown file; return how many there were."""
    text = path.read_text()

    def fill(match: re.Match) -> str:
        sections = match.group(2).split()
        if unknown := sorted(set(sections) - set(SECTIONS)):
            raise ValueError(f"{path}: unknown sections {unknown} in '{match.group(1).strip()}'.")
        body = "\n\n".join(t for s in sections if (t := render(s)) is not None) or "(no results yet)"
        return f"{match.group(1)}{body}\n{match.group(3)}"

    new, count = BLOCK.subn(fill, text)
    path.write_text(new)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", help=f"any of {', '.join(SECTIONS)} (default: all)")
    parser.add_argument("--update", nargs="+", default=[], metavar="FILE", help="rewrite the summarize blocks")
    args = parser.parse_args()
    for path in args.update:
        print(f"{path}: {update(Path(path))} blocks updated")
    if args.update:
        return
    if unknown := sorted(set(args.sections) - set(SECTIONS)):
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    rendered = [text for section in args.sections or SECTIONS if (text := render(section)) is not None]
    print("\n\n".join(rendered) if rendered else f"no results in {RESULTS}")


if __name__ == "__main__":
    main()

"""The per-level results table of a structure-discovery evaluation, beside the non-DL baselines."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from ignite.engine import Engine

from monai_ext.baselines.diffusion import DiffusionBaselines
from monai_ext.baselines.evaluate import PAPER_TABLE1, run_baselines
from monai_ext.flags import as_flag
from monai_ext.metrics import finite_stats
from monai_ext.provenance import environment, peak_memory_mb, write_json


def evaluator_values(evaluator: Engine, prefix: str, num_levels: int) -> list[list[float]]:
    """The per-volume values of ``{prefix}_l{l}`` for each level (from metric_details; empty when not measured)."""
    details = getattr(evaluator.state, "metric_details", {}) or {}
    values = [details.get(f"{prefix}_l{level + 1}") for level in range(num_levels)]
    return [[] if v is None else [float(x) for x in torch.as_tensor(v).flatten()] for v in values]


def evaluator_scores(evaluator: Engine, prefix: str, num_levels: int) -> list[dict[str, float]]:
    """Mean, sd and count of the per-volume values of ``{prefix}_l{l}`` for each level (from metric_details)."""
    return [finite_stats(values) if values else {} for values in evaluator_values(evaluator, prefix, num_levels)]


def parts_used(evaluator: Engine, num_parts: Sequence[int]) -> list[dict[str, float]]:
    """Per level, the parts used per volume (``parts_used_l{l}``: parts holding at least 0.5 % of its voxels): mean,
    sd and count, and ``all_used``, the share of volumes using all K parts. Empty for a level not measured."""
    details = getattr(evaluator.state, "metric_details", {}) or {}
    summary = []
    for level, k in enumerate(num_parts):
        values = details.get(f"parts_used_l{level + 1}")
        if values is None:
            summary.append({})
            continue
        counts = [float(v) for v in torch.as_tensor(values).flatten()]
        summary.append({**finite_stats(counts), "all_used": sum(c == k for c in counts) / len(counts)})
    return summary


def _cell(stats: dict[str, float]) -> str:
    return f"{stats['mean']:.3f} ± {stats['sd']:.3f}" if stats else "-"


def committed_columns(reference: str, split: str, num_parts: Sequence[int]) -> dict[str, list[dict[str, float]]]:
    """The matched-Dice columns of a committed discovery report: ``reference`` is ``<file>.json/<key>/<key>...``,
    the place of a report written by :func:`discovery_report` inside a results file (e.g.
    ``benchmarks/results/discovery_regular.json/runs/regular/report``; MONAI reads ``#`` in a value as ``::``).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: a key is missing, or the report is of another split or other ``num_parts``.
    """
    path, _, pointer = reference.partition(".json")
    path, keys = path + ".json", [key for key in pointer.split("/") if key]
    if not Path(path).is_file():
        raise FileNotFoundError(f"reference results '{path}' (config id baseline_reference) do not exist.")
    report = json.loads(Path(path).read_text())
    for key in keys:
        if not isinstance(report, dict) or key not in report:
            raise ValueError(f"reference '{reference}' (config id baseline_reference): no key '{key}' in '{path}'.")
        report = report[key]
    if report.get("split") != split or list(report.get("num_parts", [])) != list(num_parts):
        raise ValueError(
            f"reference '{reference}' is of split {report.get('split')!r} and num_parts {report.get('num_parts')}, "
            f"this evaluation of {split!r} and {list(num_parts)}: its columns cannot stand beside this run's."
        )
    return report["matched_dice"]


def check_same_volumes(
    reference: dict[str, list[dict[str, float]]], measured: dict[str, list[dict[str, float]]], source: str
) -> None:
    """Refuse a committed report whose baselines were not measured on the volumes of this run: every baseline that
    both ran here and is in ``reference`` must give the same mean per level (the baselines are deterministic).

    Raises:
        ValueError: no baseline in common, or one that differs; the message names it and both values.
    """
    common = [method for method in measured if method != "ours" and method in reference]
    if not common:
        raise ValueError(
            f"baseline_reference '{source}': none of its baselines ran here, so nothing shows that it is of these "
            f"volumes; run at least one of {sorted(set(reference) - {'ours'})} (config id baseline_methods)."
        )
    for method in common:
        for level, (ours, theirs) in enumerate(zip(measured[method], reference[method], strict=False)):
            if abs(ours["mean"] - theirs["mean"]) > 1e-6:
                raise ValueError(
                    f"baseline_reference '{source}' is not of these volumes: its {method} at level {level + 1} is "
                    f"{theirs['mean']:.6f}, this run's {ours['mean']:.6f}; leave baseline_reference unset."
                )


def discovery_report(
    evaluator: Engine,
    num_parts: Sequence[int],
    out: str,
    dataset_dir: str | None = None,
    split: str = "test",
    compare_baselines: bool | str = False,
    hd95_spacing: float | Sequence[float] | None = None,
    overwrite: bool | str = False,
    diffusion: DiffusionBaselines | None = None,
    device: str | torch.device = "cpu",
    baseline_methods: Sequence[str] | None = None,
    baseline_reference: str | None = None,
    label_keys: Sequence[str] | None = None,
    datalist_name: str = "datalist.json",
    report_classes: Sequence[int] | None = None,
) -> dict:
    """Print and save matched Dice (and HD95 where computed) per level, with the k-means baselines
    measured on the same volumes when ``compare_baselines`` (and the paper's Table 1 for phantom data).

    The baselines that take minutes per volume (BM4D, the diffusion model's) can be left out of the run
    (``baseline_methods``) and read instead from a committed report of the same volumes (``baseline_reference``);
    their columns are then marked as such in the table and listed under ``committed`` in the report.
    ``matched_dice_per_volume`` keeps each volume's Dice per method and level, in datalist order, for paired
    differences between methods (committed columns have none).

    Args:
        evaluator: the finished evaluator (its ``matched_dice_l*`` metrics need ``save_details=True``).
        num_parts: K of each level.
        out: JSON file of the report.
        dataset_dir: dataset folder (``datalist.json`` + ``dataset.json``) for the baselines.
        split: the split that was evaluated.
        compare_baselines: also run the baselines on ``dataset_dir`` / ``split``.
        hd95_spacing: the voxel spacing the evaluator's HD95 was measured with (None: voxels, else mm); the
            baselines' HD95 at level 1 uses the same.
        overwrite: replace an existing ``out``.
        diffusion: the diffusion model the segmenter's features come from; with it the baselines add k-means on
            its features and on its x0 prediction (``monai_ext.baselines.DiffusionBaselines``, loaded only here).
        device: where the diffusion model runs.
        baseline_methods: the baselines run here (``monai_ext.baselines.evaluate.METHODS``); None: all that can run.
        baseline_reference: ``<file>.json/<key>/...`` of a committed report (:func:`committed_columns`) whose columns
            stand in for the baselines not run here; None: those columns are left out.
        label_keys: the label of each level (one key scores the first level); None or empty reads the label keys
            and their K from the ``classes`` of ``dataset.json``.
        datalist_name: the datalist of ``dataset_dir`` the baselines read.
        report_classes: the classes the baselines' Dice and HD95 are averaged over, as the evaluator's.
    """
    ours = evaluator_scores(evaluator, "matched_dice", len(num_parts))
    hd95 = evaluator_scores(evaluator, "matched_hd95", len(num_parts))
    columns: dict[str, list[dict[str, float]]] = {"ours": ours}
    per_volume = {"ours": evaluator_values(evaluator, "matched_dice", len(num_parts))}  # in datalist order
    committed: dict[str, str] = {}
    hd95_unit = "voxels" if hd95_spacing is None else "mm"
    hd95_first_level = {"ours": hd95[0] if hd95 else {}}
    variant = None
    if as_flag(compare_baselines, "compare_baselines"):
        if dataset_dir is None:
            raise ValueError("compare_baselines needs dataset_dir.")
        levels = dict(zip(label_keys, num_parts, strict=False)) if label_keys else None
        baselines = run_baselines(
            dataset_dir, split, baseline_methods, out=None, verbose=False, diffusion=diffusion, device=device,
            hd95_spacing=hd95_spacing, datalist_name=datalist_name, levels=levels, report_classes=report_classes,
            finest_parts=max(num_parts),
        )  # fmt: skip
        for method, per_level in baselines["matched_dice"].items():
            columns[method] = [{k: v for k, v in stats.items() if k != "per_volume"} for stats in per_level.values()]
            per_volume[method] = [stats["per_volume"] for stats in per_level.values()]
        for method, stats in baselines["matched_hd95_first_level"].items():
            hd95_first_level[method] = {k: v for k, v in stats.items() if k != "per_volume"}
        if baseline_reference:
            reference = committed_columns(baseline_reference, split, num_parts)
            check_same_volumes(reference, columns, baseline_reference)
            for method, per_level in reference.items():
                if method not in columns:
                    columns[method], committed[method] = per_level, baseline_reference
        meta_path = Path(dataset_dir) / "dataset.json"
        variant = json.loads(meta_path.read_text()).get("options", {}).get("variant") if meta_path.is_file() else None
    paper = PAPER_TABLE1.get(variant or "", {})
    header = f"{'level':<7}{'K':>3}  " + "".join(f"{name + ('*' if name in committed else ''):<18}" for name in columns)
    lines = [f"matched Dice on the {split} split, mean ± sd over volumes", header]
    for level, k in enumerate(num_parts):
        row = f"{'l' + str(level + 1):<7}{k:>3}  "
        row += "".join(f"{_cell(col[level]) if level < len(col) else '-':<18}" for col in columns.values())
        if paper and level < 3:
            row += "paper: " + " / ".join(f"{m} {v[level]:.3f}" for m, v in paper.items())
        lines.append(row)
    if any(hd95):
        lines.append(f"HD95 ({hd95_unit}): " + ", ".join(f"l{i + 1} {_cell(s)}" for i, s in enumerate(hd95) if s))
    used = parts_used(evaluator, num_parts)
    if any(used):
        cells = [
            f"l{i + 1} {u['mean']:.2f} / {k} ({100 * u['all_used']:.0f} %)"
            for i, (u, k) in enumerate(zip(used, num_parts, strict=True))
            if u
        ]
        lines.append("parts used per volume (>= 0.5 % of it; volumes using all K): " + ", ".join(cells))
    if len(hd95_first_level) > 1:
        cells = "".join(f"{_cell(hd95_first_level.get(method, {})):<18}" for method in columns)
        lines.append(f"{'HD95 l1':<12}{cells}({hd95_unit}, same columns)")
    if committed:
        lines.append(
            f"* not run here (minutes per volume): the committed results of the same volumes (the baselines run here "
            f"agree with them to 1e-6), {baseline_reference}; leave baseline_methods unset to run every baseline "
            "(make demo-full)."
        )
    table = "\n".join(lines)
    print(table)
    report = {
        **environment(),
        "split": split,
        "num_parts": list(num_parts),
        "matched_dice": columns,
        "matched_dice_per_volume": per_volume,
        "committed": committed,
        "matched_hd95": hd95,
        "parts_used": used,
        "matched_hd95_first_level": hd95_first_level,
        "hd95_unit": hd95_unit,
        "paper_table1": paper or None,
        "peak_memory_mb": round(peak_memory_mb(), 1),
    }
    write_json(out, report, overwrite=overwrite)
    return report

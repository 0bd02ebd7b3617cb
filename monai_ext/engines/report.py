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


def evaluator_scores(evaluator: Engine, prefix: str, num_levels: int) -> list[dict[str, float]]:
    """Mean, sd and count of the per-volume values of ``{prefix}_l{l}`` for each level (from metric_details)."""
    details = getattr(evaluator.state, "metric_details", {}) or {}
    scores = []
    for level in range(num_levels):
        name = f"{prefix}_l{level + 1}"
        values = details.get(name)
        scores.append(finite_stats(values) if values is not None else {})
    return scores


def _cell(stats: dict[str, float]) -> str:
    return f"{stats['mean']:.3f} ± {stats['sd']:.3f}" if stats else "-"


def discovery_report(
    evaluator: Engine,
    num_parts: Sequence[int],
    out: str,
    dataset_dir: str | None = None,
    split: str = "test",
    compare_baselines: bool = False,
    hd95_spacing: float | Sequence[float] | None = None,
    overwrite: bool = False,
    diffusion: DiffusionBaselines | None = None,
    device: str | torch.device = "cpu",
) -> dict:
    """Print and save matched Dice (and HD95 where computed) per level, with the k-means baselines
    measured on the same volumes when ``compare_baselines`` (and the paper's Table 1 for phantom data).

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
    """
    ours = evaluator_scores(evaluator, "matched_dice", len(num_parts))
    hd95 = evaluator_scores(evaluator, "matched_hd95", len(num_parts))
    columns: dict[str, list[dict[str, float]]] = {"ours": ours}
    hd95_unit = "voxels" if hd95_spacing is None else "mm"
    hd95_first_level = {"ours": hd95[0] if hd95 else {}}
    variant = None
    compare_baselines = as_flag(compare_baselines, "compare_baselines")
    if compare_baselines:
        if dataset_dir is None:
            raise ValueError("compare_baselines needs dataset_dir.")
        baselines = run_baselines(
            dataset_dir, split, out=None, verbose=False, diffusion=diffusion, device=device, hd95_spacing=hd95_spacing
        )
        for method, per_level in baselines["matched_dice"].items():
            columns[method] = [{k: v for k, v in stats.items() if k != "per_volume"} for stats in per_level.values()]
        for method, stats in baselines["matched_hd95_first_level"].items():
            hd95_first_level[method] = {k: v for k, v in stats.items() if k != "per_volume"}
        meta_path = Path(dataset_dir) / "dataset.json"
        variant = json.loads(meta_path.read_text()).get("options", {}).get("variant") if meta_path.is_file() else None
    paper = PAPER_TABLE1.get(variant or "", {})
    header = f"{'level':<7}{'K':>3}  " + "".join(f"{name:<18}" for name in columns)
    lines = [f"matched Dice on the {split} split, mean ± sd over volumes", header]
    for level, k in enumerate(num_parts):
        row = f"{'l' + str(level + 1):<7}{k:>3}  "
        row += "".join(f"{_cell(col[level]) if level < len(col) else '-':<18}" for col in columns.values())
        if paper and level < 3:
            row += "paper: " + " / ".join(f"{m} {v[level]:.3f}" for m, v in paper.items())
        lines.append(row)
    if any(hd95):
        lines.append(f"HD95 ({hd95_unit}): " + ", ".join(f"l{i + 1} {_cell(s)}" for i, s in enumerate(hd95) if s))
    if len(hd95_first_level) > 1:
        cells = "".join(f"{_cell(s) if s else '-':<18}" for s in hd95_first_level.values())
        lines.append(f"{'HD95 l1':<12}{cells}({hd95_unit}, same columns)")
    table = "\n".join(lines)
    print(table)
    report = {
        **environment(),
        "split": split,
        "num_parts": list(num_parts),
        "matched_dice": columns,
        "matched_hd95": hd95,
        "matched_hd95_first_level": hd95_first_level,
        "hd95_unit": hd95_unit,
        "paper_table1": paper or None,
        "peak_memory_mb": round(peak_memory_mb(), 1),
    }
    write_json(out, report, overwrite=overwrite)
    return report

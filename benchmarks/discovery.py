"""Structure discovery on the cell phantoms: the paper's Table 1 (both variants), Table 2 (stages) and timings.

For each variant it generates the 120 phantoms (seed 0), pretrains the diffusion model with the CPU recipe of
bundles/diffusion_pretraining (or reuses a checkpoint), trains structure discovery with the bundle's train.json
(K = 8 on stage-3 features, merged to K = 4 and 2) and evaluates on the 20 test volumes beside k-means, BM4D +
k-means, Gaussian smoothing + k-means, k-means on the diffusion features and on its x0 prediction, and the last two
with their finest K merged, all measured in the same run. With --stages it also trains the three levels (K = 2 / 4 /
8, none merged, as in the paper) on a single feature stage each (Table 2 rows). Everything goes through the
bundles' own configs (`python -m monai.bundle run`), so the numbers are those of the bundles.

    python benchmarks/discovery.py --variants regular irregular --stages --workdir benchmarks/.work
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from steps import (
    CELL_LEVEL_PARTS,
    RESULTS,
    WORK,
    bundle_config,
    cell_phantoms,
    discover,
    evaluate_on_phantoms,
    pretrain,
)

from monai_ext.baselines.evaluate import PAPER_TABLE1
from monai_ext.provenance import environment, write_json

COLUMNS = ("ours", "kmeans", "bm4d_kmeans", "smooth_kmeans", "features_kmeans", "x0_kmeans")
PAPER_TABLE2 = {1: (0.986, 0.366, 0.273), 2: (0.923, 0.577, 0.327), 3: (0.878, 0.489, 0.397)}


def stage_table(data: Path, diffusion_ckpt: Path, work: Path, extra: dict) -> dict:
    """Table 2: for each decoder stage, every level trained (none merged, as in the paper) on that stage alone."""
    rows = {}
    for stage in (1, 2, 3):
        overrides = {
            "num_parts": CELL_LEVEL_PARTS,
            "merged_parts": [],
            "merge_by": "image",
            "feature_stages": [stage] * len(CELL_LEVEL_PARTS),
            **extra,
        }
        name = f"stage{stage}_trained_levels"
        ckpt, timing = discover(data, diffusion_ckpt, work / f"discovery_regular_{name}", overrides)
        evaluation = {**overrides, "hd95_levels": []}  # an evaluate.json id: Table 2 has no distances
        report = evaluate_on_phantoms(data, diffusion_ckpt, ckpt, work / f"eval_{name}", evaluation, baselines=False)
        rows[str(stage)] = {
            "matched_dice": {"ours": report["matched_dice"]["ours"]},
            "parts_used": report["parts_used"],
            "timing": timing,
        }
    return rows


def means(report: dict, column: str) -> list[float]:
    return [level.get("mean", float("nan")) for level in report["matched_dice"][column]]


def table1(results: dict) -> str:
    lines = ["Table 1 (matched Dice, 20 test volumes; ours = this run, paper = Tursynbek & Niethammer 2023)"]
    for variant, result in results.items():
        lines.append(f"{variant}:  level 1 / level 2 / level 3   HD95 l1 (voxels)")
        hd95 = result["report"]["matched_hd95_first_level"]
        for column in COLUMNS:
            measured = " / ".join(f"{v:.3f}" for v in means(result["report"], column))
            paper = PAPER_TABLE1[variant].get(column)
            reference = f"   (paper {' / '.join(f'{v:.3f}' for v in paper)})" if paper else ""
            distance = hd95.get(column, {}).get("mean", float("nan"))
            lines.append(f"  {column:<16} {measured}   {distance:6.2f}{reference}")
    return "\n".join(lines)


def table2(rows: dict) -> str:
    lines = ["Table 2 (regular, matched Dice; one feature stage for all levels)"]
    lines.append("  stage  level 1 / level 2 / level 3")
    for stage, report in rows.items():
        measured = " / ".join(f"{v:.3f}" for v in means(report, "ours"))
        paper = " / ".join(f"{v:.3f}" for v in PAPER_TABLE2[int(stage)])
        lines.append(f"  {stage:<6} {measured}   (paper {paper})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=["regular", "irregular"], choices=["regular", "irregular"])
    parser.add_argument("--stages", action="store_true", help="also run the stage table (Table 2) on regular")
    parser.add_argument("--workdir", default=str(WORK))
    parser.add_argument(
        "--diffusion-ckpt",
        nargs=2,
        action="append",
        default=[],
        metavar=("VARIANT", "PATH"),
        help="reuse a diffusion checkpoint for a variant instead of pretraining",
    )
    parser.add_argument("--max-epochs", type=int, default=None, help="override the discovery epochs")
    parser.add_argument("--out", default=str(RESULTS / "discovery.json"))
    args = parser.parse_args()
    work = Path(args.workdir)
    reuse = {variant: Path(path) for variant, path in args.diffusion_ckpt}
    extra = {"max_epochs": args.max_epochs} if args.max_epochs else {}
    start = time.perf_counter()
    results, stage_rows = {}, {}
    for variant in args.variants:
        data = cell_phantoms(work / f"phantoms_{variant}", variant)
        configs = bundle_config("diffusion_pretraining", "train.json")
        diffusion_ckpt, pretrain_timing = pretrain(
            configs, work / f"diffusion_{variant}", {"dataset_dir": str(data)}, reuse.get(variant)
        )
        ckpt, train_timing = discover(data, diffusion_ckpt, work / f"discovery_{variant}", extra)
        report = evaluate_on_phantoms(data, diffusion_ckpt, ckpt, work / f"eval_{variant}", {}, baselines=True)
        results[variant] = {"pretraining": pretrain_timing, "discovery": train_timing, "report": report}
        if args.stages and variant == "regular":
            stage_rows = stage_table(data, diffusion_ckpt, work, extra)
    summary = {
        **environment(),
        "table1": {v: {c: means(r["report"], c) for c in COLUMNS} for v, r in results.items()},
        "paper_table1": {v: PAPER_TABLE1[v] for v in results},
        "table2": {s: means(r, "ours") for s, r in stage_rows.items()},
        "paper_table2": PAPER_TABLE2 if stage_rows else None,
        "runs": results,
        "stage_runs": stage_rows,
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    write_json(args.out, summary, overwrite=True)
    print(table1(results))
    if stage_rows:
        print(table2(stage_rows))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

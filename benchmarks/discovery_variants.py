"""Structure discovery variants on a reduced protocol, one factor at a time (issue 9's variant table).

Protocol: the regular cell phantoms of ``benchmarks/discovery.py`` (120 volumes, seed 0), of which the first 40
training and first 5 validation volumes train (``datalist_variants.json`` beside ``datalist.json``) for
``--max-epochs`` epochs (default 6), seed 0, the shipped CPU diffusion model; every variant is evaluated on the
same 20 test volumes as Table 1, as trained and with its levels nested by construction (``nested_levels``, an
evaluation option). The first variant's evaluation also runs every simple baseline (k-means,
BM4D + k-means, smoothing + k-means, k-means on the diffusion features and on its x0 prediction), so the table's
baseline rows come from the same run. Each variant is the paper's setting (``PAPER``, stated in full so that
changing the bundle's defaults does not change a row) with the overrides of ``VARIANTS``. Finished runs are
reused from ``--workdir``; the table is written to ``--out`` and printed.

    python benchmarks/discovery_variants.py --workdir benchmarks/.work/variants
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from steps import BUNDLES, RESULTS, WORK, cell_phantoms, discover, evaluate_on_phantoms

from monai_ext.provenance import environment, write_json

DIFFUSION_CKPT = BUNDLES / "structure_discovery" / "models" / "diffusion_pretraining" / "model.pt"
REDUCED_SPLITS = {"training": 40, "validation": 5, "test": 20}
BASELINES = ("kmeans", "bm4d_kmeans", "smooth_kmeans", "features_kmeans", "x0_kmeans")
# The paper's setting, every id a variant may change (Tursynbek & Niethammer, MICCAI 2023, sec. 4).
PAPER: dict[str, object] = {
    "num_parts": [2, 4, 8],
    "feature_stages": [1, 2, 3],
    "lambda_v": 1.0,
    "lambda_f": 1.0,
    "lambda_inv": 1.0,
    "lambda_nest": 0.0,
    "normalize_consistency": False,
    "visual_target": "image",
    "feature_padding": 0,
    "feature_cache_draws": 2,
    "denoise_timestep": 50,
    "denoise_draws": 4,
}
VARIANTS: dict[str, dict[str, object]] = {
    "paper": {},
    "denoised_visual+normalize+reflect_padding": {
        "visual_target": "denoised",
        "normalize_consistency": True,
        "feature_padding": 4,
    },
    "denoised_visual+normalize+reflect_padding+nesting_loss": {
        "visual_target": "denoised",
        "normalize_consistency": True,
        "feature_padding": 4,
        "lambda_nest": 1.0,
    },
    "normalize": {"normalize_consistency": True},
    "reflect_padding": {"feature_padding": 4},
    "denoised_visual": {"visual_target": "denoised"},
    "denoised_visual_no_features": {"visual_target": "denoised", "lambda_f": 0.0},
    "nesting_loss": {"lambda_nest": 1.0},
}


def reduced_datalist(data: Path) -> str:
    """Write ``datalist_variants.json`` (the first volumes of each split, ``REDUCED_SPLITS``) and return its name."""
    full = json.loads((data / "datalist.json").read_text())
    reduced = {split: full[split][:count] for split, count in REDUCED_SPLITS.items()}
    name = "datalist_variants.json"
    (data / name).write_text(json.dumps(reduced, indent=2) + "\n")
    return name


def evaluate_once(data: Path, ckpt: Path, out: Path, overrides: dict, baselines: bool) -> dict:
    """The evaluation report of a trained variant on the test split (``evaluate_on_phantoms``), reused when present."""
    if (out / "report.json").is_file():
        return json.loads((out / "report.json").read_text())
    return evaluate_on_phantoms(data, DIFFUSION_CKPT, ckpt, out, overrides, baselines)


def run_variant(name: str, data: Path, datalist: str, work: Path, max_epochs: int, baselines: bool) -> dict:
    """Train and evaluate one variant (reusing finished steps); the evaluation runs twice, as trained and with the
    levels nested by construction (``nested_levels``, evaluation only). Returns both reports and the training
    time."""
    overrides = {**PAPER, **VARIANTS[name], "datalist_name": datalist, "max_epochs": max_epochs, "seed": 0}
    ckpt, timing = discover(data, DIFFUSION_CKPT, work / name / "train", {**overrides, "overwrite": True})
    return {
        "overrides": VARIANTS[name],
        "training": timing,
        "report": evaluate_once(data, ckpt, work / name / "eval", overrides, baselines),
        "parts_used": parts_used(work / name / "eval" / "hierarchy.json"),
        "report_nested": evaluate_once(
            data, ckpt, work / name / "eval_nested", {**overrides, "nested_levels": True}, False
        ),
    }


def parts_used(hierarchy: Path, share: float = 0.005) -> list[int]:
    """Per level, how many parts hold more than ``share`` of the test voxels (from the evaluation's
    ``hierarchy.json``): parts the segmenter left (almost) empty show as a count below K."""
    pairs = json.loads(hierarchy.read_text())["dataset"]["pairs"]
    sizes = [[sum(column) for column in zip(*pairs[0]["contingency"], strict=True)]]
    sizes += [[sum(row) for row in pair["contingency"]] for pair in pairs]
    return [sum(size > share * sum(level) for size in level) for level in sizes]


def level_means(report: dict, column: str) -> list[float]:
    return [level.get("mean", float("nan")) for level in report["matched_dice"][column]]


def table(results: dict, baseline_report: dict | None, max_epochs: int) -> str:
    lines = [
        f"Variants (matched Dice on the 20 test volumes; trained on 40 volumes, {max_epochs} epochs, seed 0)",
        f"  {'variant':<40} level 1 / level 2 / level 3   HD95 l1   train min   parts > 0.5 %",
    ]
    for name, result in results.items():
        for suffix, report in (("", result["report"]), (" + nested", result["report_nested"])):
            dice = " / ".join(f"{v:.3f}" for v in level_means(report, "ours"))
            hd95 = report["matched_hd95"][0].get("mean", float("nan"))
            minutes = result["training"]["seconds"] / 60
            used = "/".join(str(n) for n in result["parts_used"])
            lines.append(f"  {name + suffix:<40} {dice}   {hd95:7.2f}   {minutes:6.1f}   {used}")
    if baseline_report is not None:
        hd95_baselines = baseline_report.get("matched_hd95_first_level", {})
        for column in BASELINES:
            dice = " / ".join(f"{v:.3f}" for v in level_means(baseline_report, column))
            hd95 = hd95_baselines.get(column, {}).get("mean", float("nan"))
            lines.append(f"  {'baseline ' + column:<40} {dice}   {hd95:7.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--workdir", default=str(WORK / "variants"))
    parser.add_argument("--data", default=str(WORK / "phantoms_regular"))
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--out", default=str(RESULTS / "discovery_variants.json"))
    args = parser.parse_args()
    work, data = Path(args.workdir) / f"epochs{args.max_epochs}", cell_phantoms(Path(args.data), "regular")
    datalist = reduced_datalist(data)
    start = time.perf_counter()
    results = {}
    for index, name in enumerate(args.variants):
        results[name] = run_variant(name, data, datalist, work, args.max_epochs, baselines=index == 0)
    baseline_report = results[args.variants[0]]["report"]
    summary = {
        **environment(),
        "protocol": {"splits": REDUCED_SPLITS, "max_epochs": args.max_epochs, "seed": 0, "paper": PAPER},
        "variants": {name: level_means(r["report"], "ours") for name, r in results.items()},
        "variants_nested": {name: level_means(r["report_nested"], "ours") for name, r in results.items()},
        "baselines": {c: level_means(baseline_report, c) for c in BASELINES},
        "runs": results,
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    write_json(args.out, summary, overwrite=True)
    print(table(results, baseline_report, args.max_epochs))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

"""Structure discovery variants on a reduced protocol, one factor at a time from the bundle's defaults (issue 31).

Protocol: the regular cell phantoms of ``benchmarks/discovery.py`` (120 volumes, seed 0). Each variant trains on the
first 40 training volumes for ``--max-epochs`` epochs (default 6), seed 0, with the shipped CPU diffusion model, its
levels selected label-free (mean max probability) on the first 5 validation volumes, and is scored on all 20
validation volumes (``--split``; the test split is read once, by ``benchmarks/discovery.py``, for the final table):
matched Dice and parts used per level (parts holding at least 0.5 % of a volume), HD95 at level 1. The variants share
one feature cache on disk (its entries are named by the diffusion model, stages, timestep and padding, so a variant
never reads another's features). The first variant's evaluation also runs every simple baseline on the same volumes
(k-means, BM4D + k-means, smoothing + k-means, k-means on the diffusion features and on the x0 prediction). Each
variant is the bundle's ``train.json`` with the overrides of ``VARIANTS`` (``paper`` adds ``configs/paper.json``);
each row records its command. Finished runs are reused from ``--workdir`` and the table is rewritten after every
variant, so an interrupted study resumes.

    python benchmarks/discovery_variants.py --workdir benchmarks/.work/variants
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from steps import (
    BUNDLES,
    RESULTS,
    WORK,
    bundle_config,
    cell_phantoms,
    evaluate_discovery,
    log_beside,
    read_config,
    train_once,
)

from monai_ext.provenance import environment, write_json

DIFFUSION_CKPT = BUNDLES / "structure_discovery" / "models" / "diffusion_pretraining" / "model.pt"
REDUCED_SPLITS = {"training": 40, "validation": 5}  # training and label-free selection
SCORED_VOLUMES = 20  # every volume of the scored split
BASELINES = ("kmeans", "bm4d_kmeans", "smooth_kmeans", "features_kmeans", "x0_kmeans")
DEFAULTS = read_config("structure_discovery", "train.json")
VARIANTS: dict[str, dict[str, object]] = {
    "defaults": {},  # the bundle's train.json as it is
    "paper": read_config("structure_discovery", "paper.json"),
    "lambda_inv=0": {"lambda_inv": 0.0},
    "lambda_nest=0": {"lambda_nest": 0.0},
    "lambda_f=0": {"lambda_f": 0.0},
    "not normalised": {"normalize_consistency": False},
    "visual term on the image": {"visual_target": "image"},
    "stages 1-3 at every level": {"feature_stages": [[1, 2, 3]] * 3},
    "part usage term": {"lambda_usage": 1.0},
    "balanced assignment": {"lambda_balance": 1.0},
    "warm start (2 epochs)": {"warm_start_epochs": 2},
    "learning rate x3": {"learning_rate": 3 * DEFAULTS["learning_rate"]},
    "epochs x2": {},
    # a first combination of the levers measured above: no nesting (level 2 keeps its parts), usage, warm start
    "lambda_nest=0 + part usage + warm start": {"lambda_nest": 0.0, "lambda_usage": 1.0, "warm_start_epochs": 2},
}
EPOCH_FACTORS = {"epochs x2": 2}  # variants trained longer than --max-epochs


def reduced_datalist(data: Path) -> str:
    """Write ``datalist_variants.json`` (the first volumes of each split, ``REDUCED_SPLITS``) and return its name."""
    full = json.loads((data / "datalist.json").read_text())
    reduced = {split: full[split][:count] for split, count in REDUCED_SPLITS.items()}
    name = "datalist_variants.json"
    (data / name).write_text(json.dumps(reduced, indent=2) + "\n")
    return name


def run_variant(name: str, data: Path, datalist: str, work: Path, args: argparse.Namespace, baselines: bool) -> dict:
    """Train and evaluate one variant (each step reused when it finished before)."""
    epochs = args.max_epochs * EPOCH_FACTORS.get(name, 1)
    common = {
        "dataset_dir": str(data),
        "diffusion_ckpt": str(DIFFUSION_CKPT),
        "datalist_name": datalist,
        "feature_cache_storage": "disk",
        "feature_cache#cache_dir": str(work / "feature_cache"),
    }
    overrides = {**common, **VARIANTS[name], "max_epochs": epochs, "seed": 0}
    overlays = ("paper.json",) if name == "paper" else ()
    folder = work / name.replace(" ", "_").replace("=", "")
    configs = bundle_config("structure_discovery", "train.json", *overlays)
    ckpt, timing = train_once(configs, folder / "train", {**overrides, "overwrite": True})
    out = folder / f"eval_{args.split}"
    if (out / "report.json").is_file():
        report = json.loads((out / "report.json").read_text())
    else:
        evaluation = {**overrides, "datalist_name": "datalist.json", "ckpt_path": str(ckpt), "eval_split": args.split}
        evaluation["compare_baselines"] = baselines
        report = evaluate_discovery(overlays, evaluation, out)[0]
    return {
        "overrides": VARIANTS[name],
        "command": log_beside(folder / "train").read_text().splitlines()[0],
        "training": timing,
        "report": report,
    }


def level_means(report: dict, column: str) -> list[float]:
    return [level.get("mean", float("nan")) for level in report["matched_dice"][column]]


def table(results: dict, max_epochs: int, split: str) -> str:
    lines = [
        f"Variants (matched Dice on the {SCORED_VOLUMES} {split} volumes; trained on 40 volumes, {max_epochs} epochs)",
        f"  {'variant':<28} level 1 / level 2 / level 3   HD95 l1   parts used l1/l2/l3   train min",
    ]
    for name, result in results.items():
        report = result["report"]
        dice = " / ".join(f"{v:.3f}" for v in level_means(report, "ours"))
        used = " / ".join(f"{level.get('mean', float('nan')):.2f}" for level in report["parts_used"])
        hd95 = report["matched_hd95"][0].get("mean", float("nan"))
        lines.append(f"  {name:<28} {dice}   {hd95:7.2f}   {used:<21} {result['training']['seconds'] / 60:6.1f}")
    first = next(iter(results.values()))["report"]
    for column in BASELINES:
        if column in first["matched_dice"]:
            dice = " / ".join(f"{v:.3f}" for v in level_means(first, column))
            hd95 = first["matched_hd95_first_level"].get(column, {}).get("mean", float("nan"))
            lines.append(f"  {'baseline ' + column:<28} {dice}   {hd95:7.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--workdir", default=str(WORK / "variants"))
    parser.add_argument("--data", default=str(WORK / "phantoms_regular"))
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    parser.add_argument("--out", default=str(RESULTS / "discovery_variants.json"))
    args = parser.parse_args()
    work = Path(args.workdir).resolve() / f"epochs{args.max_epochs}"
    data = cell_phantoms(Path(args.data).resolve(), "regular")
    datalist = reduced_datalist(data)
    start = time.perf_counter()
    results = {}
    for index, name in enumerate(args.variants):
        results[name] = run_variant(name, data, datalist, work, args, baselines=index == 0)
        first = results[args.variants[0]]["report"]
        summary = {
            **environment(),
            "protocol": {
                "splits": REDUCED_SPLITS,
                "scored_split": args.split,
                "scored_volumes": SCORED_VOLUMES,
                "max_epochs": args.max_epochs,
                "seed": 0,
                "defaults": "bundles/structure_discovery/configs/train.json",
            },
            "variants": {n: level_means(r["report"], "ours") for n, r in results.items()},
            "parts_used": {n: r["report"]["parts_used"] for n, r in results.items()},
            "baselines": {c: level_means(first, c) for c in BASELINES if c in first["matched_dice"]},
            "runs": results,
            "wall_time_s": round(time.perf_counter() - start, 1),
        }
        write_json(args.out, summary, overwrite=True)
        print(table(results, args.max_epochs, args.split), flush=True)
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

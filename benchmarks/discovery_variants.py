"""Structure discovery variants on a reduced protocol, one factor at a time from the recipe the study started from
(``STUDY_BASE``: the bundle's train.json before its winner became the default; issue 31).

Protocol: ``--dataset cells``, the regular cell phantoms of ``benchmarks/discovery.py`` (120 volumes, seed 0), or
``--dataset brains``, the brain phantoms of ``benchmarks/brain.py`` (60 volumes, seed 0; ``brain.json`` layered on,
FLAIR, whole-tumour Dice, from the base ``BRAIN_BASE``: the brain recipe before the study changed it). Each variant
trains on the first 40 training volumes for ``--max-epochs`` epochs (default 6), seed ``--seed`` (default 0: the runs
before the study had seeds; another seed redraws the initialisation, batch order and feature noise), with the shipped
CPU diffusion model of that dataset, its levels selected label-free (mean max probability) on the first 5 validation
volumes, and is scored on every volume of the validation split (``--split``; the test split is read once, by
``benchmarks/discovery.py`` and ``benchmarks/brain.py``, for the final tables): matched Dice and parts used per level
(parts holding at least 0.5 % of a volume), HD95 at level 1. The variants share one feature cache on disk (its entries
are named by the diffusion model, stages, timestep, padding and seed, so a variant never reads another's features). The
first variant's evaluation also runs every simple baseline on the same volumes (k-means, BM4D + k-means, smoothing +
k-means, k-means on the diffusion features and on the x0 prediction, and smoothing or x0 + k-means with the finest
level's K merged to the coarser levels). Each variant is the bundle's ``train.json`` with the overrides of ``VARIANTS``
or ``BRAIN_VARIANTS`` (``paper`` adds ``configs/paper.json``); each row records its command. Finished runs are reused
from ``--workdir`` and the table is rewritten after every variant, so an interrupted study resumes.

    python benchmarks/discovery_variants.py --workdir benchmarks/.work/variants
    python benchmarks/discovery_variants.py --dataset brains --workdir benchmarks/.work/variants
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
    brain_phantoms,
    bundle_config,
    cell_phantoms,
    evaluate_discovery,
    log_beside,
    read_config,
    train_once,
)

from monai_ext.baselines.evaluate import MERGED
from monai_ext.provenance import environment, write_json

MODELS = BUNDLES / "structure_discovery" / "models"
REDUCED_SPLITS = {"training": 40, "validation": 5}  # training and label-free selection
BASELINES = ("kmeans", "bm4d_kmeans", "smooth_kmeans", "features_kmeans", "x0_kmeans")
BASELINES += tuple(method + MERGED for method in ("smooth_kmeans", "x0_kmeans"))
# the schedule both studies start from, and the cell study's base: train.json before the study made its winners (the
# schedule, then the 8 parts trained and merged) the defaults
STUDY_SCHEDULE = {"learning_rate": 3e-4, "warm_start_epochs": 0}
STUDY_BASE = {
    **STUDY_SCHEDULE,
    "num_parts": [2, 4, 8],
    "merged_parts": [],
    "merge_by": "image",
    "feature_stages": [1, 2, 3],
}
# the schedule the cell study found best (train.json's since): 10 of 12 epochs fitted to the x0 + k-means partitions,
# at ten times the base learning rate
WINNER_SCHEDULE = {"warm_start_epochs": 10, "learning_rate": 10 * STUDY_SCHEDULE["learning_rate"]}
# K = 2 and 8 trained (stages 1 and 3, as the paper's levels 1 and 3), 4 merged from the 8 by the x0 prediction
TRAINED_2_AND_8 = {"num_parts": [2, 8], "feature_stages": [1, 3], "merged_parts": [4], "merge_by": "denoised"}
VARIANTS: dict[str, dict[str, object]] = {
    "defaults": {},  # STUDY_BASE: train.json before the study
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
    "learning rate x3": {"learning_rate": 3 * STUDY_BASE["learning_rate"]},
    "epochs x2": {},
    "learning rate x10": {"learning_rate": 10 * STUDY_BASE["learning_rate"]},
    "warm start (2 epochs), learning rate x10": {
        "warm_start_epochs": 2,
        "learning_rate": 10 * STUDY_BASE["learning_rate"],
    },
    "warm start (10 of 12 epochs), learning rate x10": WINNER_SCHEDULE,
    # over-clustering then merging (the winner's schedule): only the 8 finest parts are trained; levels 1 and 2 are
    # their unions, closest mean x0 prediction first (merge_rule.py: the trained model's 8 parts merged to 4 beat its
    # trained level 2)
    "K = 8 merged to 2 and 4, warm start (10 of 12 epochs), learning rate x10": {
        "num_parts": [8],
        "feature_stages": [3],  # the stage level 3 reads in the defaults
        "merged_parts": [2, 4],
        "merge_by": "denoised",
        **WINNER_SCHEDULE,
    },
    # the winner above with level 1 trained (stage 1, as the paper's level 1) instead of merged: merged level 1 scored
    # below trained level 1 (merge_rule_cells.json) and its boundary is further off
    "K = 2 and 8 trained, 4 merged, warm start (10 of 12 epochs), learning rate x10": {
        **TRAINED_2_AND_8,
        **WINNER_SCHEDULE,
    },
    # the same without the nesting term, the one term that ties the trained level 1 to the 8 parts
    "K = 2 and 8 trained, 4 merged, lambda_nest=0, warm start (10 of 12 epochs), learning rate x10": {
        **TRAINED_2_AND_8,
        "lambda_nest": 0.0,
        **WINNER_SCHEDULE,
    },
    # a first combination of the levers measured above: no nesting (level 2 keeps its parts), usage, warm start
    "lambda_nest=0 + part usage + warm start": {"lambda_nest": 0.0, "lambda_usage": 1.0, "warm_start_epochs": 2},
}
BRAIN_VARIANTS: dict[str, dict[str, object]] = {
    "defaults": {},  # BRAIN_BASE: train.json + brain.json before the study
    "paper": read_config("structure_discovery", "paper.json"),
    # over-clustering then merging: the finest parts merged, closest mean FLAIR first (HierarchicalSegmenter)
    "K = 6 merged to 3": {"num_parts": [6], "merged_parts": [3]},
    "K = 8 merged to 3": {"num_parts": [8], "merged_parts": [3]},
    "K = 6 merged to 3, lambda_f=0": {"num_parts": [6], "merged_parts": [3], "lambda_f": 0.0},
    "K = 6 merged to 3, part usage term": {"num_parts": [6], "merged_parts": [3], "lambda_usage": 1.0},
    "K = 6 merged to 3, warm start (2 epochs)": {"num_parts": [6], "merged_parts": [3], "warm_start_epochs": 2},
    "K = 6 merged to 3, part separation": {"num_parts": [6], "merged_parts": [3], "lambda_separation": 1.0},
    "K = 6 merged to 3, lambda_f=0 + part usage": {
        "num_parts": [6],
        "merged_parts": [3],
        "lambda_f": 0.0,
        "lambda_usage": 1.0,
    },
    # the optimisation budget: 120 steps leave the 6 parts soft (mean max probability 0.5)
    "K = 6 merged to 3, learning rate x10": {
        "num_parts": [6],
        "merged_parts": [3],
        "learning_rate": 10 * STUDY_BASE["learning_rate"],
    },
    "K = 6 merged to 3, epochs x3": {"num_parts": [6], "merged_parts": [3]},
    # does the segmenter reproduce the x0 + k-means partition when fitted longer? (twice the epochs, 10 of warm start)
    "K = 6 merged to 3, warm start (10 of 12 epochs), learning rate x10": {
        "num_parts": [6],
        "merged_parts": [3],
        **WINNER_SCHEDULE,
    },
    # the warm start at the tenfold rate, whose 40 steps fit its targets more closely
    "K = 6 merged to 3, warm start (2 epochs), learning rate x10": {
        "num_parts": [6],
        "merged_parts": [3],
        "warm_start_epochs": 2,
        "learning_rate": 10 * STUDY_BASE["learning_rate"],
    },
    "part usage term": {"lambda_usage": 1.0},
    "warm start (2 epochs)": {"warm_start_epochs": 2},
}
# the brain recipe the brain variants start from (brain.json before the study made its winner the default)
BRAIN_BASE = {**STUDY_SCHEDULE, "num_parts": [3], "merged_parts": [], "merge_by": "image"}
DATASETS = {  # what --dataset runs on: data, bundle overlays, base overrides, diffusion weights, variants, results
    "cells": {
        "data": WORK / "phantoms_regular",
        "overlays": (),
        "base": STUDY_BASE,
        "diffusion_ckpt": MODELS / "diffusion_pretraining" / "model.pt",
        "variants": VARIANTS,
        "out": RESULTS / "discovery_variants.json",
    },
    "brains": {
        "data": WORK / "brain" / "brains",
        "overlays": ("brain.json",),
        "base": BRAIN_BASE,
        "diffusion_ckpt": MODELS / "brain" / "diffusion_pretraining" / "model.pt",
        "variants": BRAIN_VARIANTS,
        "out": RESULTS / "discovery_variants_brains.json",
    },
}
EPOCH_FACTORS = {  # variants trained longer than --max-epochs
    "epochs x2": 2,
    "K = 6 merged to 3, epochs x3": 3,
    "K = 6 merged to 3, warm start (10 of 12 epochs), learning rate x10": 2,
    "warm start (10 of 12 epochs), learning rate x10": 2,
    "K = 8 merged to 2 and 4, warm start (10 of 12 epochs), learning rate x10": 2,
    "K = 2 and 8 trained, 4 merged, warm start (10 of 12 epochs), learning rate x10": 2,
    "K = 2 and 8 trained, 4 merged, lambda_nest=0, warm start (10 of 12 epochs), learning rate x10": 2,
}
BRAIN_PHANTOMS = 60  # the brain phantoms of benchmarks/brain.py and probe.py (seed 0)


def dataset_folder(dataset: str, folder: Path) -> tuple[Path, str]:
    """The phantoms of ``dataset`` in ``folder`` (generated when absent) and the name of their full datalist."""
    if dataset == "cells":
        return cell_phantoms(folder, "regular"), "datalist.json"
    datalist, _ = brain_phantoms(folder, BRAIN_PHANTOMS)
    return folder, datalist.name


def reduced_datalist(data: Path, full_name: str) -> str:
    """Write ``datalist_variants.json`` (the first volumes of each split of ``full_name``, ``REDUCED_SPLITS``) and
    return its name."""
    full = json.loads((data / full_name).read_text())
    reduced = {split: full[split][:count] for split, count in REDUCED_SPLITS.items()}
    name = "datalist_variants.json"
    (data / name).write_text(json.dumps(reduced, indent=2) + "\n")
    return name


def study_folder(workdir: str | Path, dataset: str, max_epochs: int) -> Path:
    """The folder of a study's runs and shared feature cache."""
    suffix = "" if dataset == "cells" else f"_{dataset}"  # the cell study's folder as it was
    return Path(workdir).resolve() / f"epochs{max_epochs}{suffix}"


def variant_folder(work: Path, name: str, seed: int = 0) -> Path:
    """The run folder of variant ``name`` trained with ``seed`` in the study folder ``work`` (seed 0: no suffix, the
    folders of the runs made before the study had seeds)."""
    return work / (name.replace(" ", "_").replace("=", "") + (f"_seed{seed}" if seed else ""))


def variant_overlays(dataset: str, name: str) -> tuple[str, ...]:
    """The bundle configs a variant layers on ``train.json``."""
    return (("paper.json",) if name == "paper" else ()) + DATASETS[dataset]["overlays"]


def run_variant(name: str, data: Path, datalists: tuple[str, str], work: Path, args: argparse.Namespace) -> dict:
    """Train and evaluate one variant (each step reused when it finished before); ``datalists``: the reduced one
    trained on and the full one scored on."""
    spec = DATASETS[args.dataset]
    epochs = args.max_epochs * EPOCH_FACTORS.get(name, 1)
    common = {
        "dataset_dir": str(data),
        "diffusion_ckpt": str(spec["diffusion_ckpt"]),
        "datalist_name": datalists[0],
        "feature_cache_storage": "disk",
        "feature_cache#cache_dir": str(work / "feature_cache"),
    }
    overrides = {**common, **spec["base"], **spec["variants"][name], "max_epochs": epochs, "seed": args.seed}
    overlays = variant_overlays(args.dataset, name)
    folder = variant_folder(work, name, args.seed)
    configs = bundle_config("structure_discovery", "train.json", *overlays)
    ckpt, timing = train_once(configs, folder / "train", {**overrides, "overwrite": True})
    evaluation = {**overrides, "datalist_name": datalists[1], "ckpt_path": str(ckpt), "eval_split": args.split}
    evaluation["compare_baselines"] = name == args.variants[0]
    report = evaluate_discovery(overlays, evaluation, folder / f"eval_{args.split}")[0]
    return {
        "overrides": spec["variants"][name],
        "command": log_beside(folder / "train").read_text().splitlines()[0],
        "training": timing,
        "report": report,
    }


def level_means(report: dict, column: str) -> list[float]:
    return [level.get("mean", float("nan")) for level in report["matched_dice"][column]]


def table(results: dict, max_epochs: int, split: str) -> str:
    lines = [
        f"Variants (matched Dice on the {split} volumes; trained on 40 volumes, {max_epochs} epochs)",
        f"  {'variant':<28} Dice per level   HD95 l1   parts used per level   train min",
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
    parser.add_argument("--dataset", default="cells", choices=list(DATASETS))
    parser.add_argument("--variants", nargs="+", help="default: every variant of the dataset")
    parser.add_argument("--workdir", default=str(WORK / "variants"))
    parser.add_argument("--data", help="the phantoms' folder (default: that of --dataset in benchmarks/.work)")
    parser.add_argument("--max-epochs", type=int, default=6)
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    parser.add_argument("--seed", type=int, default=0, help="the training seed (initialisation, batch order, draws)")
    parser.add_argument("--out", help="default: benchmarks/results/discovery_variants[_brains].json")
    args = parser.parse_args()
    spec = DATASETS[args.dataset]
    args.variants = args.variants or list(spec["variants"])
    if unknown := [name for name in args.variants if name not in spec["variants"]]:
        parser.error(f"--variants {unknown} are not variants of {args.dataset}; they are {list(spec['variants'])}.")
    args.out = args.out or str(spec["out"])
    work = study_folder(args.workdir, args.dataset, args.max_epochs)
    data, full_datalist = dataset_folder(args.dataset, Path(args.data or spec["data"]).resolve())
    datalists = (reduced_datalist(data, full_datalist), full_datalist)
    start = time.perf_counter()
    results = {}
    for name in args.variants:
        results[name] = run_variant(name, data, datalists, work, args)
        first = results[args.variants[0]]["report"]
        summary = {
            **environment(),
            "protocol": {
                "splits": REDUCED_SPLITS,
                "scored_split": args.split,
                "scored_volumes": len(json.loads((data / full_datalist).read_text())[args.split]),
                "max_epochs": args.max_epochs,
                "seed": args.seed,
                "defaults": "bundles/structure_discovery/configs/train.json"
                + "".join(f" + {overlay}" for overlay in spec["overlays"]),
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

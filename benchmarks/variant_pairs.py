"""Is a variant's gain over another inside the noise? Paired per-volume differences of the variant study (issue 31).

``benchmarks/discovery_variants.py`` scores every variant on the same validation volumes; its evaluations keep each
volume's matched Dice per level (``matched_dice_l<level>_raw.csv``). For each ``--variants`` entry this takes, level
by level and volume by volume, its Dice minus that of ``--reference`` (joined on the file name), with the bootstrap
95 % interval of the mean difference (``monai_ext.metrics.paired_differences``) and the volumes where it is higher.
A difference whose interval holds 0 is inside the noise. With one training seed (``--seeds 0``, the default) the
interval covers the volumes, not a second training run. With several (each variant trained with
``discovery_variants.py --seed S``), each volume's Dice is first averaged over the seeds, and the file also keeps the
pairs of each seed and each variant's mean Dice per seed, so a difference can be read against the spread that the
training's random state alone makes.

    python benchmarks/variant_pairs.py --dataset cells --reference defaults \\
        --variants "warm start (10 of 12 epochs), learning rate x10" --workdir benchmarks/.work/variants
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from discovery_variants import DATASETS, study_folder, variant_folder
from steps import RESULTS, WORK
from summaries.common import paired_cell

from monai_ext.metrics import paired_differences
from monai_ext.provenance import environment, write_json


def per_volume_dice(evaluation: Path) -> list[dict[str, float]]:
    """Per level, each volume's matched Dice keyed by its file name, from an evaluation folder's raw metric files."""
    levels = []
    while (path := evaluation / f"matched_dice_l{len(levels) + 1}_raw.csv").is_file():
        with path.open() as handle:
            levels.append({row["filename"]: float(row["mean"]) for row in csv.DictReader(handle)})
    if not levels:
        raise FileNotFoundError(f"no matched_dice_l*_raw.csv in '{evaluation}'; run discovery_variants.py first.")
    return levels


def seed_mean(per_seed: list[list[dict[str, float]]]) -> list[dict[str, float]]:
    """Per level, each volume's Dice averaged over the seeds (the volumes every seed scored)."""
    levels = []
    for level in zip(*per_seed, strict=True):
        names = set.intersection(*(set(seed) for seed in level))
        levels.append({name: sum(seed[name] for seed in level) / len(level) for name in names})
    return levels


def paired_levels(variant: list[dict[str, float]], reference: list[dict[str, float]]) -> list[dict]:
    """Per level, the variant's Dice minus the reference's on the volumes both scored."""
    pairs = []
    for ours, theirs in zip(variant, reference, strict=True):
        names = sorted(ours.keys() & theirs.keys())
        pairs.append(paired_differences([ours[n] for n in names], [theirs[n] for n in names]))
    return pairs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="cells", choices=list(DATASETS))
    parser.add_argument("--reference", required=True, help="the variant the others are compared with")
    parser.add_argument("--variants", nargs="+", required=True)
    parser.add_argument("--workdir", default=str(WORK / "variants"))
    parser.add_argument("--max-epochs", type=int, default=6, help="the study's --max-epochs")
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds of every variant")
    parser.add_argument("--out", help="default: benchmarks/results/variant_pairs_<dataset>.json")
    args = parser.parse_args()
    known = DATASETS[args.dataset]["variants"]
    if unknown := [name for name in [args.reference, *args.variants] if name not in known]:
        parser.error(f"{unknown} are not variants of {args.dataset}; they are {list(known)}.")
    work = study_folder(args.workdir, args.dataset, args.max_epochs)
    names = [args.reference, *args.variants]
    scores = {
        seed: {name: per_volume_dice(variant_folder(work, name, seed) / f"eval_{args.split}") for name in names}
        for seed in args.seeds
    }
    means = {name: seed_mean([scores[seed][name] for seed in args.seeds]) for name in names}
    rows = {name: paired_levels(means[name], means[args.reference]) for name in args.variants}
    for name, levels in rows.items():
        print(f"{name} minus {args.reference}: " + " | ".join(paired_cell(p) for p in levels))
    out = args.out or str(RESULTS / f"variant_pairs_{args.dataset}.json")
    summary = {**environment(), "dataset": args.dataset, "split": args.split, "reference": args.reference}
    if len(args.seeds) > 1:
        summary["seeds"] = {
            str(seed): {
                "pairs": {n: paired_levels(scores[seed][n], scores[seed][args.reference]) for n in args.variants},
                "mean_dice": {n: [sum(level.values()) / len(level) for level in scores[seed][n]] for n in names},
            }
            for seed in args.seeds
        }
    write_json(out, {**summary, "pairs": rows}, overwrite=True)
    print(f"results written to {out}")


if __name__ == "__main__":
    main()

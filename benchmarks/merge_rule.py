"""Which values should ``merged_parts`` merge the finest parts by? (issue 31)

On the validation brains, a trained ``discovery_variants.py`` brain run's finest level (hardened) is merged to
``--parts`` parts closest means first (``monai_ext.transforms.merge_by_means``) by the mean of each part in the image
(what ``HierarchicalSegmenter`` merges by) and in the diffusion model's x0 prediction (the visual target), and scored
by whole-tumour matched Dice on the network's grid, beside the finest level itself. With ``--dataset cells`` and
``--weights`` (a cell run of the bundle's ``train.json``, e.g. the shipped ``models/model.pt``), the finest level
(K = 8) is merged the same ways to each coarser level's K and scored against that level's label, beside the level the
run trained for it: could the coarser levels be unions of the finest parts, as the merged k-means baselines are?

    python benchmarks/merge_rule.py --variant "K = 6 merged to 3, warm start (10 of 12 epochs), learning rate x10"
    python benchmarks/merge_rule.py --dataset cells --weights bundles/structure_discovery/models/model.pt \
        --data benchmarks/.work/phantoms_regular --volumes 20 --out benchmarks/results/merge_rule_cells.json
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from discovery_variants import DATASETS, study_folder, variant_folder
from monai.bundle import ConfigParser
from objective_gap import LevelScorer, load_network, on_grid, one_hot, validation_volumes, variant_parser
from steps import RESULTS, WORK

from monai_ext.metrics import finite_stats
from monai_ext.provenance import environment, write_json
from monai_ext.transforms import merge_by_means


def merged_dice(scorer: LevelScorer, finest: torch.Tensor, values: dict, parts: int, label: torch.Tensor) -> dict:
    """The Dice of the finest level (hardened) merged to ``parts`` parts by each of ``values``' part means."""
    labels = finest[0].argmax(0)
    return {by: scorer.dice(one_hot(merge_by_means(labels, v, parts)[0], parts), label) for by, v in values.items()}


def volume_rows(parser: ConfigParser, weights: Path, volumes: int, score: Callable[..., dict]) -> list[dict]:
    """Per validation volume, ``score(item, image, levels, values, scorer)`` of the network's levels and the values
    merged by (the image and the x0 prediction), printed as it goes."""
    network = load_network(parser, weights)
    network.eval()
    scorer = LevelScorer(parser, network)
    denoiser = parser.get_parsed_content("visual_denoiser")
    rows = []
    for record, item, image in validation_volumes(parser, volumes):
        with torch.no_grad():
            levels = network.split(network(image))
            values = {"image": image[0], "x0": denoiser(image)[0]}
        rows.append({"image": str(record["image"]), **score(item, image, levels, values, scorer)})
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in rows[-1].items()}, flush=True)
    return rows


def merge_scores(name: str, weights: Path, data: Path, volumes: int, parts: int) -> list[dict]:
    """Per validation brain: the finest level's Dice and that of its merges by the image and by x0."""

    def score(item: dict, image: torch.Tensor, levels: list, values: dict, scorer: LevelScorer) -> dict:
        label = on_grid(item["label"], image)
        merged = merged_dice(scorer, levels[-1], values, parts, label)
        return {"finest": scorer.dice(levels[-1], label)} | {f"merged by {by}": d for by, d in merged.items()}

    return volume_rows(variant_parser("brains", name, data), weights, volumes, score)


def cell_merge_scores(weights: Path, data: Path, volumes: int) -> list[dict]:
    """Per validation cell volume and coarser level: the trained level's Dice and that of the finest level merged to
    its K by the image and by x0."""
    parser = variant_parser("cells", "defaults", data)
    label_keys = parser.get_parsed_content("label_keys")

    def score(item: dict, image: torch.Tensor, levels: list, values: dict, scorer: LevelScorer) -> dict:
        row = {}
        for trained, key in zip(levels[:-1], label_keys, strict=False):
            label, k = on_grid(item[key], image), trained.shape[1]
            row[f"K = {k}: trained"] = scorer.dice(trained, label)
            merged = merged_dice(scorer, levels[-1], values, k, label)
            row |= {f"K = {k}: finest merged by {by}": d for by, d in merged.items()}
        return row

    return volume_rows(parser, weights, volumes, score)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["brains", "cells"], default="brains")
    parser.add_argument("--variant", help="brains: a brain variant of discovery_variants.py, trained")
    parser.add_argument("--weights", help="cells: the weights of a cell run of train.json")
    parser.add_argument("--data", default=str(DATASETS["cells"]["data"]), help="cells: the regular cell phantoms")
    parser.add_argument("--workdir", default=str(WORK / "variants"), help="discovery_variants.py's --workdir")
    parser.add_argument("--max-epochs", type=int, default=6, help="discovery_variants.py's --max-epochs")
    parser.add_argument("--volumes", type=int, default=10)
    parser.add_argument("--parts", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "merge_rule.json"))
    args = parser.parse_args()
    if args.dataset == "cells":
        if args.weights is None:
            parser.error("--dataset cells needs --weights.")
        rows = cell_merge_scores(Path(args.weights).resolve(), Path(args.data).resolve(), args.volumes)
        variant = args.weights
    else:
        if args.variant not in DATASETS["brains"]["variants"]:
            parser.error(f"--variant {args.variant!r} is not a brain variant of discovery_variants.py.")
        folder = variant_folder(study_folder(args.workdir, "brains", args.max_epochs), args.variant)
        data = Path(DATASETS["brains"]["data"]).resolve()
        rows = merge_scores(args.variant, folder / "train" / "model.pt", data, args.volumes, args.parts)
        variant = args.variant
    summary = {key: finite_stats([row[key] for row in rows]) for key in rows[0] if key != "image"}
    result = {**environment(), "dataset": args.dataset, "variant": variant, "dice": summary, "volumes": rows}
    write_json(args.out, result, overwrite=True)
    for key, stats in summary.items():
        print(f"{key:<18} {stats['mean']:.3f} ± {stats['sd']:.3f}")


if __name__ == "__main__":
    main()

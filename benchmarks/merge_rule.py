"""Which values should ``merged_parts`` merge the finest parts by? (issue 31)

On the validation brains, a trained ``discovery_variants.py`` brain run's finest level (hardened) is merged to
``--parts`` parts closest means first (``monai_ext.transforms.merge_by_means``) by the mean of each part in the image
(what ``HierarchicalSegmenter`` merges by) and in the diffusion model's x0 prediction (the visual target), and scored
by whole-tumour matched Dice on the network's grid, beside the finest level itself.

    python benchmarks/merge_rule.py --variant "K = 6 merged to 3, warm start (10 of 12 epochs), learning rate x10"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from discovery_variants import DATASETS, study_folder, variant_folder
from objective_gap import LevelScorer, load_network, on_grid, one_hot, validation_volumes, variant_parser
from steps import RESULTS, WORK

from monai_ext.metrics import finite_stats
from monai_ext.provenance import environment, write_json
from monai_ext.transforms import merge_by_means


def merge_scores(name: str, weights: Path, data: Path, volumes: int, parts: int) -> list[dict]:
    """Per validation brain: the finest level's Dice and that of its merges by the image and by x0."""
    parser = variant_parser("brains", name, data)
    network = load_network(parser, weights)
    network.eval()
    scorer = LevelScorer(parser, network)
    denoiser = parser.get_parsed_content("visual_denoiser")
    rows = []
    for record, item, image in validation_volumes(parser, volumes):
        label = on_grid(item["label"], image)
        with torch.no_grad():
            finest = network.split(network(image))[-1]
            values = {"image": image[0], "x0": denoiser(image)[0]}
        row = {"image": str(record["image"]), "finest": scorer.dice(finest, label)}
        for by, v in values.items():
            merged = merge_by_means(finest[0].argmax(0), v, parts)[0]
            row[f"merged by {by}"] = scorer.dice(one_hot(merged, parts), label)
        rows.append(row)
        print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", required=True, help="a brain variant of discovery_variants.py, trained")
    parser.add_argument("--workdir", default=str(WORK / "variants"), help="discovery_variants.py's --workdir")
    parser.add_argument("--max-epochs", type=int, default=6, help="discovery_variants.py's --max-epochs")
    parser.add_argument("--volumes", type=int, default=10)
    parser.add_argument("--parts", type=int, default=3)
    parser.add_argument("--out", default=str(RESULTS / "merge_rule.json"))
    args = parser.parse_args()
    if args.variant not in DATASETS["brains"]["variants"]:
        parser.error(f"--variant {args.variant!r} is not a brain variant of discovery_variants.py.")
    weights = variant_folder(study_folder(args.workdir, "brains", args.max_epochs), args.variant) / "train" / "model.pt"
    rows = merge_scores(args.variant, weights, Path(DATASETS["brains"]["data"]).resolve(), args.volumes, args.parts)
    summary = {key: finite_stats([row[key] for row in rows]) for key in rows[0] if key != "image"}
    write_json(args.out, {**environment(), "variant": args.variant, "dice": summary, "volumes": rows}, overwrite=True)
    for key, stats in summary.items():
        print(f"{key:<18} {stats['mean']:.3f} ± {stats['sd']:.3f}")


if __name__ == "__main__":
    main()

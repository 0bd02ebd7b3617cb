"""What the parts of a trained brain segmenter hold (issue 31): per part of the trained (finest) level, its soft and
hard share of the volume, its probability-weighted mean intensity and its mean probability inside the brain, on the
first validation brains. Tells a part that found a structure from a near-copy of another part (same mean, shared
voxels).

    python benchmarks/part_contents.py --run benchmarks/.work/variants/epochs6_brains/K__6_merged_to_3,_lambda_f0
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser
from objective_gap import load_network, validation_volumes
from steps import BUNDLES, RESULTS, WORK, bundle_config

from monai_ext.provenance import environment, write_json

BRAIN_SHARE = 0.05  # an image voxel above this (min-max scaled FLAIR) counts as inside the brain


def part_contents(run: Path, data: Path, volumes: int) -> list[dict]:
    """Per validation brain and part, its shares, mean intensity and probability inside the brain."""
    overrides = json.loads((run / "train" / "model.json").read_text())["settings"]
    parser = ConfigParser()
    parser.read_config(bundle_config("structure_discovery", "train.json", "brain.json"))
    parser.update(
        {
            "bundle_root": str(BUNDLES / "structure_discovery"),
            "dataset_dir": str(data),
            "device": "cpu",
            **overrides,
        }
    )
    network = load_network(parser, run / "train" / "model.pt").eval()
    rows = []
    for record, _, image in validation_volumes(parser, volumes):
        with torch.no_grad():
            finest = network.split(network(image))[-1][0]
        intensity, inside = image[0, 0], image[0, 0] > BRAIN_SHARE
        hard = np.bincount(finest.argmax(0).flatten().numpy(), minlength=finest.shape[0]) / intensity.numel()
        parts = [
            {
                "soft_share": round(float(p.mean()), 4),
                "hard_share": round(float(h), 4),
                "mean_intensity": round(float((p * intensity).sum() / p.sum()), 4),
                "probability_inside_brain": round(float(p[inside].mean()), 4),
            }
            for p, h in zip(finest, hard, strict=True)
        ]
        rows.append({"image": str(record["image"]), "parts": parts})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", required=True, help="a discovery_variants.py run folder (with train/model.pt)")
    parser.add_argument("--data", default=str(WORK / "brain" / "brains"))
    parser.add_argument("--volumes", type=int, default=2)
    parser.add_argument("--out", default=str(RESULTS / "part_contents.json"))
    args = parser.parse_args()
    rows = part_contents(Path(args.run).resolve(), Path(args.data).resolve(), args.volumes)
    write_json(args.out, {**environment(), "run": args.run, "volumes": rows}, overwrite=True)
    for row in rows:
        print(row["image"])
        for k, part in enumerate(row["parts"]):
            print(f"  part {k}: " + ", ".join(f"{name} {value}" for name, value in part.items()))


if __name__ == "__main__":
    main()

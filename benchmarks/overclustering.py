"""Over-clustering then merging on the brain phantoms: does k-means find the tumour with more parts? (issue 31)

k-means with K = 3 on FLAIR finds the whole tumour in about half of the brains: with three parts it splits the
background and the tissues first. This clusters each input of ``benchmarks/probe.py`` (the image the segmenter sees,
the same smoothed as ``smooth_kmeans`` does, the diffusion model's x0 prediction, the stage-2 features, z-scored)
with K_fine = 3 .. 8 parts and merges them to 3 (``monai_ext.transforms.merge_by_means``: closest means first, the
rule ``merged_parts`` of the structure-discovery configs uses), beside Ward's linkage (the merge that least raises
the k-means objective, which weighs a merge by the parts' sizes). Whole-tumour matched Dice on the validation brains
(the test split is not read), as ``probe.py`` scores it. Labels are used for scoring only.

    python benchmarks/overclustering.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from probe import DATASETS, Inputs, bundle_parser, matched_dice, on_label_grid
from steps import RESULTS, TUMOUR, WORK, brain_phantoms
from tqdm import tqdm

from monai_ext.baselines.evaluate import SMOOTHING_SIGMA
from monai_ext.baselines.kmeans import gaussian_smooth, kmeans_segment
from monai_ext.data.datalist import load_datalist
from monai_ext.metrics import finite_stats
from monai_ext.provenance import environment, write_json
from monai_ext.transforms import merge_by_means

FINE_PARTS = (3, 4, 5, 6, 8)
PARTS = 3  # background, brain, tumour: Table 3's K
LINKAGES = ("centroid", "ward")


def ward_merge(labels: np.ndarray, values: np.ndarray, num_parts: int) -> np.ndarray:
    """Ward's linkage of the parts of ``labels`` by their means of ``values`` (C, *spatial), down to ``num_parts``."""
    flat, points = labels.reshape(-1), values.reshape(values.shape[0], -1).T
    groups = {int(k): [int(k)] for k in np.unique(flat)}
    sizes = {k: float((flat == k).sum()) for k in groups}
    means = {k: points[flat == k].mean(0) for k in groups}
    while len(groups) > num_parts:
        pairs = [(a, b) for a in groups for b in groups if a < b]
        cost = {p: sizes[p[0]] * sizes[p[1]] / (sizes[p[0]] + sizes[p[1]]) * ((means[p[0]] - means[p[1]]) ** 2).sum()
                for p in pairs}  # fmt: skip
        a, b = min(pairs, key=cost.__getitem__)
        means[a] = (sizes[a] * means[a] + sizes[b] * means[b]) / (sizes[a] + sizes[b])
        sizes[a] += sizes.pop(b)
        groups[a] += groups.pop(b)
        del means[b]
    lookup = np.zeros(int(flat.max()) + 1, dtype=np.int64)
    for index, members in enumerate(groups.values()):
        lookup[members] = index
    return lookup[labels]


def candidates(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inputs clustered, each (C, *grid)."""
    stage = values["stage 2"]
    flat = stage.reshape(stage.shape[0], -1)
    z_scored = (flat - flat.mean(1, keepdims=True)) / (flat.std(1, keepdims=True) + 1e-8)
    return {
        "image": values["image"],
        f"image smoothed (sigma {SMOOTHING_SIGMA:g})": gaussian_smooth(values["image"][0], SMOOTHING_SIGMA)[None],
        "x0": values["x0"],
        "stage 2 (z-scored)": z_scored.reshape(stage.shape),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(WORK / "brain" / "brains"))
    parser.add_argument("--score", type=int, default=10, help="validation brains scored")
    parser.add_argument("--out", default=str(RESULTS / "overclustering.json"))
    args = parser.parse_args()
    start = time.perf_counter()
    data = Path(args.data).resolve()
    brain_phantoms(data, 60)
    config = bundle_parser("brains", data, DATASETS["brains"]["diffusion_ckpt"], ["label"])
    config["feature_stages"] = [[2]]
    inputs = Inputs(config)
    transform = config.get_parsed_content("validate#preprocessing")
    records = load_datalist(config.get_parsed_content("datalist"), "validation")[: args.score]
    scores: dict[str, dict[str, list[float]]] = {}
    for record in tqdm(records, desc="over-clustering: validation brains"):
        item = transform(record)
        label = np.asarray(item["label"][0])
        for name, values in candidates(inputs(item["image"], str(record["image"]))).items():
            for fine in FINE_PARTS:
                clusters = kmeans_segment(values, fine, channel_first=True)
                merged = {
                    "centroid": merge_by_means(torch.as_tensor(clusters), torch.as_tensor(values), PARTS)[0].numpy(),
                    "ward": ward_merge(clusters, values, PARTS),
                }
                for linkage in LINKAGES if fine > PARTS else LINKAGES[:1]:
                    one_hot = np.eye(PARTS, dtype=np.float32)[merged[linkage]].transpose(3, 0, 1, 2)
                    dice = matched_dice(on_label_grid(one_hot, label.shape), label, [TUMOUR])
                    scores.setdefault(name, {}).setdefault(f"K={fine} {linkage}", []).append(dice)
    summary = {
        **environment(),
        "volumes": [str(r["image"]) for r in records],
        "parts": PARTS,
        "dice": {name: {row: finite_stats(v) for row, v in rows.items()} for name, rows in scores.items()},
        "above_half": {
            name: {row: int(np.sum(np.array(v) > 0.5)) for row, v in rows.items()} for name, rows in scores.items()
        },
        "per_volume": scores,
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    write_json(args.out, summary, overwrite=True)
    for name, rows in summary["dice"].items():
        for row, stats in rows.items():
            print(
                f"{name:<28} {row:<14} {stats['mean']:.3f} ± {stats['sd']:.3f}",
                f"> 0.5: {summary['above_half'][name][row]}",
            )
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

"""Linear probes: how much of each target a per-voxel linear classifier finds in each input structure discovery
could cluster (issue 31). Labels are used here for diagnosis only.

A probe is a logistic regression on z-scored voxel values, fitted on ``--train`` training volumes and scored on
``--score`` validation volumes (the test split is not read). Per training volume it sees every voxel of each class
up to ``--per-class``, weighted back to the class's true count, so it estimates the real posterior; its argmax is
brought to the label grid as the bundle's evaluation brings the segmenter's output (trilinear, then argmax) and
scored with the evaluation's matched Dice. Beside each probe, k-means on the same input and volumes with the parts
the bundle uses for that target (K = 2 / 4 / 8 for the cell levels, 3 for the whole tumour as in Table 3, one part
per class of the tissue map): where the probe is high and k-means low, the target is in the input but is not one
of its clusters, and the gap is the objective's; where the probe is low no label-free loss on that input finds it.

Inputs, all from the structure-discovery bundle's own configs (``train.json`` with ``brain.json`` for brains): the
image the segmenter sees, the diffusion model's x0 prediction (``visual_denoiser``), each decoder stage of the
feature cache (its draws averaged) upsampled to the image grid, and all stages concatenated. Targets: the three
hierarchy levels of the regular cell phantoms (``cell_phantoms``) or the whole tumour and the tissue map
(background, CSF, grey and white matter, tumour) of the brain phantoms (``brain_phantoms``, n = 60).

    python benchmarks/probe.py --dataset cells
    python benchmarks/probe.py --dataset brains
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from monai.bundle import ConfigParser
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from steps import (
    BUNDLES,
    CELL_LEVEL_PARTS,
    NUM_PARTS,
    RESULTS,
    TUMOUR,
    WORK,
    brain_phantoms,
    bundle_config,
    cell_phantoms,
)
from tqdm import tqdm

from monai_ext.baselines.kmeans import kmeans_segment
from monai_ext.data.brain import TISSUE_LABELS
from monai_ext.data.datalist import load_datalist
from monai_ext.metrics import MatchedDiceMetric, finite_stats
from monai_ext.networks import DiffusionFeatureExtractor
from monai_ext.provenance import environment, write_json

BUNDLE = BUNDLES / "structure_discovery"
DATASETS = {
    "cells": {
        "overlays": (),
        "diffusion_ckpt": BUNDLE / "models" / "diffusion_pretraining" / "model.pt",
        "targets": {f"level {level}": f"label_l{level}" for level in range(1, len(CELL_LEVEL_PARTS) + 1)},
        "kmeans_parts": {f"level {level}": k for level, k in enumerate(CELL_LEVEL_PARTS, start=1)},
        "report_classes": {},
    },
    "brains": {
        "overlays": ("brain.json",),
        "diffusion_ckpt": BUNDLE / "models" / "brain" / "diffusion_pretraining" / "model.pt",
        "targets": {"whole tumour": "label", "tissues": "tissue"},
        "kmeans_parts": {"whole tumour": NUM_PARTS, "tissues": len(TISSUE_LABELS)},
        "report_classes": {"whole tumour": [TUMOUR]},
    },
}


def bundle_parser(dataset: str, data: Path, diffusion_ckpt: Path, label_keys: list[str]) -> ConfigParser:
    """The structure-discovery training config of ``dataset`` reading ``label_keys`` in its validation split."""
    parser = ConfigParser()
    parser.read_config(bundle_config("structure_discovery", "train.json", *DATASETS[dataset]["overlays"]))
    parser.update(
        {
            "bundle_root": str(BUNDLE),
            "dataset_dir": str(data),
            "diffusion_ckpt": str(diffusion_ckpt),
            "label_keys": label_keys,
            "validation_label_keys": label_keys,  # every target, not only the labels of the trained levels
            "device": "cpu",
        }
    )
    stages = len(parser.get_parsed_content("diffusion_unet").up_blocks)
    parser["feature_stages"] = [list(range(1, stages + 1))]
    return parser


class Inputs:
    """Every candidate input of one volume, as (C, *grid) arrays on the segmenter's grid."""

    def __init__(self, parser: ConfigParser) -> None:
        self.cache = parser.get_parsed_content("feature_cache")
        self.denoiser = parser.get_parsed_content("visual_denoiser")
        self.stages = self.cache.extractor.stages

    @torch.no_grad()
    def __call__(self, image: torch.Tensor, key: str) -> dict[str, np.ndarray]:
        x = image[None].float()
        draws = [self.cache.native(x, [key], draw=d) for d in range(self.cache.num_draws)]
        size = x.shape[2:]
        stage = {
            s: DiffusionFeatureExtractor.upsample([torch.stack([d[s] for d in draws]).mean(0)], size)
            for s in self.stages
        }
        inputs = {"image": x[0], "x0": self.denoiser(x)[0]}
        inputs |= {f"stage {s}": stage[s][0] for s in self.stages}
        inputs[f"stages {self.stages[0]}-{self.stages[-1]}"] = torch.cat([stage[s][0] for s in self.stages])
        return {name: value.numpy() for name, value in inputs.items()}


def chosen(values: dict[str, np.ndarray], names: list[str] | None) -> dict[str, np.ndarray]:
    """The inputs named by ``--inputs`` (all when None); an unknown name is an error naming the inputs there are."""
    if names is None:
        return values
    if unknown := set(names) - set(values):
        raise ValueError(f"--inputs {sorted(unknown)} are not inputs here; the inputs are {list(values)}.")
    return {name: values[name] for name in names}


def on_label_grid(scores: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    """Per-class scores (K, *net grid) brought to ``grid`` trilinearly, then the argmax label map."""
    resized = F.interpolate(torch.as_tensor(scores, dtype=torch.float32)[None], size=grid, mode="trilinear")
    return resized[0].argmax(0).numpy()


def resized_labels(label: np.ndarray, grid: tuple[int, ...]) -> np.ndarray:
    """A label map brought to the segmenter's grid by nearest neighbour (where the probe's training voxels lie)."""
    resized = F.interpolate(torch.as_tensor(label, dtype=torch.float32)[None, None], size=grid, mode="nearest")
    return resized[0, 0].numpy().astype(np.int64)


def sample(values: np.ndarray, label: np.ndarray, per_class: int, rng: np.random.Generator) -> tuple:
    """Up to ``per_class`` voxels of each class, with weights restoring each class's true count."""
    points, targets, weights = [], [], []
    flat_values, flat_label = values.reshape(values.shape[0], -1).T, label.ravel()
    for c in np.unique(flat_label):
        where = np.flatnonzero(flat_label == c)
        chosen = rng.choice(where, size=min(per_class, where.size), replace=False)
        points.append(flat_values[chosen])
        targets.append(np.full(chosen.size, c))
        weights.append(np.full(chosen.size, where.size / chosen.size))
    return np.concatenate(points), np.concatenate(targets), np.concatenate(weights)


def matched_dice(parts: np.ndarray, label: np.ndarray, report_classes: list[int] | None) -> float:
    metric = MatchedDiceMetric(report_classes=report_classes)
    return float(metric(torch.as_tensor(parts)[None, None], torch.as_tensor(label.astype(np.int64))[None, None])[0, 0])


def probe_dataset(dataset: str, data: Path, diffusion_ckpt: Path, args: argparse.Namespace) -> dict:
    """Probe and k-means Dice per target and input (mean ± sd over the scored volumes)."""
    spec = DATASETS[dataset]
    targets = spec["targets"]
    parser = bundle_parser(dataset, data, diffusion_ckpt, list(targets.values()))
    inputs = Inputs(parser)
    transform = parser.get_parsed_content("validate#preprocessing")
    datalist = parser.get_parsed_content("datalist")
    splits = {"fit": load_datalist(datalist, "training")[: args.train], "score": load_datalist(datalist, "validation")}
    splits["score"] = splits["score"][: args.score]
    rng = np.random.default_rng(0)
    fit: dict[tuple[str, str], list] = {}
    for record in tqdm(splits["fit"], desc=f"{dataset}: probe training volumes"):
        item = transform(record)
        values = inputs(item["image"], str(record["image"]))
        grid = tuple(item["image"].shape[1:])
        for t, target in enumerate(targets):
            label = resized_labels(np.asarray(item["label"][t]), grid)
            for name, value in chosen(values, args.inputs).items():
                fit.setdefault((target, name), []).append(sample(value, label, args.per_class, rng))
    probes = {}
    for (target, name), samples in tqdm(fit.items(), desc=f"{dataset}: fitting probes"):
        points, classes, weights = (np.concatenate(column) for column in zip(*samples, strict=True))
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
        probes[target, name] = model.fit(points, classes, logisticregression__sample_weight=weights)
    scores: dict[str, dict[str, dict[str, list[float]]]] = {}
    for record in tqdm(splits["score"], desc=f"{dataset}: scoring volumes"):
        item = transform(record)
        values = inputs(item["image"], str(record["image"]))
        for t, target in enumerate(targets):
            label = np.asarray(item["label"][t])
            parts = spec["kmeans_parts"][target]
            report = spec["report_classes"].get(target)
            for name, value in chosen(values, args.inputs).items():
                model = probes[target, name]
                posterior = model.predict_proba(value.reshape(value.shape[0], -1).T).T
                posterior = posterior.reshape(-1, *value.shape[1:])
                row = scores.setdefault(target, {}).setdefault(name, {"probe": [], "kmeans": []})
                row["probe"].append(matched_dice(on_label_grid(posterior, label.shape), label, report))
                clusters = kmeans_segment(value, parts, channel_first=True)
                one_hot = np.eye(parts, dtype=np.float32)[clusters].transpose(-1, *range(clusters.ndim))
                row["kmeans"].append(matched_dice(on_label_grid(one_hot, label.shape), label, report))
    return {
        "volumes": {split: [str(r["image"]) for r in records] for split, records in splits.items()},
        "scores": {
            target: {name: {column: finite_stats(v) for column, v in row.items()} for name, row in per_input.items()}
            for target, per_input in scores.items()
        },
        "per_volume": scores,
    }


def table(result: dict) -> str:
    lines = ["Linear probe / k-means matched Dice (mean ± sd over the scored validation volumes)"]
    for target, per_input in result["scores"].items():
        lines.append(f"  {target}:")
        for name, row in per_input.items():
            cells = "   ".join(f"{c} {row[c]['mean']:.3f} ± {row[c]['sd']:.3f}" for c in ("probe", "kmeans"))
            lines.append(f"    {name:<12} {cells}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=list(DATASETS), required=True)
    parser.add_argument("--diffusion-ckpt", default=None, help="probe this diffusion checkpoint (default: shipped)")
    parser.add_argument("--train", type=int, default=6, help="training volumes the probes are fitted on")
    parser.add_argument("--score", type=int, default=10, help="validation volumes they are scored on")
    parser.add_argument("--per-class", type=int, default=4000, help="voxels per class and training volume")
    parser.add_argument("--inputs", nargs="+", default=None, help="probe only these inputs (e.g. x0 'stage 2')")
    parser.add_argument("--workdir", default=str(WORK))
    parser.add_argument("--out", default=None, help="default: benchmarks/results/probe_<dataset>.json")
    args = parser.parse_args()
    torch.set_num_threads(min(2, torch.get_num_threads()))
    work = Path(args.workdir).resolve()
    if args.dataset == "cells":
        data = cell_phantoms(work / "phantoms_regular", "regular")
    else:
        data = brain_phantoms(work / "brain" / "brains", 60)[0].parent
    diffusion_ckpt = Path(args.diffusion_ckpt or DATASETS[args.dataset]["diffusion_ckpt"]).resolve()
    start = time.perf_counter()
    result = probe_dataset(args.dataset, data, diffusion_ckpt, args)
    summary = {
        **environment(),
        "protocol": {
            "dataset": args.dataset,
            "data": str(data),
            "diffusion_ckpt": str(diffusion_ckpt),
            "train_volumes": args.train,
            "scored_volumes": args.score,
            "per_class": args.per_class,
            "inputs": args.inputs,
        },
        **result,
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    out = args.out or str(RESULTS / f"probe_{args.dataset}.json")
    write_json(out, summary, overwrite=True)
    print(table(result))
    print(f"results written to {out}")


if __name__ == "__main__":
    main()

"""Is the objective or its optimisation what limits a trained discovery segmenter (issue 31)?

On the first validation volumes of a ``discovery_variants.py`` run, per trained level: the label-free loss of eq. 4
as that run weighs it (its consistency terms lambda_v C(x0) + lambda_f C(phi); phi the level's feature stages,
averaged over noise draws) and the matched Dice, for the network's soft masks, the same masks hardened (argmax),
and two hard partitions with the level's K: k-means of the visual target (the diffusion model's x0 prediction by
default) and k-means of the level's features. With ``merged_parts`` each partition is also merged as the segmenter
merges its own (closest mean image first) and scored at the coarsest merged level (the brains' whole tumour at
K = 3). A k-means partition with a lower loss than the network's masks means the optimiser, not the objective,
stops short; if that partition also has the higher Dice, reaching the objective's minimum would find the structure.
The invariance term is left out: a hard partition of x0 is nearly unchanged by x0^gamma.

    python benchmarks/objective_gap.py --dataset brains --variant "K = 6 merged to 3"
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from discovery_variants import DATASETS, study_folder, variant_folder, variant_overlays
from monai.bundle import ConfigParser
from steps import BUNDLES, RESULTS, WORK, bundle_config

from monai_ext.baselines.kmeans import kmeans_segment
from monai_ext.data.datalist import load_datalist
from monai_ext.engines.discovery import level_stages
from monai_ext.metrics import MatchedDiceMetric
from monai_ext.networks import UpsampledFeatures
from monai_ext.provenance import environment, write_json


def variant_parser(dataset: str, name: str, data: Path) -> ConfigParser:
    """The bundle config variant ``name`` of ``dataset`` trained with, on the CPU, features recomputed."""
    parser = ConfigParser()
    parser.read_config(bundle_config("structure_discovery", "train.json", *variant_overlays(dataset, name)))
    parser.update(
        {
            "bundle_root": str(BUNDLES / "structure_discovery"),
            "dataset_dir": str(data),
            "device": "cpu",
            "use_feature_cache": False,
            **DATASETS[dataset]["base"],
            **DATASETS[dataset]["variants"][name],
            "network_def#merged_parts": "@merged_parts",  # as evaluate.json builds it
            "validation_label_keys": "@label_keys",  # the labels of every level, merged ones included
        }
    )
    return parser


def one_hot(labels: np.ndarray, num_parts: int) -> torch.Tensor:
    """(1, K, *spatial) float one-hot masks of a label map."""
    return torch.nn.functional.one_hot(torch.as_tensor(labels), num_parts).movedim(-1, 0)[None].float()


class LevelScorer:
    """The weighted consistency terms and the matched Dice of one level's masks and, with ``merged_parts``, of
    their coarsest merged level (see the module docstring)."""

    def __init__(self, parser: ConfigParser, network: torch.nn.Module) -> None:
        self.loss = parser.get_parsed_content("loss")
        self.network = network
        self.report_classes = parser.get("report_classes")

    def __call__(self, masks: torch.Tensor, visual, features, image: torch.Tensor, label: torch.Tensor) -> dict:
        with torch.no_grad():
            v = float(self.loss.lambda_v * self.loss.consistency(masks, visual)) if self.loss.lambda_v else 0.0
            f = float(self.loss.lambda_f * self.loss.consistency(masks, features)) if self.loss.lambda_f else 0.0
            merged = self.network.merge(image, masks)
        scores = {"loss_v": v, "loss_f": f, "loss": v + f, "dice": self.dice(masks, label)}
        return scores | ({"dice_merged": self.dice(merged[0], label)} if merged else {})

    def dice(self, masks: torch.Tensor, label: torch.Tensor) -> float:
        metric = MatchedDiceMetric(report_classes=self.report_classes)
        metric(y_pred=masks, y=label)
        return float(metric.aggregate())


def load_network(parser: ConfigParser, weights: Path) -> torch.nn.Module:
    """The run's segmenter with ``weights``: its selected ``model.pt`` or an epoch's checkpoint (``model`` entry)."""
    network = parser.get_parsed_content("network_def")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    network.load_state_dict(state.get("model", state))
    return network


def validation_volumes(parser: ConfigParser, volumes: int) -> Iterator[tuple[dict, dict, torch.Tensor]]:
    """The first ``volumes`` validation records, each with its preprocessed item and image batch (1, C, *grid)."""
    transform = parser.get_parsed_content("validate#preprocessing")
    for record in load_datalist(parser.get_parsed_content("datalist"), "validation")[:volumes]:
        item = transform(record)
        yield record, item, item["image"][None].float()


def on_grid(label: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """A (C, *spatial) label resampled (nearest) to the grid of the image batch, batched."""
    return torch.nn.functional.interpolate(label[None].float(), size=image.shape[2:], mode="nearest")


def objective_gap(dataset: str, name: str, weights: Path, data: Path, volumes: int) -> list[dict]:
    """Per validation volume and trained level, the scores of the network's masks, them hardened, and the two
    k-means partitions; labels resampled (nearest) to the network's grid."""
    parser = variant_parser(dataset, name, data)
    network = load_network(parser, weights)
    network.eval()
    scorer = LevelScorer(parser, network)
    denoiser = parser.get_parsed_content("train#trainer#visual_denoiser")  # None: the visual term reads the image
    extractor = parser.get_parsed_content("feature_extractor")
    stages_per_level = level_stages(parser.get_parsed_content("feature_stages"))
    label_keys = parser.get_parsed_content("label_keys")
    rows = []
    for record, item, image in validation_volumes(parser, volumes):
        with torch.no_grad():
            outputs = network.split(network(image))
            visual = denoiser(image) if denoiser is not None else image
            native = extractor.native_mean(image, generator=torch.Generator().manual_seed(0))  # as ValidationObjective
        levels = []
        for level, stages in zip(network.trained_levels, stages_per_level, strict=True):
            soft = outputs[level]
            k = soft.shape[1]
            features = UpsampledFeatures([native[s] for s in stages], image.shape[2:])
            # the label of the same output level (a single label scores every level)
            label = on_grid(item[label_keys[min(level, len(label_keys) - 1)]], image)
            partitions = {
                "network (soft)": soft,
                "network (argmax)": one_hot(soft[0].argmax(0).numpy(), k),
                "k-means of the visual target": one_hot(kmeans_segment(visual[0].numpy(), k, channel_first=True), k),
                "k-means of the features": one_hot(
                    kmeans_segment(features.dense()[0].numpy(), k, channel_first=True), k
                ),
            }
            levels.append({p: scorer(m, visual, features, image, label) for p, m in partitions.items()})
        rows.append({"image": str(record["image"]), "levels": levels})
        print(record["image"], flush=True)
    return rows


def means(rows: list[dict]) -> list[dict]:
    """Per level and partition, the mean of each score over the volumes."""
    return [
        {
            partition: {key: float(np.mean([r["levels"][level][partition][key] for r in rows])) for key in scores}
            for partition, scores in partitions.items()
        }
        for level, partitions in enumerate(rows[0]["levels"])
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="brains", choices=list(DATASETS))
    parser.add_argument("--variant", required=True, help="a variant of discovery_variants.py, trained")
    parser.add_argument("--workdir", default=str(WORK / "variants"), help="discovery_variants.py's --workdir")
    parser.add_argument("--max-epochs", type=int, default=6, help="discovery_variants.py's --max-epochs")
    parser.add_argument("--data", help="the phantoms' folder (default: that of --dataset in benchmarks/.work)")
    parser.add_argument("--volumes", type=int, default=5)
    parser.add_argument("--weights", default="model.pt", help="a file of the run's train/ folder, e.g. an epoch's")
    parser.add_argument("--out", default=str(RESULTS / "objective_gap.json"))
    args = parser.parse_args()
    if args.variant not in DATASETS[args.dataset]["variants"]:
        parser.error(f"--variant {args.variant!r} is not a variant of {args.dataset}.")
    weights = variant_folder(study_folder(args.workdir, args.dataset, args.max_epochs), args.variant) / "train"
    weights = weights / args.weights
    if not weights.is_file():
        parser.error(f"{weights} does not exist: train the variant with discovery_variants.py.")
    data = Path(args.data or DATASETS[args.dataset]["data"]).resolve()
    rows = objective_gap(args.dataset, args.variant, weights, data, args.volumes)
    summary = means(rows)
    result = {**environment(), "dataset": args.dataset, "variant": args.variant, "weights": args.weights}
    result.update({"means": summary, "volumes": rows})
    write_json(args.out, result, overwrite=True)
    for level, partitions in enumerate(summary):
        print(f"level {level + 1} (mean over {len(rows)} volumes)")
        for partition, scores in partitions.items():
            print(f"  {partition:26s} " + "  ".join(f"{k} {v:.4f}" for k, v in scores.items()))


if __name__ == "__main__":
    main()

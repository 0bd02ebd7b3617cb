"""The methods the CUTS benchmarks compare, set up from the bundle's own configs (``cuts.py``, ``cuts_selection.py``,
``cuts_figure.py``, ``condensation.py``): the data each benchmark reads (``DATASETS``), the bundle's inference config
and the training of its encoder (:func:`encoder_config`), the paper's reading of an embedding (:class:`PaperReading`),
the k-means baselines (:func:`kmeans_baselines`) and every method's label map of one slice (:func:`label_maps`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.transforms import Transform
from steps import BUNDLES, TISSUE_ROW, WORK, bundle_config, log_beside, run_bundle

from monai_ext.baselines.kmeans import gaussian_smooth, kmeans_segment
from monai_ext.baselines.superpixels import BASELINES
from monai_ext.data.brain import TISSUE_MAP_KEYS, tissue_map
from monai_ext.transforms import (
    DiffusionCondensationd,
    MergeAdjacentParts,
    MergeAdjacentPartsd,
    PersistentStructures,
    PersistentStructuresd,
    PottsRefinement,
    PottsRefinementd,
    SpectralKMeans,
)

TARGETS = {"tumour": "label", "ventricles": "ventricles"}


class BenchmarkData(NamedTuple):
    """One of the bundle's data, as the benchmark reads it.

    Attributes:
        overlays: configs overlaid on ``inference.json`` and ``train.json``.
        targets: target name -> datalist key of its ground-truth mask.
        other_parts: k-means part counts reported beside k = 10.
        tissue_keys: datalist keys of the slices' true tissue map and BraTS map (None: no ``TISSUE_ROW``).
    """

    overlays: tuple[str, ...]
    targets: dict[str, str]
    other_parts: tuple[int, ...] = ()
    tissue_keys: tuple[str, str] | None = None


DATASETS = {
    "brain_slices": BenchmarkData((), TARGETS, tissue_keys=("tissue", "brats")),
    "cell_slices": BenchmarkData(("cell_slices.json",), {"cell": "label_l1"}, (2,)),  # one structure on a background
}

DATASETS = {
    "brain_slices": BenchmarkData((), TARGETS, tissue_keys=TISSUE_MAP_KEYS),
    "cell_slices": BenchmarkData(("cell_slices.json",), {"cell": "label_l1"}, (2,)),  # one structure on a background
}
KMEANS_PARTS = 10  # as CUTS's spectral k-means
BASELINE_ROWS = {"otsu_watershed": "watershed", "felzenszwalb": "felzenszwalb", "slic": "slic"}
CUTS_ROW = "CUTS + persistent structures"
KMEANS_BASELINES = ("k-means", "k-means + refinement", "smoothing + k-means")
MERGING = " + merging"


def inference_parser(ckpt: str | None, dataset_dir: str | None, dataset: str = "brain_slices") -> ConfigParser:
    """The bundle's inference config for ``dataset`` (a key of ``DATASETS``) with the ground truth of its targets
    (and the paths of its tissue maps) in its items and ``ckpt`` as the encoder (None: the config's)."""
    benchmark = DATASETS[dataset]
    parser = ConfigParser()
    parser.read_config(bundle_config("cuts", "inference.json", *benchmark.overlays))
    label_keys = [*benchmark.targets.values(), *(benchmark.tissue_keys or ())]
    parser.update({"bundle_root": str(BUNDLES / "cuts"), "label_keys": label_keys})
    if ckpt:
        parser["ckpt_path"] = ckpt
    if dataset_dir:
        parser["dataset_dir"] = dataset_dir
    return parser


def train_encoder(
    workdir: str, dataset_dir: str | None, overrides: dict, dataset: str = "brain_slices"
) -> tuple[str, dict]:
    """Train the bundle (``train.json`` with the overlays of ``dataset`` and ``overrides``) into ``workdir``/train, or
    resume it there; return the best encoder's checkpoint and the run's record (time, memory, overrides)."""
    work = Path(workdir).resolve() / "train"
    overrides = {"output_dir": str(work), **({"dataset_dir": dataset_dir} if dataset_dir else {}), **overrides}
    configs = bundle_config("cuts", "train.json", *DATASETS[dataset].overlays)
    training = run_bundle(configs, overrides, log_beside(work))
    return str(work / "model.pt"), {**training, "overrides": overrides}


def add_encoder_arguments(parser: argparse.ArgumentParser, name: str, split: str) -> None:
    """The options of the CUTS benchmarks that choose or train the encoder and the slices scored; the work folder
    defaults to ``benchmarks/.work/<name>``."""
    parser.add_argument("--encoder-ckpt", default=None, help="default: the bundle's shipped encoder for the data")
    parser.add_argument("--train", action="store_true", help="train the bundle into --workdir first and use it")
    parser.add_argument("--workdir", default=str(WORK / name))
    parser.add_argument("--kernel-size", type=int, default=None, help="the encoder's (default: the bundle's)")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the training's epochs")
    parser.add_argument(
        "--split",
        default=split,
        choices=("training", "validation", "test"),
        help="the datalist split scored (training: more slices to confirm a choice; the encoder saw them unlabelled)",
    )
    parser.add_argument("--max-slices", type=int, default=None, help="the first slices only (smoke runs)")


def encoder_config(
    args: argparse.Namespace, dataset_dir: str | None, training_overrides: dict, dataset: str = "brain_slices"
) -> tuple[ConfigParser, str, dict]:
    """The encoder of :func:`add_encoder_arguments`' options (trained first with ``--train``, with
    ``training_overrides`` beside ``--kernel-size`` and ``--max-epochs``; unset values left to the bundle): the
    bundle's inference config for ``dataset`` (a key of ``DATASETS``) on it with the split and kernel set, its
    checkpoint and the training record."""
    ckpt, training = args.encoder_ckpt, {}
    if args.train:
        overrides = {"max_epochs": args.max_epochs, "kernel_size": args.kernel_size, **training_overrides}
        overrides = {k: v for k, v in overrides.items() if v is not None}
        ckpt, training = train_encoder(args.workdir, dataset_dir, overrides, dataset)
    config = inference_parser(ckpt, dataset_dir, dataset)
    ckpt = str(config.get_parsed_content("ckpt_path"))
    training = training or {"reused": ckpt}
    config["input_split"] = args.split
    if args.kernel_size:
        config["kernel_size"] = args.kernel_size
    return config, ckpt, training


def on_grid(label_map: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A label map resized (nearest) to ``shape`` when it is on another grid."""
    if label_map.shape == shape:
        return label_map
    resized = torch.nn.functional.interpolate(torch.as_tensor(label_map)[None, None].float(), size=shape)
    return resized[0, 0].long().numpy()


def tissue_keys_of(items: list[dict], keys: tuple[str, str] | None) -> tuple[str, str] | None:
    """``keys`` if every item has both (a datalist of the brain phantoms), else None (no ``TISSUE_ROW``)."""
    return keys if keys and all(key in item for item in items for key in keys) else None


def postprocessing_transforms(parser: ConfigParser) -> dict[type, Transform]:
    """The bundle's postprocessing transforms, by type."""
    return {type(t): t for t in parser.get_parsed_content("postprocessing").transforms}


def persistence_with_rule(
    transforms: dict[type, Transform], rule: str, part_ratio: float | None = None
) -> PersistentStructures:
    """The bundle's persistent structures (size, persistence and segment limits) by ``rule`` and ``part_ratio``."""
    bundle = transforms[PersistentStructuresd].transform
    return PersistentStructures(
        bundle.min_size, bundle.min_persistence, max_segments=bundle.max_segments, rule=rule, part_ratio=part_ratio
    )


class PaperReading:
    """The paper's persistent structures of an embedding: the bundle's condensation of the embedding alone, then the
    paper's rule with the bundle's size and persistence limits, unrefined."""

    def __init__(self, parser: ConfigParser) -> None:
        transforms = postprocessing_transforms(parser)
        self.condensation = transforms[DiffusionCondensationd].condensation
        self.persistence = persistence_with_rule(transforms, "paper")

    def __call__(self, embedding: torch.Tensor) -> np.ndarray:
        return np.asarray(self.persistence(self.condensation(embedding)))[0]


def kmeans_baselines(
    image: torch.Tensor,
    refinement: PottsRefinement,
    mergings: dict[str, MergeAdjacentParts] | None = None,
    other_parts: tuple[int, ...] = (),
) -> dict[str, np.ndarray]:
    """The ``KMEANS_BASELINES`` label maps of a (C, *spatial) slice: k-means (k = 10) on its intensities, refined
    as the bundle refines, and on its intensities smoothed (Gaussian, sigma 1 pixel); for each (suffix, merging)
    of ``mergings``, the refined map's parts merged by it, as ``"k-means + refinement" + suffix`` (suffix
    ``MERGING``: ``MERGED_BASELINE``); for each k of ``other_parts``, k-means and smoothing + k-means with k parts
    (``k-means (k = 2)``, ...)."""
    pixels = np.asarray(image)
    kmeans = kmeans_segment(pixels, KMEANS_PARTS, channel_first=True)
    smoothed = np.stack([gaussian_smooth(c, 1.0) for c in pixels])
    refined = refinement(torch.as_tensor(kmeans)[None], image)
    maps = {
        "k-means": kmeans,
        "k-means + refinement": np.asarray(refined)[0],
        "smoothing + k-means": kmeans_segment(smoothed, KMEANS_PARTS, channel_first=True),
    }
    for suffix, merging in (mergings or {}).items():
        maps["k-means + refinement" + suffix] = np.asarray(merging(refined))[0]
    for k in other_parts:
        maps[f"k-means (k = {k})"] = kmeans_segment(pixels, k, channel_first=True)
        maps[f"smoothing + k-means (k = {k})"] = kmeans_segment(smoothed, k, channel_first=True)
    return maps


class ComparedMethods:
    """What :func:`label_maps` needs beside the bundle's own pipeline, built once from its inference config: the
    encoder, spectral k-means (k = 10), the paper's reading, the bundle's refinement and part merging (for the
    baselines; no merging when the bundle's ``merge_parts`` is off), the k-means part counts ``other_parts``
    reported beside k = 10 and the datalist keys of the true tissue maps (``tissue_keys``; None: no tissue row)."""

    def __init__(
        self, parser: ConfigParser, other_parts: tuple[int, ...] = (), tissue_keys: tuple[str, str] | None = None
    ) -> None:
        self.other_parts = other_parts
        self.tissue_keys = tissue_keys
        self.network = parser.get_parsed_content("network").eval()
        self.spectral = SpectralKMeans(k=KMEANS_PARTS, landmarks=parser["landmarks"], seed=parser["seed"])
        self.paper = PaperReading(parser)
        transforms = postprocessing_transforms(parser)
        self.refinement = transforms[PottsRefinementd].refinement
        merging = transforms.get(MergeAdjacentPartsd)
        self.mergings = {MERGING: merging.merging} if merging else {}


def label_maps(item: dict, parser: ConfigParser, methods: ComparedMethods) -> tuple:
    """Every method's label map of one datalist item, the CUTS levels and the seconds of the bundle's postprocessing
    (coordinates, condensation, persistent structures, refinement, and merging when on)."""
    data = parser.get_parsed_content("preprocessing")(dict(item))
    image = data["image"]
    with torch.no_grad():
        embedding = methods.network(image[None].to(next(methods.network.parameters()).device))[0].cpu()
    start = time.perf_counter()
    out = parser.get_parsed_content("postprocessing")({**data, "pred": embedding})
    seconds = time.perf_counter() - start
    grid = tuple(out["pred"].shape[-2:])
    pixels = image.numpy()
    maps = {
        CUTS_ROW: np.asarray(out["pred"]).reshape(grid),
        "CUTS + persistent structures (paper)": on_grid(methods.paper(embedding), grid),
        "CUTS + spectral k-means": on_grid(np.asarray(methods.spectral(embedding))[0], grid),
        **{BASELINE_ROWS[name]: on_grid(f(pixels), grid) for name, f in BASELINES.items()},
        **{
            name: on_grid(m, grid)
            for name, m in kmeans_baselines(image, methods.refinement, methods.mergings, methods.other_parts).items()
        },
    }
    if methods.tissue_keys:
        maps[TISSUE_ROW] = on_grid(tissue_map(item, methods.tissue_keys), grid)
    return data, maps, np.asarray(out["pred_levels"]), seconds

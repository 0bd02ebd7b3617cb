"""CUTS on the brain phantom slices in the layout of Liu, Amodio et al., Table 1 (issue 11): the bundle's encoder,
diffusion condensation and persistent structures, its spectral k-means and the oracle best level, against the
scikit-image baselines (Otsu watershed, Felzenszwalb, SLIC) and k-means on the intensities (alone, on smoothed
intensities, refined as the bundle refines, and refined and merged as the bundle merges its parts), all in the same
run and binarised by the same hint rule, for the two targets (whole tumour, lateral ventricles); the paper's values
beside. On the brain slices the row ``tissue map (oracle)`` reads the phantom's exact tissue partition (the tumour's
three tissues as three parts) by the same rule: on the tumour, the best any map whose parts each lie within one
tissue can score.

Two readings of the same levels-from-embedding: ``CUTS + persistent structures`` is the bundle's inference (the
embedding with the pixel coordinates, the authors' code's persistent-structures rule, boundaries refined on the
intensities, comparable adjacent parts merged when ``merge_parts`` is on); ``CUTS + persistent structures
(paper)`` is the paper's (the embedding alone, the paper's rule, no refinement), as bundle 0.2.0 shipped it.

    python benchmarks/cuts.py --out benchmarks/results/cuts.json             # the shipped encoder
    python benchmarks/cuts.py --train --workdir benchmarks/.work/cuts ...     # train the bundle first
    python benchmarks/cuts.py --split validation --out ...                    # choose settings on validation
    python benchmarks/cuts.py --data cell_slices --out ...                    # the cell phantom slices, their encoder

Every method sees the bundle's preprocessed slice (the four contrasts, each min-max scaled, at the network's
size); the label maps are scored on the slice's own grid.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from _runner import ROOT, bundle_config, log_beside, run_bundle
from monai.bundle import ConfigParser
from monai.transforms import Transform

from monai_ext.baselines.kmeans import gaussian_smooth, kmeans_segment
from monai_ext.baselines.superpixels import BASELINES
from monai_ext.data.brain import TISSUE_LABELS
from monai_ext.engines.cuts_report import ORACLE, CUTSReport
from monai_ext.provenance import environment, write_json
from monai_ext.transforms import (
    DiffusionCondensationd,
    MergeAdjacentParts,
    MergeAdjacentPartsd,
    PersistentStructures,
    PersistentStructuresd,
    PottsRefinement,
    PottsRefinementd,
    ReadImaged,
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
TISSUE_ROW = "tissue map (oracle)"
KMEANS_PARTS = 10  # as CUTS's spectral k-means
PAPER_TABLE1 = {  # Liu, Amodio et al., Table 1, brain tumour / brain ventricles: Dice, Hausdorff (pixels)
    "watershed": {"tumour": (0.188, 53.96), "ventricles": (0.631, 30.25)},
    "felzenszwalb": {"tumour": (0.127, 64.90), "ventricles": (0.716, 20.35)},
    "slic": {"tumour": (0.242, 47.51), "ventricles": (0.475, 37.96)},
    "CUTS + spectral k-means": {"tumour": (0.479, 33.52), "ventricles": (0.774, 8.11)},
    "CUTS + persistent structures": {"tumour": (0.447, 32.54), "ventricles": (0.628, 16.34)},
    ORACLE: {"tumour": (0.489, 30.64), "ventricles": (0.819, 12.90)},
}
BASELINE_ROWS = {"otsu_watershed": "watershed", "felzenszwalb": "felzenszwalb", "slic": "slic"}
CUTS_ROW = "CUTS + persistent structures"
KMEANS_BASELINES = ("k-means", "k-means + refinement", "smoothing + k-means")
MERGING = " + merging"
MERGED_BASELINE = "k-means + refinement" + MERGING  # k-means given the bundle's whole postprocessing of a label map
PAIRED_BASELINES = (*KMEANS_BASELINES, MERGED_BASELINE)  # the baselines it must beat


def paired_differences(ours: list[float], theirs: list[float], draws: int = 10000, seed: int = 0) -> dict:
    """Per-slice Dice of ours minus theirs on the same slices: the mean, a percentile bootstrap 95 % interval of
    the mean over slices, and on how many slices ours is higher."""
    if len(ours) != len(theirs) or not ours:
        raise ValueError(f"need two non-empty lists of per-slice scores of one length, got {len(ours)}, {len(theirs)}.")
    difference = np.asarray(ours, dtype=float) - np.asarray(theirs, dtype=float)
    resampled = np.random.default_rng(seed).integers(0, len(difference), (draws, len(difference)))
    means = difference[resampled].mean(axis=1)
    return {
        "mean": float(difference.mean()),
        "ci95": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))],
        "higher": int((difference > 0).sum()),
        "n": len(difference),
    }


def inference_parser(ckpt: str | None, dataset_dir: str | None, dataset: str = "brain_slices") -> ConfigParser:
    """The bundle's inference config for ``dataset`` (a key of ``DATASETS``) with the ground truth of its targets
    (and the paths of its tissue maps) in its items and ``ckpt`` as the encoder (None: the config's)."""
    benchmark = DATASETS[dataset]
    parser = ConfigParser()
    parser.read_config(bundle_config("cuts", "inference.json", *benchmark.overlays))
    label_keys = [*benchmark.targets.values(), *(benchmark.tissue_keys or ())]
    parser.update({"bundle_root": str(ROOT / "bundles" / "cuts"), "label_keys": label_keys})
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
    parser.add_argument("--workdir", default=str(ROOT / "benchmarks" / ".work" / name))
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


def tissue_map(item: dict, keys: tuple[str, str]) -> np.ndarray:
    """The phantom's exact tissue partition of a slice, from the files of ``item`` under ``keys`` (its tissue map,
    ``monai_ext.data.brain.TISSUE_LABELS``, and its BraTS map, ``BRATS_LABELS``): background, CSF, grey and white
    matter, and the tumour split into its necrosis, edema and enhancing rim, each tissue one part. Read by the hint
    rule, it looks at the ground truth; on the whole tumour it is the best that any label map whose parts each lie
    within one tissue can score.

    Raises:
        ValueError: the two maps are on different grids, or the tissue map's tumour is not where the BraTS map's is.
    """
    tissue_key, brats_key = keys
    read = ReadImaged(list(keys), image_only=True)(dict(item))
    tissue, brats = (np.rint(np.asarray(read[key])).astype(np.int64) for key in keys)
    files = f"'{tissue_key}' file '{item[tissue_key]}' and '{brats_key}' file '{item[brats_key]}'"
    if tissue.shape != brats.shape:
        raise ValueError(f"{files} have shapes {tissue.shape} and {brats.shape}: the two maps must share one grid.")
    if not np.array_equal(tissue == TISSUE_LABELS["tumour"], brats > 0):
        raise ValueError(
            f"{files} disagree: the tissue map's tumour ({TISSUE_LABELS['tumour']}) must be exactly where the BraTS "
            "map is above 0."
        )
    return np.where(brats > 0, TISSUE_LABELS["tumour"] + brats, tissue)


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


def is_paired_baseline(method: str) -> bool:
    """Whether CUTS is paired against ``method``: ``PAIRED_BASELINES`` and k-means with other part counts."""
    return method in PAIRED_BASELINES or method.startswith(("k-means (k = ", "smoothing + k-means (k = "))


def evaluate(parser: ConfigParser, max_slices: int | None, work: Path, dataset: str = "brain_slices") -> dict:
    """Scores of every method and of the targets of ``dataset`` (a key of ``DATASETS``) over the slices of the
    parser's ``input_split`` (``CUTSReport``, as the bundle's evaluation); CUTS paired against every k-means row."""
    benchmark = DATASETS[dataset]
    targets = benchmark.targets
    items = parser.get_parsed_content("dataset").data[:max_slices]
    methods = ComparedMethods(parser, benchmark.other_parts, tissue_keys_of(items, benchmark.tissue_keys))
    report, seconds = None, []
    for index, item in enumerate(items):
        data, maps, levels, condensation_seconds = label_maps(item, parser, methods)
        report = report or CUTSReport(work, {method: method for method in maps}, targets, levels_key="pred_levels")
        report.add({**data, **maps, "pred_levels": levels})
        seconds.append(condensation_seconds)
        print(f"slice {index + 1}/{len(items)}: condensation {condensation_seconds:.1f} s", flush=True)
    dice = {t: {m: [s["dice"] for s in rows] for m, rows in report.scores[t].items()} for t in targets}
    return {
        "slices": len(items),
        "condensation_seconds_per_slice": float(np.mean(seconds)),
        "targets": report.report()["targets"],
        "paired_dice": {
            t: {b: paired_differences(dice[t][CUTS_ROW], dice[t][b]) for b in dice[t] if is_paired_baseline(b)}
            for t in targets
        },
    }


def table(result: dict) -> str:
    """Dice and Hausdorff per method (rows) and target, the paper's Dice / Hausdorff beside."""
    targets = list(result["targets"])
    lines = [f"{'method':<30}" + "".join(f"{t + ' Dice / HD / HD95':<28}{'paper':<16}" for t in targets)]
    methods = list(result["targets"][targets[0]]["methods"])
    for method in methods:
        row = f"{method:<30}"
        for target in targets:
            s = result["targets"][target]["methods"].get(method)
            cell = f"{s['dice']['mean']:.3f} / {s['hausdorff']['mean']:.1f} / {s['hd95']['mean']:.1f}" if s else "-"
            paper = PAPER_TABLE1.get(method, {}).get(target)
            row += f"{cell:<28}{(f'{paper[0]:.3f} / {paper[1]:.1f}' if paper else '-'):<16}"
        lines.append(row)
    counts = ", ".join(f"{t}: {result['targets'][t]['images']} slices" for t in targets)
    lines.append(f"{counts}; condensation {result['condensation_seconds_per_slice']:.1f} s a slice")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_encoder_arguments(parser, "cuts", split="test")
    parser.add_argument("--data", default="brain_slices", choices=tuple(DATASETS), help="the bundle's data")
    parser.add_argument("--dataset-dir", default=None, help="a slice dataset (default: the bundle's data)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "cuts.json"))
    args = parser.parse_args()
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    config, ckpt, training = encoder_config(args, args.dataset_dir, {}, args.data)
    result = {
        **environment(),
        "dataset": str(args.dataset_dir or f"{args.data} (the bundle's data)"),
        "split": args.split,
        "kernel_size": config["kernel_size"],
        "spatial_size": config["spatial_size"],
        "encoder_ckpt": ckpt,
        "training": training,
        **evaluate(config, args.max_slices, Path(args.workdir), args.data),
        "paper_table1": {
            m: {t: {"dice": v[0], "hausdorff": v[1]} for t, v in r.items()} for m, r in PAPER_TABLE1.items()
        },
    }
    write_json(args.out, result, overwrite=True)
    print(table(result))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

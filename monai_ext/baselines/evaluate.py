"""Evaluate the non-DL baselines on a generated (or any) dataset with Hungarian-matched Dice."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from monai_ext.baselines.diffusion import DiffusionBaselines
from monai_ext.baselines.kmeans import bm4d_denoise, estimate_noise_std, gaussian_smooth, kmeans_segment
from monai_ext.data.datalist import load_datalist, read_volume
from monai_ext.metrics import MatchedHausdorffDistanceMetric, finite_stats, matched_dice, reported_dice
from monai_ext.provenance import environment, peak_memory_mb, write_json
from monai_ext.transforms.agglomeration import merge_by_means

MERGED = "_merged"  # k-means with the finest level's K, coarser levels merged from it (closest means first)
DIFFUSION_METHODS = ("features_kmeans", "x0_kmeans", "x0_kmeans" + MERGED)  # need DiffusionBaselines
METHODS = ("kmeans", "bm4d_kmeans", "smooth_kmeans", "smooth_kmeans" + MERGED, *DIFFUSION_METHODS)
SMOOTHING_SIGMA = 1.0  # voxels, of smooth_kmeans
NOISE_STD_MODES = ("auto", "known", "estimate")
# Tursynbek & Niethammer (MICCAI 2023), Table 1: matched Dice at levels 1 / 2 / 3.
PAPER_TABLE1: dict[str, dict[str, tuple[float, float, float]]] = {
    "regular": {"kmeans": (0.808, 0.326, 0.149), "bm4d_kmeans": (0.949, 0.529, 0.335), "ours": (0.986, 0.577, 0.397)},
    "irregular": {
        "kmeans": (0.771, 0.299, 0.118),
        "bm4d_kmeans": (0.950, 0.533, 0.324),
        "ours": (0.967, 0.565, 0.382),
    },
}


def free_path(path: Path) -> Path:
    """``path`` if it is free, else the first free ``<stem>_1<suffix>``, ``<stem>_2<suffix>``, ..."""
    candidate, number = path, 0
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}_{number}{path.suffix}")
    return candidate


def label_levels(data: Path) -> dict[str, int]:
    """Label keys and their class counts K, read from the ``classes`` entry of the folder's ``dataset.json``."""
    meta_path = data / "dataset.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"'{meta_path}' does not exist; generate data with `python -m monai_ext make-phantoms`."
        )
    classes = json.loads(meta_path.read_text()).get("classes")
    if not isinstance(classes, dict) or not classes:
        raise ValueError(f"'{meta_path}' has no 'classes' mapping from label key to class names.")
    return {key: len(names) for key, names in classes.items()}


def _noise_std(image: np.ndarray, item: dict, mode: str, path: str) -> float:
    if mode == "estimate" or (mode == "auto" and "noise_std" not in item):
        return estimate_noise_std(image)
    if "noise_std" not in item:
        raise ValueError(f"noise_std='known' but the datalist entry of '{path}' has no 'noise_std'.")
    return float(item["noise_std"])


def method_inputs(
    image: np.ndarray, methods: Sequence[str], noise_std: float, diffusion: tuple | None = None
) -> dict[str, tuple[np.ndarray, bool]]:
    """What k-means clusters for each method, with whether it is channel-first features: the intensities
    (``kmeans``), BM4D-denoised (``bm4d_kmeans``) or Gaussian-smoothed ones (``smooth_kmeans``), the diffusion
    features (``features_kmeans``) or the diffusion model's x0 prediction (``x0_kmeans``); ``diffusion`` is the
    (feature extractor, denoiser) pair of ``DiffusionBaselines.build``, which see the image min-max scaled to [0, 1]
    as the segmenter does. A method ending in ``_merged`` clusters the input of the method it extends."""
    requested, methods = methods, {method.removesuffix(MERGED) for method in methods}
    inputs: dict[str, tuple[np.ndarray, bool]] = {}
    if "kmeans" in methods:
        inputs["kmeans"] = (image, False)
    if "bm4d_kmeans" in methods:
        inputs["bm4d_kmeans"] = (bm4d_denoise(image, noise_std), False)
    if "smooth_kmeans" in methods:
        inputs["smooth_kmeans"] = (gaussian_smooth(image, SMOOTHING_SIGMA), False)
    if set(methods) & set(DIFFUSION_METHODS):
        extractor, denoiser = diffusion
        device = next(extractor.unet.parameters()).device
        low, high = float(image.min()), float(image.max())
        unit = torch.as_tensor((image - low) / max(high - low, 1e-12), dtype=torch.float32, device=device)[None, None]
        if "features_kmeans" in methods:
            inputs["features_kmeans"] = (extractor(unit)[0].cpu().numpy(), True)
        if "x0_kmeans" in methods:
            inputs["x0_kmeans"] = (denoiser(unit)[0, 0].cpu().numpy(), False)
    return {method: inputs[method.removesuffix(MERGED)] for method in requested}


def kmeans_levels(values: np.ndarray, channel_first: bool, num_parts: set[int], merged: bool) -> dict[int, np.ndarray]:
    """k-means label maps of ``values`` with each K of ``num_parts``; ``merged``: one k-means with the largest K, the
    others merged from it by :func:`monai_ext.transforms.merge_by_means` on the same values (over-clustering then
    merging, the strongest k-means of the brain tumour in issue 31's study)."""
    if not merged:
        return {k: kmeans_segment(values, k, channel_first=channel_first) for k in num_parts}
    finest = kmeans_segment(values, max(num_parts), channel_first=channel_first)
    guide = torch.as_tensor(values if channel_first else values[None])
    return {k: merge_by_means(torch.as_tensor(finest), guide, k)[0].numpy() for k in num_parts}


def evaluate_volume(
    image: np.ndarray,
    labels: dict[str, np.ndarray],
    levels: dict[str, int],
    methods: Sequence[str],
    noise_std: float,
    diffusion: tuple | None = None,
    hd95_spacing: float | Sequence[float] | None = None,
    report_classes: Sequence[int] | None = None,
    finest_parts: int | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Matched Dice of every method at every level for one volume (inputs of :func:`method_inputs`; averaged over
    ``report_classes``, None: every class), and the matched HD95 of every method at the first level
    (``MatchedHausdorffDistanceMetric``; in voxels unless ``hd95_spacing``). The ``_merged`` methods over-cluster to
    ``finest_parts`` (None: the largest K of ``levels``)."""
    dice, hd95 = {}, {}
    first_key = next(iter(levels))
    hausdorff = MatchedHausdorffDistanceMetric(classes=report_classes, spacing=hd95_spacing)
    for method, (values, channel_first) in method_inputs(image, methods, noise_std, diffusion).items():
        merged = method.endswith(MERGED)
        num_parts = set(levels.values()) | ({finest_parts} if merged and finest_parts else set())
        parts = kmeans_levels(values, channel_first, num_parts, merged)
        dice[method] = {
            key: reported_dice(matched_dice(parts[k], labels[key]), report_classes) for key, k in levels.items()
        }
        first = torch.as_tensor(parts[levels[first_key]])[None, None]
        hd95[method] = float(hausdorff(first, torch.as_tensor(labels[first_key])[None, None])[0, 0])
    return {m: dice[m] for m in methods}, {m: hd95[m] for m in methods}


def format_table(summary: dict, levels: dict[str, int], variant: str | None) -> str:
    """The per-level table: mean +/- sd of every method, with the paper's Table 1 value when it has one."""
    methods = list(summary)
    paper = PAPER_TABLE1.get(variant or "", {})
    lines = [f"{'level':<10}{'K':>3}  " + "".join(f"{m:<28}" for m in methods)]
    for index, (key, k) in enumerate(levels.items()):
        cells = []
        for method in methods:
            stats = summary[method][key]
            ref = f" (paper {paper[method][index]:.3f})" if method in paper and index < 3 else ""
            cells.append(f"{stats['mean']:.3f} ± {stats['sd']:.3f}{ref}".ljust(28))
        lines.append(f"{key:<10}{k:>3}  " + "".join(cells))
    return "\n".join(lines)


def run_baselines(
    data: str,
    split: str = "test",
    methods: Sequence[str] | None = None,
    noise_std: str = "auto",
    out: str | None = "auto",
    overwrite: bool = False,
    verbose: bool = True,
    diffusion: DiffusionBaselines | None = None,
    device: str | torch.device = "cpu",
    hd95_spacing: float | Sequence[float] | None = None,
    datalist_name: str = "datalist.json",
    levels: Mapping[str, int] | None = None,
    report_classes: Sequence[int] | None = None,
    finest_parts: int | None = None,
) -> dict:
    """Run the k-means baselines on every volume of a split and report matched Dice per level.

    Args:
        data: dataset folder holding ``datalist.json`` and ``dataset.json`` (e.g. from ``make-phantoms``).
        split: datalist split to evaluate.
        methods: any of ``METHODS``: ``"kmeans"``, ``"bm4d_kmeans"``, ``"smooth_kmeans"`` (Gaussian, sigma
            ``SMOOTHING_SIGMA`` voxels) and, with ``diffusion``, ``"features_kmeans"`` and ``"x0_kmeans"``; a name
            with ``"_merged"`` added clusters that method's input once with the finest level's K and merges the
            coarser levels from it (:func:`kmeans_levels`). None: all that can run (those of the diffusion model
            only when ``diffusion`` is given).
        noise_std: noise level given to BM4D: ``"known"`` reads each entry's ``noise_std`` (recorded by the
            phantom generator), ``"estimate"`` uses a wavelet estimate, ``"auto"`` the first when available.
        out: JSON file for the results; ``"auto"`` (default) writes
            ``benchmarks/results/baselines_<folder name>_<split>.json`` under the current directory, adding a number
            to the name rather than replacing an earlier file; None writes no file.
        overwrite: replace an existing ``out``.
        verbose: print the table.
        diffusion: the diffusion model of the two diffusion baselines (built here, on ``device``, only when one
            of them runs; their noise draws are seeded).
        device: where the diffusion model runs.
        hd95_spacing: voxel spacing of the first level's matched HD95 (e.g. 2.0 for mm on a 2 mm grid); None
            measures it in voxels.
        datalist_name: the datalist of ``data`` read (e.g. ``datalist_flair.json`` of the brain phantoms).
        levels: label key -> K of each level scored; None reads them from the ``classes`` of ``dataset.json``.
        report_classes: the ground-truth classes the Dice and HD95 are averaged over (e.g. ``[1]``: the whole
            tumour); None: every class present.
        finest_parts: the K the ``_merged`` methods over-cluster to (e.g. 6 when structure discovery trains 6 parts
            and merges them to the 3 of ``levels``); None: the largest K of ``levels``.

    Returns:
        the results as written to ``out``.
    """
    if methods is None:
        methods = METHODS if diffusion is not None else tuple(m for m in METHODS if m not in DIFFUSION_METHODS)
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    if unknown := set(methods) - set(METHODS):
        raise ValueError(f"unknown methods {sorted(unknown)}; choose from {METHODS}.")
    if diffusion is None and (needs := sorted(set(methods) & set(DIFFUSION_METHODS))):
        raise ValueError(f"methods {needs} need the diffusion model: pass diffusion=DiffusionBaselines(...).")
    if noise_std not in NOISE_STD_MODES:
        raise ValueError(f"noise_std must be one of {NOISE_STD_MODES}, got '{noise_std}'.")
    folder = Path(data)
    levels = dict(levels) if levels is not None else label_levels(folder)
    items = load_datalist(folder / datalist_name, split)
    if not items:
        raise ValueError(f"split '{split}' of '{folder / datalist_name}' is empty.")
    if out == "auto":
        out = str(free_path(Path("benchmarks") / "results" / f"baselines_{folder.name}_{split}.json"))
    if out is not None and Path(out).exists() and not overwrite:
        raise FileExistsError(f"'{out}' exists; pass --overwrite to replace it.")
    start = time.perf_counter()
    models = diffusion.build(device) if set(methods) & set(DIFFUSION_METHODS) else None
    torch.manual_seed(0)
    per_volume: dict[str, dict[str, list[float]]] = {m: {key: [] for key in levels} for m in methods}
    hd95_per_volume: dict[str, list[float]] = {m: [] for m in methods}
    for item in tqdm(items, desc=f"baselines on {split}"):
        image = read_volume(item["image"], "image")
        labels = {key: read_volume(item[key], key).astype(np.int64) for key in levels}
        for key, label in labels.items():
            if label.shape != image.shape:
                raise ValueError(f"'{key}' of '{item['image']}' has shape {label.shape}, the image {image.shape}.")
        std = _noise_std(image, item, noise_std, item["image"])
        dice, hd95 = evaluate_volume(
            image, labels, levels, methods, std, models, hd95_spacing, report_classes, finest_parts
        )
        for method, scores in dice.items():
            for key, value in scores.items():
                per_volume[method][key].append(value)
            hd95_per_volume[method].append(hd95[method])
    summary = {
        m: {key: {"mean": float(np.mean(v)), "sd": float(np.std(v)), "per_volume": v} for key, v in levels_.items()}
        for m, levels_ in per_volume.items()
    }
    hd95_summary = {m: {**finite_stats(v), "per_volume": v} for m, v in hd95_per_volume.items()}
    meta = json.loads((folder / "dataset.json").read_text())
    variant = meta.get("options", {}).get("variant")
    result = {
        **environment(),
        "data": str(folder),
        "dataset": {key: meta.get(key) for key in ("generator", "version", "seed", "options")},
        "split": split,
        "volumes": len(items),
        "noise_std": noise_std,
        "levels": levels,
        "matched_dice": summary,
        "matched_hd95_first_level": hd95_summary,
        "hd95_unit": "voxels" if hd95_spacing is None else "mm",
        "paper_table1": PAPER_TABLE1.get(variant or ""),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "peak_memory_mb": round(peak_memory_mb(), 1),
    }
    if verbose:
        print(f"\nmatched Dice on '{folder}' ({split}, {len(items)} volumes, {result['wall_time_s']} s)")
        print(format_table(summary, levels, variant))
    if out is not None:
        write_json(out, result, overwrite=overwrite)
        print(f"results written to {out}")
    return result

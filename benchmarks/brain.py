"""Unsupervised whole-tumour segmentation on brain phantoms: the paper's Table 3, with brain phantoms for BraTS'19.

BraTS'19 cannot be downloaded here, so this runs the protocol of Tursynbek & Niethammer (MICCAI 2023, Table 3)
on the BraTS-like phantoms of ``monai_ext.data.brain`` (MNI152 anatomy, one glioma-like tumour, 96^3 at 2 mm):
structure discovery with K = 3 parts (background, brain, tumour) on FLAIR alone, stage-2 diffusion features,
scored by the whole-tumour Dice after Hungarian matching of the 3 parts to background / tumour and by the HD95
in mm, beside k-means on FLAIR intensities and k-means on the diffusion features (K = 3), plus the loss
ablations lambda_inv = 0, lambda_f = 0 and lambda_v = 0. Steps, each reused from ``--workdir`` when finished:

1. ``make_brains(workdir/brains, n, seed=0, mode="3d", resolution=2)`` (split 4:1:1) and a FLAIR datalist
   ``datalist_flair.json`` beside it (``{"image": flair, "label_l1": whole tumour}``);
2. diffusion pretraining on FLAIR (bundles/diffusion_pretraining, volumes resized to 64^3, 32^3 crops);
3. structure discovery (bundles/structure_discovery, K = 3, stage 2, 64^3): full model and the three ablations;
4. evaluation of each on the test split with the bundle's evaluate.json (HD95 measured with the 2 mm spacing);
5. the two k-means baselines on the same test volumes, at the original 96^3 grid.

Everything trained goes through the bundles' own configs (``python -m monai.bundle run``).

    python benchmarks/brain.py --workdir benchmarks/.work/brain
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from _runner import BUNDLES, ROOT, bundle_config, run_bundle

from monai_ext.baselines.kmeans import kmeans_segment
from monai_ext.bundle import bundle_component, load_weights
from monai_ext.data.brain import make_brains
from monai_ext.data.datalist import SPLITS, load_datalist, read_volume
from monai_ext.engines.report import finite_stats
from monai_ext.metrics import MatchedDiceMetric, MatchedHausdorffDistanceMetric
from monai_ext.networks import DiffusionFeatureExtractor
from monai_ext.provenance import environment, write_json

NUM_PARTS = 3
TUMOUR = 1
FEATURE_STAGE = 2  # the paper used stage-2 features for BraTS
FEATURE_TIMESTEP = 25
IMAGE_SIZE = [64, 64, 64]  # diffusion and segmenter grid; the phantoms are 96^3
ROWS = ("ours", "lambda_inv=0", "lambda_f=0", "lambda_v=0", "kmeans", "features_kmeans")
ABLATIONS = {"lambda_inv=0": {"lambda_inv": 0.0}, "lambda_f=0": {"lambda_f": 0.0}, "lambda_v=0": {"lambda_v": 0.0}}
PAPER_TABLE3 = {  # BraTS'19, whole tumour: (Dice, HD95 in mm)
    "ours": (0.719, 27.838),
    "lambda_inv=0": (0.696, 38.645),
    "lambda_f=0": (0.677, 42.318),
    "lambda_v=0": (0.671, 41.801),
    "kmeans": (0.439, 63.811),
    "features_kmeans": (0.471, 45.917),
}
LABELS = {
    "ours": "Ours",
    "lambda_inv=0": "lambda_inv = 0",
    "lambda_f=0": "lambda_f = 0",
    "lambda_v=0": "lambda_v = 0",
    "kmeans": "k-means",
    "features_kmeans": "Features k-means",
}


def make_data(folder: Path, n: int) -> tuple[Path, float]:
    """Generate the phantoms (unless present) and write ``datalist_flair.json``; return it and the spacing (mm)."""
    if not (folder / "datalist.json").is_file():
        make_brains(folder, n=n, seed=0, mode="3d", resolution=2, overwrite=True)  # overwrite: an interrupted run
    meta = json.loads((folder / "dataset.json").read_text())
    if meta["options"]["n"] != n or meta["options"]["mode"] != "3d" or meta["seed"] != 0:
        raise ValueError(
            f"'{folder}' holds other phantoms ({meta['options']}, seed {meta['seed']}); use another --workdir."
        )
    full = json.loads((folder / "datalist.json").read_text())
    flair = {split: [{"image": r["flair"], "label_l1": r["label"]} for r in full[split]] for split in SPLITS}
    path = folder / "datalist_flair.json"
    path.write_text(json.dumps(flair, indent=2) + "\n")
    return path, float(meta["spacing_mm"])


def write_overrides(work: Path) -> Path:
    """The diffusion grid of the brain runs, layered on the diffusion bundle's train.json."""
    diffusion = work / "diffusion_brain.json"
    diffusion.write_text(json.dumps({"image_size": IMAGE_SIZE}, indent=4) + "\n")
    return diffusion


def pretrain(common: dict, diffusion_override: Path, work: Path, epochs: int | None, reuse: Path | None) -> tuple:
    """The FLAIR diffusion checkpoint: ``reuse`` if given, a finished run in ``work``, else trained now."""
    if reuse is not None:
        return reuse, {"reused": str(reuse)}
    target, done = work / "model.pt", work / "done"
    if done.is_file():
        return target, json.loads(done.read_text())
    configs = [*bundle_config("diffusion_pretraining", "train.json"), str(diffusion_override)]
    overrides = {**common, "output_dir": str(work)}
    if epochs is not None:  # validate (which saves model.pt) at least once
        default_interval = json.loads(Path(configs[0]).read_text())["val_interval"]
        overrides.update(max_epochs=epochs, val_interval=min(default_interval, epochs))
    timing = run_bundle(configs, overrides, work / "train.log")
    done.write_text(json.dumps(timing))
    return target, timing


def discover(common: dict, work: Path, overrides: dict) -> tuple[Path, dict]:
    """Train structure discovery (reusing a finished run in ``work``) and return the selected weights."""
    target, done = work / "model.pt", work / "done"
    if done.is_file():
        return target, json.loads(done.read_text())
    timing = run_bundle(
        bundle_config("structure_discovery", "train.json"),
        {**common, "output_dir": str(work), **overrides},
        work / "train.log",
    )
    done.write_text(json.dumps(timing))
    return target, timing


def evaluate(common: dict, spacing: float, ckpt: Path, out: Path) -> tuple[dict, dict]:
    """Evaluate on the test split (reusing a report newer than ``ckpt``); return the report and the timing."""
    report_path, timing_path = out / "report.json", out / "timing.json"
    if report_path.is_file() and timing_path.is_file() and report_path.stat().st_mtime > ckpt.stat().st_mtime:
        return json.loads(report_path.read_text()), json.loads(timing_path.read_text())
    if out.exists():
        shutil.rmtree(out)
    configs = bundle_config("structure_discovery", "train.json", "evaluate.json")
    overrides = {**common, "ckpt_path": str(ckpt), "eval_output_dir": str(out), "report_classes": [TUMOUR]}
    overrides |= {"hd95_levels": [0], "hd95_spacing": spacing}
    timing = run_bundle(configs, overrides, out.parent / f"{out.name}.log")
    timing_path.write_text(json.dumps(timing))
    return json.loads(report_path.read_text()), timing


def score(parts: np.ndarray, label: np.ndarray, spacing: float) -> tuple[float, float]:
    """Whole-tumour matched Dice and HD95 (mm) of a K-part label map against the tumour label."""
    y_pred = torch.as_tensor(parts)[None, None]
    y = torch.as_tensor(label.astype(np.int64))[None, None]
    dice = MatchedDiceMetric(report_classes=[TUMOUR])(y_pred, y)
    hd95 = MatchedHausdorffDistanceMetric(classes=[TUMOUR], spacing=spacing)(y_pred, y)
    return float(dice[0, 0]), float(hd95[0, 0])


def feature_extractor(diffusion_override: Path, ckpt: Path) -> DiffusionFeatureExtractor:
    """The stage-2 extractor of the pretrained FLAIR diffusion model, built from the bundle's own config."""
    bundle = str(BUNDLES / "diffusion_pretraining")
    configs = ["configs/train.json", str(diffusion_override)]
    unet = load_weights(bundle_component(bundle, "network_def", configs), str(ckpt))
    scheduler = bundle_component(bundle, "scheduler", configs)
    return DiffusionFeatureExtractor(
        unet, scheduler, stages=[FEATURE_STAGE], timestep=FEATURE_TIMESTEP, input_size=tuple(IMAGE_SIZE)
    )


def kmeans_rows(datalist: Path, spacing: float, diffusion_override: Path, ckpt: Path, work: Path) -> dict:
    """k-means on FLAIR intensities and on stage-2 diffusion features (K = 3) on the test split, at 96^3."""
    cache = work / "kmeans.json"
    key = {"datalist": str(datalist), "diffusion_ckpt": str(ckpt), "ckpt_mtime": ckpt.stat().st_mtime}
    if cache.is_file() and (cached := json.loads(cache.read_text())).get("key") == key:
        return cached["rows"]
    extractor = feature_extractor(diffusion_override, ckpt)
    per_volume: dict[str, dict[str, list]] = {row: {"dice": [], "hd95_mm": [], "seconds": []} for row in ROWS[4:]}
    items = load_datalist(datalist, "test")
    torch.manual_seed(0)
    for item in items:
        flair, label = read_volume(item["image"], "image"), read_volume(item["label_l1"], "label_l1")
        start = time.perf_counter()
        parts = kmeans_segment(flair, NUM_PARTS)
        per_volume["kmeans"]["seconds"].append(time.perf_counter() - start)
        for name, value in zip(("dice", "hd95_mm"), score(parts, label, spacing), strict=True):
            per_volume["kmeans"][name].append(value)
        start = time.perf_counter()
        scaled = (flair - flair.min()) / max(float(flair.max() - flair.min()), 1e-8)
        features = extractor(torch.as_tensor(scaled)[None, None])  # (1, C, 96, 96, 96)
        parts = kmeans_segment(features[0].numpy(), NUM_PARTS, channel_first=True)
        per_volume["features_kmeans"]["seconds"].append(time.perf_counter() - start)
        for name, value in zip(("dice", "hd95_mm"), score(parts, label, spacing), strict=True):
            per_volume["features_kmeans"][name].append(value)
    rows = {
        row: {
            "dice": finite_stats(values["dice"]),
            "hd95_mm": finite_stats(values["hd95_mm"]),
            "per_volume": {"image": [item["image"] for item in items], **values},
            "timing": {"seconds": round(float(np.sum(values["seconds"])), 1)},
        }
        for row, values in per_volume.items()
    }
    cache.write_text(json.dumps({"key": key, "rows": rows}, indent=2) + "\n")
    return rows


def _cell(s: dict, digits: int) -> str:
    return f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}" if s else "-"


def table(rows: dict, n_test: int) -> str:
    lines = [
        f"Table 3 on brain phantoms (whole tumour, K = 3 on FLAIR, {n_test} test volumes, 2 mm grid; mean ± sd over "
        "volumes). Paper = Tursynbek & Niethammer 2023 on BraTS'19.",
        f"  {'method':<18}{'Dice WT':<18}{'HD95 (mm)':<20}{'paper Dice WT':>14}{'paper HD95':>12}",
    ]
    for row in ROWS:
        if row not in rows:
            continue
        paper = PAPER_TABLE3[row]
        measured = f"{_cell(rows[row]['dice'], 3):<18}{_cell(rows[row]['hd95_mm'], 2):<20}"
        lines.append(f"  {LABELS[row]:<18}{measured}{paper[0]:>14.3f}{paper[1]:>12.3f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=str(ROOT / "benchmarks" / ".work" / "brain"))
    parser.add_argument("--n", type=int, default=60, help="number of phantoms (split 4:1:1)")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the structure-discovery epochs")
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="override the diffusion epochs")
    parser.add_argument("--diffusion-ckpt", default=None, help="reuse this FLAIR diffusion checkpoint (64^3 grid)")
    parser.add_argument("--skip-ablations", action="store_true", help="train only the full model")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "brain.json"))
    args = parser.parse_args()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    data = work / "brains"
    datalist, spacing = make_data(data, args.n)
    diffusion_override = write_overrides(work)
    common = {"datalist": str(datalist), "dataset_dir": str(data)}
    reuse = Path(args.diffusion_ckpt).resolve() if args.diffusion_ckpt else None
    diffusion_ckpt, pretrain_timing = pretrain(
        common, diffusion_override, work / "diffusion", args.pretrain_epochs, reuse
    )

    discovery = {
        **common,
        "diffusion_ckpt": str(diffusion_ckpt),
        "diffusion_bundle": str(BUNDLES / "diffusion_pretraining"),
        "diffusion_configs": ["configs/train.json", str(diffusion_override)],
        "num_parts": [NUM_PARTS],
        "feature_stages": [FEATURE_STAGE],
        "label_keys": ["label_l1"],
        "spatial_size": IMAGE_SIZE,
    }
    if args.max_epochs is not None:
        discovery["max_epochs"] = args.max_epochs
    runs = {"ours": {}} | ({} if args.skip_ablations else ABLATIONS)
    rows, timings = {}, {"pretraining": pretrain_timing}
    for row, ablation in runs.items():
        tag = row.replace("=", "")
        ckpt, train_timing = discover(discovery, work / f"discovery_{tag}", ablation)
        report, eval_timing = evaluate({**discovery, **ablation}, spacing, ckpt, work / f"eval_{tag}")
        rows[row] = {
            "dice": report["matched_dice"]["ours"][0],
            "hd95_mm": report["matched_hd95"][0],
            "overrides": ablation,
            "timing": {"training": train_timing, "evaluation": eval_timing},
        }

    rows |= kmeans_rows(datalist, spacing, diffusion_override, diffusion_ckpt, work)
    n_test = len(load_datalist(datalist, "test"))
    summary = {
        **environment(),
        "dataset": {
            "generator": "monai_ext.data.brain.make_brains",
            "n": args.n,
            "seed": 0,
            "resolution_mm": spacing,
            "test_volumes": n_test,
            "contrast": "flair",
        },
        "settings": {
            "num_parts": NUM_PARTS,
            "feature_stage": FEATURE_STAGE,
            "feature_timestep": FEATURE_TIMESTEP,
            "image_size": IMAGE_SIZE,
            "max_epochs": args.max_epochs,
            "pretrain_epochs": args.pretrain_epochs,
            "diffusion_ckpt": str(diffusion_ckpt),
        },
        "table3": {row: {"dice": rows[row]["dice"], "hd95_mm": rows[row]["hd95_mm"]} for row in ROWS if row in rows},
        "paper_table3": {row: {"dice": d, "hd95_mm": h} for row, (d, h) in PAPER_TABLE3.items()},
        "runs": rows,
        "timings": timings,
        "wall_time_s": round(time.perf_counter() - start, 1),
    }
    write_json(args.out, summary, overwrite=True)
    print(table(rows, n_test))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

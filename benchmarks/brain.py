"""Unsupervised whole-tumour segmentation on brain phantoms: the paper's Table 3, with brain phantoms for BraTS'19.

BraTS'19 cannot be downloaded here, so this runs the protocol of Tursynbek & Niethammer (MICCAI 2023, Table 3)
on the BraTS-like phantoms of ``monai_ext.data.brain`` (MNI152 anatomy, one glioma-like tumour, 96^3 at 2 mm):
structure discovery with K = 3 parts (background, brain, tumour) on FLAIR alone (``brain.json``: trained as it says,
e.g. 6 parts merged to 3), stage-2 diffusion features, scored by the whole-tumour Dice after Hungarian matching of
the 3 parts to background / tumour and by the HD95 in mm, beside every baseline of the bundle's evaluation on the
same test volumes (``--compare_baselines true``: k-means on FLAIR, BM4D or smoothing + k-means, k-means on the
diffusion features and on its x0 prediction, smoothing or x0 + k-means over-clustered and merged), plus the loss
ablations lambda_inv = 0, lambda_f = 0 and lambda_v = 0. Steps, each reused from ``--workdir`` when finished:

1. ``make_brains(workdir/brains, n, seed, mode="3d", resolution=2)`` (split 4:1:1; with the defaults n = 60, seed 0
   the same phantoms as the brain configs' default dataset; ``--seed`` draws others), read through its
   ``datalist_flair.json``;
2. diffusion pretraining on FLAIR: bundles/diffusion_pretraining ``train.json`` + ``brain.json`` (volumes
   resized to 64^3, 32^3 crops);
3. structure discovery: bundles/structure_discovery ``train.json`` + ``brain.json`` (6 parts after a warm start on
   x0 + k-means, merged to K = 3 by their x0 means; stage 2, 64^3), the full model and the three ablations
   (``--lambda_inv 0`` ...);
4. evaluation of each on the test split with ``train.json`` + ``evaluate.json`` + ``brain.json`` (HD95 in mm), the
   full model's with the baselines, at the phantoms' 96^3 grid.

Everything trained goes through the bundles' own configs (``python -m monai.bundle run``).

    python benchmarks/brain.py --workdir benchmarks/.work/brain
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from steps import (
    BRAIN_CONFIG,
    NUM_PARTS,
    PAPER_TABLE3,
    RESULTS,
    WORK,
    brain_phantoms,
    bundle_config,
    evaluate_discovery,
    pretrain,
    read_config,
    train_once,
)
from summaries.common import paired_cell

from monai_ext.data.brain import TISSUE_LABELS
from monai_ext.data.datalist import load_datalist, read_volume
from monai_ext.metrics import paired_differences
from monai_ext.provenance import environment, write_json

FEATURE_STAGE = BRAIN_CONFIG["feature_stages"][0]  # the paper used stage-2 features for BraTS
FEATURE_TIMESTEP = read_config("structure_discovery", "train.json")["feature_timestep"]
IMAGE_SIZE = BRAIN_CONFIG["spatial_size"]  # diffusion and segmenter grid; the phantoms are 96^3
ABLATIONS = {"lambda_inv=0": {"lambda_inv": 0.0}, "lambda_f=0": {"lambda_f": 0.0}, "lambda_v=0": {"lambda_v": 0.0}}


def diffusion_checkpoint(common: dict, work: Path, epochs: int | None, reuse: Path | None) -> tuple:
    """The FLAIR diffusion checkpoint: ``reuse`` if given, a finished run in ``work``, else trained now."""
    overrides = {**common}
    if epochs is not None:  # validate (which saves model.pt) at least once
        default_interval = read_config("diffusion_pretraining", "train.json")["val_interval"]
        overrides.update(max_epochs=epochs, val_interval=min(default_interval, epochs))
    return pretrain(bundle_config("diffusion_pretraining", "train.json", "brain.json"), work, overrides, reuse)


def evaluate(common: dict, spacing: float, ckpt: Path, out: Path, baselines: bool) -> tuple[dict, dict]:
    """Evaluate on the test split, with every baseline when ``baselines``; return the report and the timing."""
    overrides = {**common, "ckpt_path": str(ckpt), "hd95_spacing": spacing, "compare_baselines": baselines}
    return evaluate_discovery(("brain.json",), overrides, out)


def part_tissue_shares(datalist: Path, labels: Path) -> list[dict[str, float]]:
    """What each discovered part is made of: for the parts of every test volume, largest first, the share of
    their voxels in each class of the phantom's ``tissue`` map, averaged over volumes."""
    shares = []
    for item in load_datalist(datalist, "test"):
        subject = Path(item["image"]).parent.name
        (path,) = (labels / subject).glob("*_l1.nii.gz")
        parts = read_volume(path, "pred_l1").astype(np.int64)
        tissue = read_volume(item["tissue"], "tissue").astype(np.int64)
        by_size = np.argsort(-np.bincount(parts.ravel(), minlength=NUM_PARTS))
        shares.append([[float(np.mean(tissue[parts == k] == v)) for v in TISSUE_LABELS.values()] for k in by_size])
    mean = np.mean(shares, axis=0)
    return [{name: round(float(share), 3) for name, share in zip(TISSUE_LABELS, part, strict=True)} for part in mean]


def baseline_rows(report: dict) -> dict:
    """The baselines of the full model's evaluation, as rows of the table."""
    return {
        method: {"dice": levels[0], "hd95_mm": report["matched_hd95_first_level"][method]}
        for method, levels in report["matched_dice"].items()
        if method != "ours"
    }


def per_volume_comparison(dice: dict[str, list[float]]) -> dict:
    """Per method (the full model ``ours``, its ablations, the baselines), from its whole-tumour Dice per test
    volume: the volumes matched with Dice above 0.5; and ours minus each other method, volume by volume (mean,
    bootstrap 95 % interval, volumes where ours is higher)."""
    return {
        "volumes_above_half": {method: sum(value > 0.5 for value in values) for method, values in dice.items()},
        "ours_minus": {method: paired_differences(dice["ours"], v) for method, v in dice.items() if method != "ours"},
    }


def comparison_table(comparison: dict, n_test: int) -> str:
    lines = [f"  {'method':<22}{'Dice > 0.5':<12}{'ours minus it (95 % interval), ours higher on':<50}"]
    for method, count in comparison["volumes_above_half"].items():
        paired = comparison["ours_minus"].get(method)
        cells = paired_cell(paired) if paired else ""
        lines.append(f"  {method:<22}{f'{count} / {n_test}':<12}{cells}")
    return "\n".join(lines)


def steps_seconds(pretrain_timing: dict, rows: dict) -> float:
    """Seconds of every step of the run, read from their records, so a rerun that reuses them reports the same."""
    seconds = pretrain_timing.get("seconds", 0.0)
    for row in rows.values():
        timing = row.get("timing", {})  # the baselines' rows: timed within the full model's evaluation
        seconds += sum(timing[step]["seconds"] for step in ("training", "evaluation") if step in timing)
        seconds += timing.get("seconds", 0.0)
    return seconds


def _cell(s: dict, digits: int) -> str:
    return f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}" if s else "-"


def table(rows: dict, n_test: int) -> str:
    lines = [
        f"Table 3 on brain phantoms (whole tumour, K = 3 on FLAIR, {n_test} test volumes, 2 mm grid; mean ± sd over "
        "volumes). Paper = Tursynbek & Niethammer 2023 on BraTS'19.",
        f"  {'method':<22}{'Dice WT':<18}{'HD95 (mm)':<20}{'paper Dice WT':>14}{'paper HD95':>12}",
    ]
    for row, values in rows.items():
        paper = PAPER_TABLE3.get(row)
        paper_cells = f"{paper[0]:>14.3f}{paper[1]:>12.3f}" if paper else ""
        lines.append(f"  {row:<22}{_cell(values['dice'], 3):<18}{_cell(values['hd95_mm'], 2):<20}{paper_cells}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=str(WORK / "brain"))
    parser.add_argument("--n", type=int, default=60, help="number of phantoms (split 4:1:1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the phantoms (another draw of the data)")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the structure-discovery epochs")
    parser.add_argument("--pretrain-epochs", type=int, default=None, help="override the diffusion epochs")
    parser.add_argument("--diffusion-ckpt", default=None, help="reuse this FLAIR diffusion checkpoint (64^3 grid)")
    parser.add_argument("--skip-ablations", action="store_true", help="train only the full model")
    parser.add_argument("--out", default=str(RESULTS / "brain.json"))
    args = parser.parse_args()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    data = work / "brains"
    datalist, spacing = brain_phantoms(data, args.n, args.seed)
    common = {"dataset_dir": str(data)}
    reuse = Path(args.diffusion_ckpt).resolve() if args.diffusion_ckpt else None
    diffusion_ckpt, pretrain_timing = diffusion_checkpoint(common, work / "diffusion", args.pretrain_epochs, reuse)

    discovery = {**common, "diffusion_ckpt": str(diffusion_ckpt)}
    if args.max_epochs is not None:
        discovery["max_epochs"] = args.max_epochs
    runs = {"ours": {}} | ({} if args.skip_ablations else ABLATIONS)
    rows, timings, volumes = {}, {"pretraining": pretrain_timing}, {}
    for row, ablation in runs.items():
        tag = row.replace("=", "")
        configs = bundle_config("structure_discovery", "train.json", "brain.json")
        ckpt, train_timing = train_once(configs, work / f"discovery_{tag}", {**discovery, **ablation})
        report, eval_timing = evaluate({**discovery, **ablation}, spacing, ckpt, work / f"eval_{tag}", row == "ours")
        rows[row] = {
            "dice": report["matched_dice"]["ours"][0],
            "hd95_mm": report["matched_hd95"][0],
            "parts_used": report["parts_used"],  # per level: the merged K = 3, then the trained parts
            "overrides": ablation,
            "timing": {"training": train_timing, "evaluation": eval_timing},
            "part_tissue_shares": part_tissue_shares(datalist, work / f"eval_{tag}" / "labels"),
        }
        volumes[row] = report["matched_dice_per_volume"]["ours"][0]
        if row == "ours":
            baselines = baseline_rows(report)
            volumes |= {m: levels[0] for m, levels in report["matched_dice_per_volume"].items() if m != "ours"}
    rows |= baselines
    comparison = per_volume_comparison(volumes)
    n_test = len(load_datalist(datalist, "test"))
    summary = {
        **environment(),
        "dataset": {
            "generator": "monai_ext.data.brain.make_brains",
            "n": args.n,
            "seed": args.seed,
            "resolution_mm": spacing,
            "test_volumes": n_test,
            "contrast": "flair",
        },
        "settings": {
            "num_parts": NUM_PARTS,
            "trained_parts": BRAIN_CONFIG["num_parts"],
            "feature_stage": FEATURE_STAGE,
            "feature_timestep": FEATURE_TIMESTEP,
            "image_size": IMAGE_SIZE,
            "max_epochs": args.max_epochs,
            "pretrain_epochs": args.pretrain_epochs,
            "diffusion_ckpt": str(diffusion_ckpt),
        },
        "table3": {row: {"dice": values["dice"], "hd95_mm": values["hd95_mm"]} for row, values in rows.items()},
        "paper_table3": {row: {"dice": d, "hd95_mm": h} for row, (d, h) in PAPER_TABLE3.items()},
        "per_volume": comparison,
        "runs": rows,
        "timings": timings,
        "wall_time_s": round(time.perf_counter() - start, 1),  # of this invocation, which reuses finished steps
        "steps_seconds": round(steps_seconds(pretrain_timing, rows), 1),  # every step, whenever it ran
    }
    write_json(args.out, summary, overwrite=True)
    print(table(rows, n_test))
    print(comparison_table(comparison, n_test))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

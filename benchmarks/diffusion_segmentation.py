"""Diffusion segmentation ensembles against one sample, faster samplers and a supervised U-Net: Wolleb et al.
(MIDL 2022), Table 1 and Fig. 4, on the brain-phantom slices of the bundle's default data.

Steps, each reused from ``--workdir`` when finished:

1. the mask DDPM: the shipped ``models/model.pt`` (``--diffusion-ckpt``), else trained with the bundle's
   ``train.json`` (the CPU recipe);
2. the supervised baseline: the bundle's ``train.json`` + ``supervised.json`` (MONAI UNet with dropout, the same
   data, grid and budget);
3. on the test slices through the tumour, in this process with the bundle's own preprocessing, network and
   inferers: DDIM (50 steps) ensembles of ``max(--sizes)`` samples, scored for one sample and the ensemble of 5
   (Dice, HD95, Jaccard, empty predictions; ``monai_ext.engines.EnsembleReport``, which also scores the
   uncertainty map), Dice against the ensemble size (``--sizes``, the paper's Fig. 4, as a PNG), and the tumour-free
   test slices (how often the ensemble marks tumour there);
4. the samplers on the first ``--sampler-slices`` tumour slices: DDPM with all T = 1000 steps against DDIM with
   25, 50 and 100 steps (ensembles of 5; Dice and seconds per sample);
5. the supervised U-Net on the same slices: dropout off (one prediction) and its Monte-Carlo-dropout ensemble of 5,
   scored by the same report;
6. the cost at the paper's 128 x 128 grid: one ensemble of 5 with each sampler, on the first tumour slice
   upsampled (the network is convolutional; timing only, the weights were trained at the bundle's grid), with
   the process's peak resident memory after each stage.

    python benchmarks/diffusion_segmentation.py --workdir benchmarks/.work/diffusion_segmentation
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import torch
from ignite.engine import Engine
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from monai.bundle import ConfigParser
from steps import (
    ENSEMBLE,
    RESULTS,
    ROOT,
    SAMPLER_STEPS,
    WORK,
    bundle_config,
    ensemble_inferer,
    segmentation_parser,
    test_items,
    train_once,
    tumour,
)

from monai_ext.engines import EnsembleReport, slice_scores
from monai_ext.engines.ensemble_report import summarize_scores
from monai_ext.inferers import MonteCarloDropoutInferer
from monai_ext.inferers.ensemble import ensemble_outputs
from monai_ext.metrics import finite_stats
from monai_ext.provenance import environment, write_json
from monai_ext.transforms import SplitEnsembled
from monai_ext.weights import load_weights

BUNDLE = "diffusion_segmentation"
PAPER_TABLE1 = {  # BraTS, Wolleb et al. 2022, Table 1: Dice, HD95, Jaccard (all test slices)
    "1 sampling run": (0.866, 6.813, 0.788),
    "ensemble of 5": (0.881, 6.387, 0.802),
    "nnU-Net": (0.891, 6.000, 0.818),
}


def sample(network: torch.nn.Module, inferer, items: list[dict], num_samples: int) -> tuple[list[dict], float]:
    """Run ``inferer`` on each item alone; return the split outputs and the seconds per item."""
    split = SplitEnsembled("pred", num_samples=num_samples)
    outputs, start = [], time.perf_counter()
    with torch.no_grad():
        for item in items:
            pred = inferer(item["image"][None], network)[0]
            outputs.append(split({**item, "pred": pred}))
    return outputs, (time.perf_counter() - start) / max(len(items), 1)


def subset(outputs: list[dict], size: int, threshold: float = 0.5) -> list[dict]:
    """The ensemble of the first ``size`` samples of each output (one mask channel), in the split layout."""
    split = SplitEnsembled("pred", num_samples=size)
    packed = (ensemble_outputs(item["pred_samples"][:size][None, :, None], threshold)[0] for item in outputs)
    return [split({**item, "pred": pred}) for item, pred in zip(outputs, packed, strict=True)]


def report(outputs: list[dict], folder: Path) -> dict:
    """``EnsembleReport`` over ``outputs`` (an engine whose iterations emit one item each)."""
    reporter = EnsembleReport(folder, overwrite=True)
    engine = Engine(lambda engine, batch: batch)
    reporter.attach(engine)
    engine.run([[item] for item in outputs])
    return reporter.report()


def dice_curve(outputs: list[dict], sizes: list[int]) -> dict[int, dict]:
    """Mean Dice of the ensemble of the first k samples on the tumour slices, for k in ``sizes``."""
    curve = {}
    for size in sizes:
        scores = [slice_scores(item["pred"][0], item["label"][0]) for item in tumour(subset(outputs, size))]
        curve[size] = finite_stats([s["dice"] for s in scores])
    return curve


def plot_curve(curve: dict[int, dict], supervised: float, path: Path) -> None:
    """Dice against ensemble size (Wolleb et al., Fig. 4), with the supervised U-Net as a line."""
    figure = Figure(figsize=(4.5, 3.2))
    FigureCanvasAgg(figure)
    axis = figure.add_subplot(1, 1, 1)
    sizes = sorted(curve)
    axis.errorbar(sizes, [curve[k]["mean"] for k in sizes], fmt="o-", label="diffusion ensemble (DDIM 50)")
    axis.axhline(supervised, color="gray", linestyle="--", label="supervised U-Net")
    axis.set_xscale("log")
    axis.set_xticks(sizes, [str(k) for k in sizes])
    axis.set_xlabel("ensemble size")
    axis.set_ylabel("mean Dice (tumour slices)")
    axis.legend(fontsize=8)
    figure.savefig(path, dpi=120, bbox_inches="tight")


def cost(seconds: float, num_samples: int = ENSEMBLE) -> dict:
    """Seconds per ensemble and per sample of one ensemble of ``num_samples``."""
    return {"seconds_per_ensemble": round(seconds, 2), "seconds_per_sample": round(seconds / num_samples, 3)}


def sampler_rows(network, parser: ConfigParser, items: list[dict], work: Path) -> dict:
    """DDPM with all T steps against DDIM with 25, 50 and 100 steps: ensembles of 5 on ``items``."""
    rows = {}
    for name, steps in SAMPLER_STEPS.items():
        print(f"sampler {name}: {len(items)} slices", flush=True)
        outputs, seconds = sample(network, ensemble_inferer(name, parser), items, ENSEMBLE)
        rows[name] = {
            "steps": steps or parser["num_train_timesteps"],
            "report": report(outputs, work / f"sampler_{name}"),
            **cost(seconds),
        }
    ddpm = rows["ddpm"]["seconds_per_sample"]
    for row in rows.values():
        row["speedup_vs_ddpm"] = round(ddpm / row["seconds_per_sample"], 1)
    return rows


def timing_at(network, parser: ConfigParser, image: torch.Tensor, size: int) -> dict:
    """Seconds per sample and per ensemble of 5 for each sampler on ``image`` resized to ``size`` x ``size``."""
    image = torch.nn.functional.interpolate(image[None], size=(size, size), mode="bilinear")
    rows = {}
    for name in ("ddpm", "ddim_50"):
        print(f"timing {name} at {size} x {size}", flush=True)
        start = time.perf_counter()
        with torch.no_grad():
            ensemble_inferer(name, parser)(image, network)
        rows[name] = {**cost(time.perf_counter() - start), "peak_memory_mb_process": round(peak_memory_mb(), 1)}
    return rows


def peak_memory_mb() -> float:
    """The peak resident memory of this process so far, in MB (Linux ``ru_maxrss``, KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def supervised_rows(ckpt: Path, items: list[dict], work: Path) -> dict:
    """The supervised U-Net: dropout off (one prediction) and its Monte-Carlo-dropout ensemble of 5."""
    parser = segmentation_parser("train.json", "supervised.json")
    network = load_weights(parser.get_parsed_content("network_def"), str(ckpt)).eval()
    deterministic = []
    with torch.no_grad():
        for item in tumour(items):
            probability = torch.sigmoid(network(item["image"][None]))[0]
            deterministic.append(slice_scores(probability[0] > 0.5, item["label"][0]))
    outputs, seconds = sample(network, MonteCarloDropoutInferer(num_samples=ENSEMBLE, seed=0), items, ENSEMBLE)
    return {
        "dropout_off": summarize_scores(deterministic),
        "mc_dropout": report(outputs, work / "supervised_mc_dropout"),
        "seconds_per_ensemble": round(seconds, 3),
    }


def table(result: dict) -> str:
    """Table 1 layout: Dice [without empty], HD95, Jaccard [without empty], empty predictions; paper beside."""
    main, sup = result["ensemble"], result["supervised"]
    rows = [
        ("1 sampling run", main["report"]["single_sample"], PAPER_TABLE1["1 sampling run"]),
        (f"ensemble of {ENSEMBLE}", main["report"]["ensemble"], PAPER_TABLE1["ensemble of 5"]),
        ("supervised U-Net", sup["dropout_off"], PAPER_TABLE1["nnU-Net"]),
        ("U-Net MC dropout x5", sup["mc_dropout"]["ensemble"], None),
    ]
    cell = lambda s, d=3: f"{s['mean']:.{d}f}" if s else "-"  # noqa: E731
    lines = [f"{'method':<22}{'Dice':<18}{'HD95':<8}{'Jaccard':<18}{'empty':<9}paper Dice / HD95 / Jaccard"]
    for name, s, paper in rows:
        dice = f"{cell(s['dice'])} [{cell(s['dice_without_empty'])}]"
        jaccard = f"{cell(s['jaccard'])} [{cell(s['jaccard_without_empty'])}]"
        paper_cell = " / ".join(f"{v:.3f}" for v in paper) if paper else "-"
        empty = f"{s['empty_predictions']}/{s['slices']}"
        lines.append(f"{name:<22}{dice:<18}{cell(s['hd95'], 2):<8}{jaccard:<18}{empty:<9}{paper_cell}")
    lines.append("")
    lines.append(f"{'uncertainty':<22}{'boundary/elsewhere':<20}{'variance-error AUROC':<22}ECE of the mean map")
    for name, u in (
        ("diffusion ensemble", main["report"]["uncertainty"]),
        ("U-Net MC dropout", sup["mc_dropout"]["uncertainty"]),
    ):
        lines.append(
            f"{name:<22}{u['boundary_variance_ratio']:<20.2f}{u['variance_error_auroc']:<22.3f}{u['mean_map_ece']:.4f}"
        )
    lines.append("")
    lines.append(f"{'sampler (ensemble of 5)':<26}{'Dice':<8}{'s / sample':<12}speed-up vs DDPM")
    for name, row in result["samplers"].items():
        dice = row["report"]["ensemble"]["dice"]
        lines.append(f"{name:<26}{cell(dice):<8}{row['seconds_per_sample']:<12}{row['speedup_vs_ddpm']}x")
    curve = ", ".join(f"{k}: {v['mean']:.3f}" for k, v in result["dice_vs_ensemble_size"].items())
    lines.append(f"Dice against ensemble size (DDIM 50): {curve}")
    for name, row in result["timing_128"].items():
        lines.append(
            f"128 x 128, {name}: {row['seconds_per_sample']} s / sample, {row['seconds_per_ensemble']} s / ensemble"
            f" of {ENSEMBLE}, peak {row['peak_memory_mb_process']} MB"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=str(WORK / "diffusion_segmentation"))
    parser.add_argument("--dataset-dir", default=None, help="a slice dataset (default: the bundle's default data)")
    parser.add_argument("--diffusion-ckpt", default=None, help="reuse these mask-DDPM weights instead of training")
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 2, 5, 10, 20], help="ensemble sizes of Fig. 4")
    parser.add_argument("--sampler-slices", type=int, default=10, help="tumour slices of the sampler comparison")
    parser.add_argument("--max-epochs", type=int, default=None, help="override both trainings' epochs (smoke runs)")
    parser.add_argument("--out", default=str(RESULTS / "diffusion_segmentation.json"))
    args = parser.parse_args()
    if ENSEMBLE not in args.sizes or min(args.sizes) < 1:
        raise SystemExit(f"--sizes must be >= 1 and include {ENSEMBLE}, got {args.sizes}.")
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(min(torch.get_num_threads(), 2))

    overrides = {"dataset_dir": args.dataset_dir} if args.dataset_dir else {}
    if args.max_epochs is not None:
        overrides.update(max_epochs=args.max_epochs, val_interval=args.max_epochs)
    if args.diffusion_ckpt:
        ckpt, diffusion_timing = Path(args.diffusion_ckpt).resolve(), {"reused": str(args.diffusion_ckpt)}
    else:
        ckpt, diffusion_timing = train_once(bundle_config(BUNDLE, "train.json"), work / "diffusion", overrides)
    supervised_configs = bundle_config(BUNDLE, "train.json", "supervised.json")
    sup_ckpt, sup_timing = train_once(supervised_configs, work / "supervised", overrides)

    config = segmentation_parser("train.json", **({"dataset_dir": args.dataset_dir} if args.dataset_dir else {}))
    items = test_items(config)
    network = load_weights(config.get_parsed_content("network_def"), str(ckpt)).eval()
    largest = max(args.sizes)
    print(f"DDIM 50, ensembles of {largest}: {len(items)} test slices", flush=True)
    outputs, seconds = sample(network, ensemble_inferer("ddim_50", config, largest), items, largest)
    peak_mb = peak_memory_mb()
    curve = dice_curve(outputs, sorted(args.sizes))
    ensemble = {
        "report": report(subset(outputs, ENSEMBLE), work / "ensemble"),
        "seconds_per_ensemble_of_largest": round(seconds, 2),
        "seconds_per_sample": round(seconds / largest, 3),
    }
    samplers = sampler_rows(network, config, tumour(items)[: args.sampler_slices], work)
    supervised = supervised_rows(sup_ckpt, items, work)
    timing_128 = timing_at(network, config, tumour(items)[0]["image"], 128)
    png = Path(args.out).with_name("diffusion_segmentation_ensemble_size.png")
    plot_curve(curve, supervised["dropout_off"]["dice"]["mean"], png)

    result = {
        **environment(),
        "dataset": str(args.dataset_dir or "brain_slices (the bundle's default data)"),
        "test_slices": len(items),
        "tumour_slices": len(tumour(items)),
        "diffusion_ckpt": str(ckpt),
        "ensemble": ensemble,
        "dice_vs_ensemble_size": {str(k): v for k, v in curve.items()},
        "samplers": samplers,
        "sampler_slices": min(args.sampler_slices, len(tumour(items))),
        "supervised": supervised,
        "peak_memory_mb_process": round(peak_mb, 1),
        "timing_128": timing_128,
        "max_epochs": args.max_epochs,
        "timings": {"diffusion_training": diffusion_timing, "supervised_training": sup_timing},
        "paper_table1": PAPER_TABLE1,
        "figure": str(png.relative_to(ROOT)) if png.is_relative_to(ROOT) else str(png),
    }
    write_json(args.out, result, overwrite=True)
    print(table(result))
    print(f"results written to {args.out}; figure {png}")


if __name__ == "__main__":
    main()

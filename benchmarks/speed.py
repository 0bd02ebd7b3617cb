"""Speed of the diffusion pretraining (CPU recipe vs paper setting) and of discovery with / without the
feature cache, measured here with the bundles' own network definitions.

    python benchmarks/speed.py --out benchmarks/results/speed.json

* pretraining: seconds per training iteration (forward, L1 loss, backward, Adam step) and peak resident
  memory, for train.json (batch 2 x 2 crops of 32^3) and train_paper.json (batch 4 of 64^3); the paper
  setting may not fit in memory here, in which case the error is recorded;
* discovery: seconds per training volume of the DiscoveryTrainer with the feature cache warm (features read
  from the cache) and with features recomputed at every step, for the CPU diffusion network and the paper one.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import torch
from steps import BUNDLES, RESULTS, WORK, bundle_config, cell_phantoms, log_beside, logged_seconds, run_bundle

from monai_ext.bundle import bundle_component
from monai_ext.losses import DiscoveryLoss
from monai_ext.networks import DiffusionFeatureExtractor, FeatureCache, HierarchicalSegmenter
from monai_ext.provenance import environment, peak_memory_mb, write_json

DIFFUSION = str(BUNDLES / "diffusion_pretraining")
SETTINGS = {
    "cpu_recipe": {"configs": ["configs/train.json"], "batch": (4, 32)},
    "paper": {"configs": ["configs/train.json", "configs/train_paper.json"], "batch": (4, 64)},
}


def pretraining_speed(name: str, iterations: int) -> dict:
    """Seconds per iteration (median of ``iterations`` after one warm-up) and peak memory of one setting."""
    configs = SETTINGS[name]["configs"]
    batch, size = SETTINGS[name]["batch"]
    net = bundle_component(DIFFUSION, "network_def", configs)
    scheduler = bundle_component(DIFFUSION, "scheduler", configs)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-4)
    x0 = torch.rand(batch, 1, size, size, size) * 2 - 1
    parameters = sum(p.numel() for p in net.parameters()) / 1e6
    times = []
    try:
        for _ in range(iterations + 1):
            start = time.perf_counter()
            t = torch.randint(0, scheduler.num_train_timesteps, (batch,))
            noisy = scheduler.add_noise(x0, torch.randn_like(x0), t)
            loss = torch.nn.functional.l1_loss(net(noisy, timesteps=t), x0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
    except RuntimeError as error:  # out of memory on a small machine
        return {"error": str(error)[:300], "peak_memory_mb": round(peak_memory_mb(), 1)}
    finally:
        del net, optimizer
        gc.collect()
    steady = sorted(times[1:])
    return {
        "batch": f"{batch} x {size}^3",
        "seconds_per_iteration": round(steady[len(steady) // 2], 3),
        "parameters_m": round(parameters, 2),
        "peak_memory_mb": round(peak_memory_mb(), 1),
    }


def discovery_speed(name: str, volumes: int) -> dict:
    """Seconds per training volume of one discovery step, with a warm cache and with recomputed features."""
    configs = SETTINGS[name]["configs"]
    unet = bundle_component(DIFFUSION, "network_def", configs)
    scheduler = bundle_component(DIFFUSION, "scheduler", configs)
    size = bundle_component(DIFFUSION, "image_size", configs)
    extractor = DiffusionFeatureExtractor(unet, scheduler, stages=(1, 2, 3), input_size=size)
    network = HierarchicalSegmenter()
    loss_fn = DiscoveryLoss()
    optimizer = torch.optim.Adam(network.parameters(), lr=3e-4)
    cache = FeatureCache(extractor, num_draws=1)
    images = [torch.rand(1, 1, 48, 48, 48) for _ in range(volumes)]
    keys = [f"volume_{i}" for i in range(volumes)]

    def step(x: torch.Tensor, key: str, cached: bool) -> None:
        native = cache.native(x, [key], draw=0) if cached else extractor.native(x)
        features = [DiffusionFeatureExtractor.upsample([native[s]], x.shape[2:]) for s in (1, 2, 3)]
        masks = network.split(network(x))
        transformed = network.split(network(x**1.05))
        loss, _ = loss_fn(masks, transformed, x, features)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    for x, key in zip(images, keys, strict=True):  # fill the cache (and warm up)
        step(x, key, cached=True)
    result = {}
    for label, cached in (("cached", True), ("recomputed", False)):
        start = time.perf_counter()
        for x, key in zip(images, keys, strict=True):
            step(x, key, cached)
        result[f"seconds_per_volume_{label}"] = round((time.perf_counter() - start) / volumes, 3)
    result["speedup"] = round(result["seconds_per_volume_recomputed"] / result["seconds_per_volume_cached"], 2)
    return result


def cache_comparison(data: Path, work: Path, volumes: int, epochs: int) -> dict:
    """The structure_discovery bundle trained on ``volumes`` training phantoms with and without the feature
    cache: time per epoch and matched Dice on the 20 test volumes."""
    full = json.loads((data / "datalist.json").read_text())
    resolve = lambda item: {k: str(data / v) if isinstance(v, str) else v for k, v in item.items()}  # noqa: E731
    subset = {"training": full["training"][:volumes], "validation": full["validation"][:5], "test": full["test"]}
    datalist = work / "cache_comparison_datalist.json"
    datalist.write_text(json.dumps({k: [resolve(i) for i in v] for k, v in subset.items()}))
    common = {"datalist": str(datalist), "dataset_dir": str(data), "max_epochs": epochs}
    result = {"training_volumes": volumes, "epochs": epochs}
    for label, cached in (("cached", True), ("recomputed", False)):
        run = work / f"cache_comparison_{label}"
        if run.exists():
            shutil.rmtree(run)
        timing = run_bundle(
            bundle_config("structure_discovery", "train.json"),
            {**common, "use_feature_cache": cached, "output_dir": str(run)},
            log_beside(run),
        )
        run_bundle(
            bundle_config("structure_discovery", "train.json", "evaluate.json"),
            {**common, "ckpt_path": str(run / "model.pt"), "eval_output_dir": str(run / "eval")},
            log_beside(run, "evaluate"),
        )
        report = json.loads((run / "eval" / "report.json").read_text())
        seconds = logged_seconds(log_beside(run), "DiscoveryTrainer", r"Epoch\[\d+\] Complete")
        result[label] = {
            "epoch_seconds": seconds,
            "median_epoch_seconds_after_first": statistics.median(seconds[1:]) if len(seconds) > 1 else None,
            "matched_dice": [level.get("mean") for level in report["matched_dice"]["ours"]],
            "wall_seconds": timing["seconds"],
        }
    cached, recomputed = result["cached"], result["recomputed"]
    if cached["median_epoch_seconds_after_first"] and recomputed["median_epoch_seconds_after_first"]:
        result["speedup"] = round(
            recomputed["median_epoch_seconds_after_first"] / cached["median_epoch_seconds_after_first"], 2
        )
    result["dice_difference"] = [
        round(a - b, 4) for a, b in zip(cached["matched_dice"], recomputed["matched_dice"], strict=True)
    ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=5, help="timed iterations (paper setting: 1)")
    parser.add_argument("--volumes", type=int, default=8, help="timed discovery volumes (paper setting: 2)")
    parser.add_argument("--skip-paper", action="store_true", help="skip the paper setting (about 21 GB here)")
    parser.add_argument("--cache-volumes", type=int, default=20, help="training volumes of the cache comparison")
    parser.add_argument("--cache-epochs", type=int, default=6, help="epochs of the cache comparison (0: skip)")
    parser.add_argument("--workdir", default=str(WORK))
    parser.add_argument("--out", default=str(RESULTS / "speed.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    names = ["cpu_recipe"] + ([] if args.skip_paper else ["paper"])
    results = {"torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}
    for name in names:
        small = name == "cpu_recipe"
        results[f"pretraining_{name}"] = pretraining_speed(name, args.iterations if small else 1)
        print(name, "pretraining", results[f"pretraining_{name}"], flush=True)
        results[f"discovery_{name}_features"] = discovery_speed(name, args.volumes if small else 2)
        print(name, "discovery", results[f"discovery_{name}_features"], flush=True)
    if args.cache_epochs:
        data = cell_phantoms(Path(args.workdir) / "phantoms_regular", "regular")
        results["bundle_feature_cache"] = cache_comparison(
            data, Path(args.workdir), args.cache_volumes, args.cache_epochs
        )
        print("feature cache in the bundle", results["bundle_feature_cache"], flush=True)
    write_json(Path(args.out), {**environment(), **results}, overwrite=True)
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

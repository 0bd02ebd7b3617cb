"""Seconds of one structure-discovery training step per 48^3 volume, against the segmenter alone (issue 31, item 6).

Built from the bundle's own ``train.json`` (its network, loss and feature cache, the shipped cell diffusion model),
on random volumes, three kinds of step, timed in turn volume by volume so that other load on the machine falls on
all three alike (the median per kind is reported; run it on an otherwise idle machine):

- ``segmenter``: the ``HierarchicalSegmenter``'s forward and backward on x and on its photometric transform T(x),
  with no loss beyond the masks' sum: the floor of any step;
- ``cached``: the bundle's step with a warm feature cache, the consistency terms computed on the features' own
  grids (``UpsampledFeatures``), as ``DiscoveryTrainer`` runs it;
- ``cached_upsampled``: the same with the features upsampled to the image grid first (as before issue 31).

It also records the largest relative difference between the losses of the two cached kinds.

    python benchmarks/discovery_step.py
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from monai.bundle import ConfigParser
from steps import BUNDLES, RESULTS, bundle_config

from monai_ext.engines.discovery import level_stages
from monai_ext.networks import UpsampledFeatures
from monai_ext.provenance import environment, peak_memory_mb, write_json

KINDS = ("segmenter", "cached", "cached_upsampled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volumes", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS / "discovery_step.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    config = ConfigParser()
    config.read_config(bundle_config("structure_discovery", "train.json"))
    config.update({"bundle_root": str(BUNDLES / "structure_discovery"), "device": "cpu"})
    network = config.get_parsed_content("network_def")
    loss_fn = config.get_parsed_content("loss")
    cache = config.get_parsed_content("feature_cache")
    stages = level_stages(config["feature_stages"])
    optimizer = torch.optim.Adam(network.parameters(), lr=config["learning_rate"])
    size = tuple(config["spatial_size"])
    volumes = [torch.rand(1, 1, *size) for _ in range(args.volumes)]

    def step(x: torch.Tensor, key: str, kind: str) -> float | None:
        masks = network.split(network(x))
        transformed = network.split(network(x**1.05))
        if kind == "segmenter":
            loss, value = sum(m.sum() for m in masks + transformed), None
        else:
            native = cache.native(x, [key], draw=0)
            features = [UpsampledFeatures([native[s] for s in level], size) for level in stages]
            if kind == "cached_upsampled":
                features = [f.dense() for f in features]
            loss, _ = loss_fn(masks, transformed, x, features)
            value = float(loss.detach())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return value

    network.train()
    for index, x in enumerate(volumes):  # fill the cache and warm up
        step(x, f"volume{index}", "cached")
    seconds: dict[str, list[float]] = {kind: [] for kind in KINDS}
    losses: dict[str, list[float]] = {"cached": [], "cached_upsampled": []}
    state = {k: v.clone() for k, v in network.state_dict().items()}
    for round_index in range(args.rounds):
        for index, x in enumerate(volumes):
            for kind in KINDS:
                network.load_state_dict(state)  # the same weights and dropout for every kind: comparable losses
                torch.manual_seed(round_index * len(volumes) + index)
                start = time.perf_counter()
                value = step(x, f"volume{index}", kind)
                seconds[kind].append(time.perf_counter() - start)
                if value is not None:
                    losses[kind].append(value)
        state = {k: v.clone() for k, v in network.state_dict().items()}
    median = {kind: statistics.median(values) for kind, values in seconds.items()}
    difference = max(abs(a - b) / abs(b) for a, b in zip(losses["cached"], losses["cached_upsampled"], strict=True))
    result = {
        **environment(),
        "spatial_size": list(size),
        "num_parts": config["num_parts"],
        "feature_stages": config["feature_stages"],
        "timed_steps_per_kind": len(seconds["cached"]),
        "median_seconds_per_volume": {kind: round(value, 3) for kind, value in median.items()},
        "cached_over_segmenter": round(median["cached"] / median["segmenter"], 2),
        "cached_upsampled_over_segmenter": round(median["cached_upsampled"] / median["segmenter"], 2),
        "max_relative_loss_difference": difference,
        "peak_memory_mb": round(peak_memory_mb(), 1),
    }
    write_json(args.out, result, overwrite=True)
    print({k: result[k] for k in list(result)[-6:]})
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

"""Wall time of structure discovery's CPU recipes as a user reruns them (issue 31: the cell recipe within 60 minutes,
the brain recipe within 90, on this 2-core machine).

Each recipe is the two bundle commands its READMEs give, on the bundle's default data, run in turn into a fresh
``--workdir`` with torch on every core (no thread cap):

- ``cells``: ``diffusion_pretraining`` ``train.json``, then ``structure_discovery`` ``train.json`` with those
  weights (``--diffusion_ckpt``);
- ``brains``: the same with ``brain.json`` layered on both.

The default data are generated first when missing, outside the timed steps (a user's first run makes them once).
The targets are for an otherwise idle machine: run it alone. Each step is reused from ``--workdir``
when it finished (its recorded time is kept).

    python benchmarks/recipes.py --recipes cells brains
"""

from __future__ import annotations

import argparse
from pathlib import Path

from steps import RESULTS, WORK, bundle_config, train_once

from monai_ext.bundle.default_data import default_dataset_dir, ensure_default_data
from monai_ext.provenance import environment, write_json

RECIPES = {  # recipe: its default dataset and the overlay of both bundles
    "cells": ("phantoms_regular", ()),
    "brains": ("brains", ("brain.json",)),
}
TARGET_MINUTES = {"cells": 60, "brains": 90}


def run_recipe(name: str, work: Path) -> dict:
    """Both steps of one recipe: their timings and the total."""
    dataset, overlays = RECIPES[name]
    data = ensure_default_data(default_dataset_dir(dataset))
    steps = {}
    configs = bundle_config("diffusion_pretraining", "train.json", *overlays)
    diffusion, steps["diffusion pretraining"] = train_once(configs, work / name / "diffusion", {"dataset_dir": data})
    configs = bundle_config("structure_discovery", "train.json", *overlays)
    overrides = {"dataset_dir": data, "diffusion_ckpt": str(diffusion)}
    _, steps["structure discovery"] = train_once(configs, work / name / "discovery", overrides)
    total = sum(step["seconds"] for step in steps.values())
    return {
        "dataset": dataset,
        "overlays": list(overlays),
        "steps": steps,
        "total_seconds": round(total, 1),
        "target_minutes": TARGET_MINUTES[name],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--workdir", default=str(WORK / "recipes"))
    parser.add_argument("--out", default=str(RESULTS / "recipes.json"))
    args = parser.parse_args()
    work = Path(args.workdir).resolve()
    results = {name: run_recipe(name, work) for name in args.recipes}
    write_json(args.out, {**environment(), "recipes": results}, overwrite=True)
    for name, result in results.items():
        minutes = {step: f"{timing['seconds'] / 60:.1f} min" for step, timing in result["steps"].items()}
        print(f"{name}: {minutes}, total {result['total_seconds'] / 60:.1f} min (target {result['target_minutes']})")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

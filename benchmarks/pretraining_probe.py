"""Do the brain diffusion model's features separate the tumour better with more pretraining? (issue 31, item 2)

Pretrains the FLAIR diffusion model of the brain recipe (bundles/diffusion_pretraining ``train.json`` +
``brain.json``) on the brain phantoms of ``benchmarks/probe.py`` (n = 60, seed 0) in one run folder, resumed to each
of ``--iterations`` in turn (default 800, the recipe, then 2k, 5k and 10k; an iteration is one batch, so the epochs
are the iterations over ceil(training volumes / batch size)). After each it saves the weights of that iteration and
runs ``probe.py --dataset brains`` with them on the x0 prediction and the feature stage ``brain.json`` uses: the
linear probe's and k-means' whole-tumour and tissue Dice against pretraining iterations. Finished steps are reused.
Each resumed segment starts from the run's checkpoint (weights, optimizer, epoch) with the bundle's seed, so its data
order repeats that of the first epochs: close to, not the same as, one uninterrupted run.

    python benchmarks/pretraining_probe.py --workdir benchmarks/.work/pretraining_probe
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from pathlib import Path

import torch
from steps import RESULTS, WORK, brain_phantoms, bundle_config, log_beside, read_config, run_bundle

from monai_ext.data.datalist import load_datalist
from monai_ext.provenance import environment, write_json
from monai_ext.weights import save_weights, settings_path

PRETRAINING = read_config("diffusion_pretraining", "train.json")
FEATURE_STAGE = read_config("structure_discovery", "brain.json")["feature_stages"][0]


def weights_at(run: Path, epochs: int, out: Path) -> Path:
    """The network weights of the run's checkpoint after ``epochs`` epochs, saved as ``out`` with the settings the
    run's own ``model.json`` records (so the structure-discovery configs load and check them)."""
    (checkpoint,) = run.glob(f"checkpoint_epoch={epochs}.pt")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["model"]
    settings = json.loads(settings_path(run / "model.pt").read_text())["settings"]
    save_weights(state, out, settings)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, nargs="+", default=[800, 2000, 5000, 10000])
    parser.add_argument("--workdir", default=str(WORK / "pretraining_probe"))
    parser.add_argument("--score", type=int, default=5, help="validation volumes the probes are scored on")
    parser.add_argument("--out", default=str(RESULTS / "pretraining_probe.json"))
    args = parser.parse_args()
    work = Path(args.workdir).resolve()
    datalist, _ = brain_phantoms(WORK / "brain" / "brains", 60)
    per_epoch = math.ceil(len(load_datalist(datalist, "training")) / PRETRAINING["batch_size"])
    run = work / "diffusion"
    rows = {}
    trained = [int(p.stem.split("=")[1]) for p in run.glob("checkpoint_epoch=*.pt")]
    for iterations in sorted(args.iterations):
        epochs = math.ceil(iterations / per_epoch)
        if trained and epochs < max(trained) and not (work / f"iterations_{iterations}" / "model.pt").is_file():
            raise ValueError(
                f"the run in '{run}' is already past {iterations} iterations (epoch {max(trained)}) and keeps only its "
                "latest checkpoint; use another --workdir to measure fewer iterations."
            )
        folder = work / f"iterations_{iterations}"
        weights = folder / "model.pt"
        if not weights.is_file():
            overrides = {"dataset_dir": str(datalist.parent), "output_dir": str(run), "max_epochs": epochs}
            configs = bundle_config("diffusion_pretraining", "train.json", "brain.json")
            interval = min(PRETRAINING["val_interval"], epochs)
            run_bundle(configs, {**overrides, "val_interval": interval}, log_beside(run, f"train_{iterations}"))
            folder.mkdir(parents=True, exist_ok=True)
            weights_at(run, epochs, weights)
        probe = folder / "probe_brains.json"
        if not probe.is_file():
            command = [sys.executable, "probe.py", "--dataset", "brains", "--diffusion-ckpt", str(weights)]
            command += ["--score", str(args.score), "--inputs", "x0", f"stage {FEATURE_STAGE}", "--out", str(probe)]
            subprocess.run(command, cwd=Path(__file__).parent, check=True)
        rows[iterations] = {"epochs": epochs, **json.loads(probe.read_text())["scores"]}
        summary = {**environment(), "run": str(run), "iterations_per_epoch": per_epoch, "rows": rows}
        write_json(args.out, summary, overwrite=True)
        print(iterations, json.dumps(rows[iterations]), flush=True)


if __name__ == "__main__":
    main()

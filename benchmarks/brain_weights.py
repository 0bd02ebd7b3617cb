"""The shipped brain weights, as a user makes them: structure_discovery's brain recipe on its default data (issue 31).

Runs, from this repository, exactly the bundle commands its README gives for brain tumours, on the default brain
phantoms (60 volumes, seed 0, generated on first use), with the shipped FLAIR diffusion model:

1. ``python -m monai.bundle run --config_file "['configs/train.json','configs/brain.json']"`` into
   ``workdir/train``: the weights copied to ``models/brain/model.pt``;
2. ``python -m monai.bundle run --config_file "['configs/train.json','configs/evaluate.json','configs/brain.json']"``
   with those weights: whole-tumour Dice of the merged 3 parts and of the 6 trained, HD95 and parts used, on the
   default data's 10 test brains (the weights saw none of them).

It records the wall time and peak memory of each step (the recipe's discovery time; the diffusion pretraining is
``diffusion_pretraining``'s). Each step is reused from ``--workdir`` when it finished.

    python benchmarks/brain_weights.py
"""

from __future__ import annotations

import argparse
from pathlib import Path

from brain import evaluate
from steps import BRAIN_CONFIG, RESULTS, WORK, bundle_config, train_once

from monai_ext.provenance import environment, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=str(WORK / "brain_weights"))
    parser.add_argument("--out", default=str(RESULTS / "brain_weights.json"))
    args = parser.parse_args()
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    ckpt, training = train_once(bundle_config("structure_discovery", "train.json", "brain.json"), work / "train", {})
    report, evaluation = evaluate({}, BRAIN_CONFIG["hd95_spacing"], ckpt, work / "eval", baselines=False)
    keys = ("num_parts", "matched_dice", "matched_dice_per_volume", "matched_hd95", "parts_used", "hd95_unit")
    summary = {
        **environment(),
        "weights": str(ckpt),
        "timings": {"training": training, "evaluation": evaluation},
        **{key: report[key] for key in keys},
    }
    write_json(args.out, summary, overwrite=True)
    dice = " / ".join(f"{level['mean']:.3f} ± {level['sd']:.3f}" for level in report["matched_dice"]["ours"])
    print(f"whole tumour, levels {report['num_parts']}: {dice}; training {training['seconds'] / 60:.1f} min")
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

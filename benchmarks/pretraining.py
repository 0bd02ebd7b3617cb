"""The shipped diffusion_pretraining weights: held-out denoising L1 and DDIM sampling time, through the bundle.

Runs the bundle's ``evaluate.json`` (x0-prediction L1 on the 20 test phantoms noised to t = 25, 100, 200) and
``inference.json`` (DDIM samples written as NIfTI), each as ``python -m monai.bundle run``, and writes
``results/pretraining.json``:

    python benchmarks/pretraining.py --ckpt bundles/diffusion_pretraining/models/model.pt
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from steps import BUNDLES, RESULTS, WORK, bundle_config, cell_phantoms, run_bundle

from monai_ext.provenance import environment, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", default=str(BUNDLES / "diffusion_pretraining" / "models" / "model.pt"))
    parser.add_argument("--variant", default="regular", choices=["regular", "irregular"])
    parser.add_argument("--samples", type=int, default=2, help="DDIM samples to draw")
    parser.add_argument("--steps", type=int, default=50, help="DDIM steps per sample")
    parser.add_argument("--workdir", default=str(WORK))
    parser.add_argument("--out", default=str(RESULTS / "pretraining.json"))
    args = parser.parse_args()
    work = Path(args.workdir)
    data = cell_phantoms(work / f"phantoms_{args.variant}", args.variant)
    evaluation, samples = work / "pretraining_evaluate", work / "pretraining_samples"
    for folder in (evaluation, samples):
        if folder.exists():
            shutil.rmtree(folder)
    eval_timing = run_bundle(
        bundle_config("diffusion_pretraining", "train.json", "evaluate.json"),
        {"dataset_dir": str(data), "ckpt_path": args.ckpt, "output_dir": str(evaluation)},
        work / "pretraining_evaluate.log",
    )
    sample_timing = run_bundle(
        bundle_config("diffusion_pretraining", "inference.json"),
        {
            "ckpt_path": args.ckpt,
            "output_dir": str(samples),
            "num_samples": args.samples,
            "num_inference_steps": args.steps,
            "progress": False,
        },
        work / "pretraining_samples.log",
    )
    metrics = json.loads((evaluation / "metrics.json").read_text())["metrics"]
    summary = {
        **environment(),
        "checkpoint": args.ckpt,
        "test_split": f"phantoms_{args.variant} (seed 0), 20 test volumes",
        "denoising_l1": metrics,
        "evaluation_timing": eval_timing,
        "sampling": {
            "samples": args.samples,
            "ddim_steps": args.steps,
            "seconds_per_sample": round(sample_timing["seconds"] / args.samples, 1),
            "note": "wall time of the bundle run (start-up included) divided by the samples",
        },
    }
    write_json(args.out, summary, overwrite=True)
    print(json.dumps({"denoising_l1": metrics, "sampling": summary["sampling"]}, indent=2))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

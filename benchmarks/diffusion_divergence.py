"""How often the mask DDPM's samples diverge, and how early: the diagnosis behind the CPU recipe's v prediction
(issue 10).

For each model (a name, its weights and the ``prediction_type`` it was trained with) and each of the first
``--slices`` test slices through the tumour, ``--samples`` DDIM samples are drawn with the bundle's seeded
ensemble inferer, and, from the same initial noise, the mask the network implies at the first sampling step
(x0 at t near T, clipped and thresholded at 0). Reported per model: the Dice of one sample and of the ensemble
mean, the share of samples that diverged (tumour marked on more than ``max(3 x the true area, 20 %)`` of the
slice), and the tumour share of the slice in the truth, the first-step masks and the final samples.

    git show 6819fb4:bundles/diffusion_segmentation/models/model.pt > /tmp/model_epsilon.pt  # the 0.2.0 weights
    python benchmarks/diffusion_divergence.py --model "0.2.0" /tmp/model_epsilon.pt epsilon \\
        --model shipped bundles/diffusion_segmentation/models/model.pt v_prediction
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from steps import RESULTS, ensemble_inferer, segmentation_parser, test_items, tumour

from monai_ext.engines import slice_scores
from monai_ext.provenance import environment, write_json
from monai_ext.schedulers import predicted_x0
from monai_ext.weights import load_weights


def diverged(foreground: float, truth: float) -> bool:
    """A sample diverged when it marks more than three times the true area and more than 20 % of the slice."""
    return foreground > max(3 * truth, 0.2)


def first_step_masks(network: torch.nn.Module, inferer, image: torch.Tensor) -> torch.Tensor:
    """The masks (n, 1, H, W) implied at the inferer's first step by the initial noise it draws for ``image``."""
    n, scheduler = inferer.num_samples, inferer.scheduler
    noise, _ = inferer.initial_noise(image[None])
    t = int(inferer.sampling_timesteps(image.device)[0])
    timesteps = torch.full((n,), t, dtype=torch.long)
    conditioned = torch.cat([noise, image[None].expand(n, -1, -1, -1)], dim=1)
    output = network(conditioned, timesteps=timesteps)[:, : inferer.mask_channels]
    return predicted_x0(scheduler, output, noise, timesteps).clamp(-1, 1) > 0


def model_rows(name: str, ckpt: str, prediction_type: str, items: list[dict], num_samples: int) -> dict:
    """Dice, divergence and tumour shares of one model on ``items``."""
    parser = segmentation_parser("train.json", prediction_type=prediction_type)
    network = load_weights(parser.get_parsed_content("network_def"), ckpt).eval()
    inferer = ensemble_inferer("ddim_50", parser, num_samples)
    single, ensemble, diverging, truth, first, final = [], [], [], [], [], []
    with torch.no_grad():
        for item in items:
            label = item["label"][0] > 0
            samples = inferer.sample(item["image"][None], network)[0, :, 0]
            shares = (samples > 0.5).float().mean(dim=(1, 2)).tolist()
            share_true = float(label.float().mean())
            single += [slice_scores(sample > 0.5, label)["dice"] for sample in samples]
            ensemble.append(slice_scores(samples.mean(0) > 0.5, label)["dice"])
            diverging += [diverged(share, share_true) for share in shares]
            truth.append(share_true)
            first += first_step_masks(network, inferer, item["image"]).float().mean(dim=(1, 2, 3)).tolist()
            final += shares
        print(f"{name}: {len(items)} slices x {num_samples} samples", flush=True)
    return {
        "ckpt": ckpt,
        "prediction_type": prediction_type,
        "dice_one_sample": float(np.mean(single)),
        f"dice_ensemble_of_{num_samples}": float(np.mean(ensemble)),
        "diverged_share": float(np.mean(diverging)),
        "tumour_share": {
            "truth": [round(min(truth), 3), round(max(truth), 3)],
            "first_step": [round(min(first), 3), round(max(first), 3)],
            "samples": [round(min(final), 3), round(max(final), 3)],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", nargs=3, action="append", required=True, metavar=("NAME", "CKPT", "PREDICTION_TYPE"))
    parser.add_argument("--slices", type=int, default=8, help="the first test slices through the tumour")
    parser.add_argument("--samples", type=int, default=10, help="DDIM 50 samples per slice")
    parser.add_argument("--out", default=str(RESULTS / "diffusion_divergence.json"))
    args = parser.parse_args()
    torch.set_num_threads(min(torch.get_num_threads(), 2))
    items = tumour(test_items(segmentation_parser("train.json")))[: args.slices]
    models = {name: model_rows(name, ckpt, kind, items, args.samples) for name, ckpt, kind in args.model}
    write_json(
        args.out, {**environment(), "slices": len(items), "samples": args.samples, "models": models}, overwrite=True
    )
    for name, row in models.items():
        print(
            f"{name} ({row['prediction_type']}): Dice one sample {row['dice_one_sample']:.3f}, ensemble "
            f"{row[f'dice_ensemble_of_{args.samples}']:.3f}, diverged {row['diverged_share']:.0%}; tumour share: "
            f"truth {row['tumour_share']['truth']}, first step {row['tumour_share']['first_step']}, samples "
            f"{row['tumour_share']['samples']}"
        )
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

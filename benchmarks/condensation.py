"""How fast diffusion condensation runs and how its cost grows with the number of pixels N (issue 11): our
``monai_ext.transforms.condense`` on CUTS-like embeddings (d = 128) of 32^2 .. 256^2 brain-phantom slices, each
size in its own process so that its peak resident memory is its own; a log-log plot of time and memory against N;
and, when ``multiscale_phate`` (the official implementation, PyPI ``multiscale-phate``) is importable in this
environment, the official condensation on the same embeddings (never imported by the package).

The embeddings are the 128-channel output of a CUTS encoder on the FLAIR-T1 slices of the default brain dataset
resized to each size: the trained weights given by ``--encoder-ckpt`` or, without them, an untrained encoder with
seed 0 (the cost of condensation depends on N, d and how the points cluster, not on what they mean).

    python benchmarks/condensation.py --out benchmarks/results/condensation.json
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from _runner import ROOT

SIZES = (32, 64, 128, 256)


def embedding(side: int, ckpt: str | None) -> torch.Tensor:
    """(N, 128) embeddings of the first test slice of the default brain dataset at ``side`` x ``side``."""
    from monai.transforms import LoadImage

    from monai_ext.bundle import default_dataset_dir, ensure_default_data
    from monai_ext.data.datalist import load_datalist
    from monai_ext.networks.cuts import CUTSEncoder

    dataset = ensure_default_data(default_dataset_dir("brain_slices"))
    record = load_datalist(Path(dataset) / "datalist.json", "test")[0]
    image = torch.as_tensor(LoadImage(image_only=True)(record["image"])).permute(2, 0, 1).float()
    low, high = image.amin((1, 2), keepdim=True), image.amax((1, 2), keepdim=True)
    image = (image - low) / (high - low)
    image = torch.nn.functional.interpolate(image[None], size=(side, side), mode="bilinear")
    torch.manual_seed(0)
    encoder = CUTSEncoder(in_channels=image.shape[1]).eval()
    if ckpt:
        encoder.load_state_dict(torch.load(ckpt, map_location="cpu"))
    with torch.no_grad():
        return encoder(image)[0].flatten(1).T.contiguous()


def measure(side: int, ckpt: str | None, method: str) -> dict:
    """Time one condensation at ``side`` (this process's peak memory is the run's)."""
    from monai_ext.transforms.condensation import condense

    torch.set_num_threads(2)
    points = embedding(side, ckpt)
    start = time.perf_counter()
    if method == "ours":
        result = condense(points)
        levels = len(result.num_clusters)
    else:
        import multiscale_phate

        operator = multiscale_phate.Multiscale_PHATE(random_state=0, n_jobs=2)
        operator.fit(points.numpy())
        levels = len(operator.levels)
    return {
        "side": side,
        "pixels": side * side,
        "seconds": round(time.perf_counter() - start, 2),
        "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "levels": levels,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder-ckpt", default=None)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--one", nargs=2, metavar=("SIDE", "METHOD"), help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "condensation.json"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure(int(args.one[0]), args.encoder_ckpt, args.one[1])))
        return
    rows: dict[str, list[dict]] = {"ours": [], "multiscale_phate": []}
    for method in rows:
        for side in args.sizes:
            command = [sys.executable, __file__, "--one", str(side), method]
            if args.encoder_ckpt:
                command += ["--encoder-ckpt", args.encoder_ckpt]
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                print(f"{method} at {side}^2 failed: {done.stderr.strip().splitlines()[-1:]}")
                continue
            rows[method].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(method, rows[method][-1], flush=True)
    Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""How fast diffusion condensation runs and how its cost grows with the number of pixels N (issue 11): our
``monai_ext.transforms.condense`` on CUTS embeddings (d = 128) of one brain-phantom test slice resized to 32^2 ..
256^2, each size in its own process so that its peak resident memory is its own; a log-log plot of time and
memory against N; and the official implementation (``multiscale_phate``, PyPI ``multiscale-phate``) on the same
embeddings, run by ``--phate-python``: the interpreter of a separate environment that has it installed (the
package never imports it; ``make benchmark-phate-env`` builds one in ``.venv-phate``).

    python benchmarks/condensation.py --phate-python .venv-phate/bin/python --out benchmarks/results/condensation.json

The official implementation condenses all N points densely (1024 points take about a minute here): it runs at the
sides of ``--phate-sizes`` only, each within ``--timeout`` seconds (a run that does not finish is recorded so).

The embeddings come from the bundle's shipped encoder (``--encoder-ckpt``, built by its ``inference.json``) on the four
min-max scaled contrasts.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from cuts_methods import inference_parser
from steps import BUNDLES, RESULTS, ROOT, WORK

SIZES = (32, 64, 128, 256)
TARGETS = {128: (15.0, 4.0), 256: (90.0, None)}  # side: (seconds, peak GB) at most (issue 11)
# run in a child process: time one condensation of the embeddings in argv[1] ("ours" or "phate" in argv[2])
MEASURE = """
import json, resource, sys, time
import numpy as np
points = np.load(sys.argv[1])
start = time.perf_counter()
if sys.argv[2] == "ours":
    import torch
    from monai_ext.transforms.condensation import condense
    torch.set_num_threads(2)
    levels = len(condense(torch.from_numpy(points)).num_clusters)
else:
    import multiscale_phate
    operator = multiscale_phate.Multiscale_PHATE(random_state=0, n_jobs=2)
    operator.fit(points)
    levels = len(operator.levels)
seconds = time.perf_counter() - start
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({"seconds": round(seconds, 2), "peak_memory_mb": round(peak, 1), "levels": levels}))
"""


def embeddings(side: int, ckpt: str) -> np.ndarray:
    """(side^2, 128) float32 CUTS embeddings of the first test slice of the default brain dataset at side x side."""
    from monai.transforms import LoadImage

    from monai_ext.bundle import default_dataset_dir, ensure_default_data
    from monai_ext.data.datalist import load_datalist

    dataset = ensure_default_data(default_dataset_dir("brain_slices"))
    record = load_datalist(Path(dataset) / "datalist.json", "test")[0]
    image = torch.as_tensor(LoadImage(image_only=True)(record["image"])).permute(2, 0, 1).float()
    low, high = image.amin((1, 2), keepdim=True), image.amax((1, 2), keepdim=True)
    image = torch.nn.functional.interpolate(((image - low) / (high - low))[None], size=(side, side), mode="bilinear")
    config = inference_parser(ckpt, None)  # the bundle's architecture (kernel_size) and weight loading
    config["device"] = torch.device("cpu")
    encoder = config.get_parsed_content("network").eval()
    with torch.no_grad():
        return encoder(image)[0].flatten(1).T.contiguous().numpy()


def measure(python: str, points: Path, method: str, timeout: float) -> dict:
    """One condensation in a child process of ``python``; a failure or timeout is recorded, not raised."""
    try:
        done = subprocess.run(
            [python, "-c", MEASURE, str(points), method],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            cwd=ROOT,
            env={"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "2", "PATH": "/usr/bin:/bin"},
        )
    except subprocess.TimeoutExpired:
        return {"failed": f"no result within {timeout:.0f} s"}
    if done.returncode != 0:
        return {"failed": (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def plot(rows: dict[str, list[dict]], path: Path) -> None:
    """Seconds and peak memory against N, log-log, one line per method."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    time_axis, memory_axis = fig.subplots(1, 2)
    for method, measured in rows.items():
        done = [r for r in measured if "seconds" in r]
        if not done:
            continue
        pixels = [r["pixels"] for r in done]
        time_axis.loglog(pixels, [r["seconds"] for r in done], "o-", label=method)
        memory_axis.loglog(pixels, [r["peak_memory_mb"] / 1024 for r in done], "o-", label=method)
    for axis, name in ((time_axis, "seconds"), (memory_axis, "peak resident memory (GB)")):
        axis.set_xlabel("pixels N")
        axis.set_ylabel(name)
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--encoder-ckpt", default=str(BUNDLES / "cuts" / "models" / "model.pt"))
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--phate-python", default=None, help="a Python with multiscale_phate (none: ours only)")
    parser.add_argument("--phate-sizes", type=int, nargs="+", default=[32, 64], help="sides run with multiscale_phate")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds before a run is given up")
    parser.add_argument("--workdir", default=str(WORK / "condensation"))
    parser.add_argument("--out", default=str(RESULTS / "condensation.json"))
    args = parser.parse_args()
    from monai_ext.provenance import environment, write_json

    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    methods = {"ours": sys.executable, **({"multiscale_phate": args.phate_python} if args.phate_python else {})}
    rows: dict[str, list[dict]] = {method: [] for method in methods}
    for side in args.sizes:
        points = work / f"embeddings_{side}.npy"
        np.save(points, embeddings(side, args.encoder_ckpt))
        for method, python in methods.items():
            if method == "multiscale_phate" and side not in args.phate_sizes:
                continue
            row = {"side": side, "pixels": side * side, **measure(python, points, method.split("_")[0], args.timeout)}
            rows[method].append(row)
            print(method, row, flush=True)
    png = Path(args.out).with_suffix(".png")
    plot(rows, png)
    ours = {r["side"]: r for r in rows["ours"]}
    ratios = {
        str(r["side"]): round(r["seconds"] / ours[r["side"]]["seconds"], 1)
        for r in rows.get("multiscale_phate", [])
        if "seconds" in r and "seconds" in ours.get(r["side"], {})
    }
    result = {
        **environment(),
        "encoder_ckpt": args.encoder_ckpt,
        "embedding_dim": 128,
        "runs": rows,
        "phate_over_ours_seconds": ratios,
        "targets": {str(side): {"seconds": s, "peak_gb": gb} for side, (s, gb) in TARGETS.items()},
        "figure": str(png.relative_to(ROOT)) if png.is_relative_to(ROOT) else str(png),
    }
    write_json(args.out, result, overwrite=True)
    print(f"results written to {args.out}; figure {png}")


if __name__ == "__main__":
    main()

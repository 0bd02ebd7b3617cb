"""Calibration of the cell phantoms: generation time and the two non-DL baselines beside the paper's Table 1.

    python benchmarks/phantoms.py --workdir benchmarks/.work --out benchmarks/results/phantoms.json

For each variant: time `make_phantoms` (120 volumes, seed 0, all cores), then k-means and BM4D + k-means on the
20 test volumes (`monai_ext.baselines`), and print measured vs paper with the difference; the generator's
defaults are meant to land within +/- 0.05 of the paper in every cell.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from steps import RESULTS, WORK

from monai_ext.baselines.evaluate import PAPER_TABLE1, run_baselines
from monai_ext.data.phantoms import make_phantoms
from monai_ext.provenance import environment, write_json

TOLERANCE = 0.05


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=str(WORK))
    parser.add_argument("--out", default=str(RESULTS / "phantoms.json"))
    args = parser.parse_args()
    results, lines = {}, []
    for variant in ("regular", "irregular"):
        folder = Path(args.workdir) / f"phantoms_calibration_{variant}"
        if folder.exists():
            shutil.rmtree(folder)
        start = time.perf_counter()
        make_phantoms(str(folder), variant=variant, n=120, seed=0)
        seconds = round(time.perf_counter() - start, 1)
        baselines = run_baselines(str(folder), split="test", out=None, verbose=False)
        cells = {}
        for method in ("kmeans", "bm4d_kmeans"):
            for index, (key, stats) in enumerate(baselines["matched_dice"][method].items()):
                paper = PAPER_TABLE1[variant][method][index]
                cells[f"{method}/{key}"] = {
                    "measured": round(stats["mean"], 3),
                    "sd": round(stats["sd"], 3),
                    "paper": paper,
                    "difference": round(stats["mean"] - paper, 3),
                    "within_tolerance": abs(stats["mean"] - paper) <= TOLERANCE,
                }
        results[variant] = {"generation_seconds_120": seconds, "baseline_seconds_20": baselines["wall_time_s"]}
        results[variant]["cells"] = cells
        lines.append(f"{variant}: 120 volumes generated in {seconds} s; baselines on 20 test volumes")
        for name, cell in cells.items():
            flag = "ok" if cell["within_tolerance"] else "OUT OF TOLERANCE"
            lines.append(
                f"  {name:<24} {cell['measured']:.3f} ± {cell['sd']:.3f}  paper {cell['paper']:.3f}  "
                f"diff {cell['difference']:+.3f}  {flag}"
            )
    write_json(args.out, {**environment(), "tolerance": TOLERANCE, "variants": results}, overwrite=True)
    print("\n".join(lines))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

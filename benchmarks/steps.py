"""The steps the benchmark scripts share, so that each script holds only what it measures.

- paths (``ROOT``, ``BUNDLES``, ``RESULTS``, ``WORK``) and the bundles' config files (:func:`bundle_config`,
  :func:`read_config`);
- running a bundle as a user does, ``python -m monai.bundle run`` in a subprocess, timed (:func:`run_bundle`), and
  reading the times Ignite logged (:func:`logged_seconds`);
- data, training and evaluation, each reused from the work folder when it finished before: the cell phantoms
  (:func:`cell_phantoms`), the brain phantoms (:func:`brain_phantoms`), a training (:func:`train_once`,
  :func:`pretrain`, :func:`discover`), an evaluation (:func:`evaluate_once`; of structure discovery:
  :func:`evaluate_discovery`, :func:`evaluate_on_phantoms`);
- what two scripts of one bundle share: the whole-tumour scores of the brain phantoms (``brain.py``, ``brains.py``),
  the diffusion-segmentation bundle's test slices and samplers (``diffusion_segmentation.py``,
  ``diffusion_divergence.py``), and the names the result pages read (``TISSUE_ROW``);
- finishing a figure of image panels (:func:`save_image_grid`).

The methods the CUTS benchmarks compare are in ``cuts_methods.py``.
"""

from __future__ import annotations

import json
import re
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from monai.bundle import ConfigParser

from monai_ext.bundle import sampling_scheduler
from monai_ext.data.brain import GENERATOR_VERSION, make_brains
from monai_ext.data.datalist import load_datalist
from monai_ext.data.phantoms import make_phantoms
from monai_ext.inferers import DiffusionEnsembleInferer
from monai_ext.metrics import MatchedDiceMetric, MatchedHausdorffDistanceMetric
from monai_ext.networks import hierarchy_parts
from monai_ext.resumed_runs import finish_part, record_evaluation, reusable_timing, start_part

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "bundles"
RESULTS = ROOT / "benchmarks" / "results"
WORK = ROOT / "benchmarks" / ".work"  # datasets, checkpoints and logs of the runs (ignored by git)
TISSUE_ROW = "tissue map (oracle)"  # the CUTS benchmarks' row of the phantoms' exact tissue partition


def bundle_config(bundle: str, *names: str) -> list[str]:
    """Paths of config files of a bundle of this repository."""
    return [str(BUNDLES / bundle / "configs" / name) for name in names]


def read_config(bundle: str, name: str) -> dict:
    """One config file of a bundle of this repository, as JSON (its values unparsed)."""
    return json.loads(Path(bundle_config(bundle, name)[0]).read_text())


def run_bundle(configs: Sequence[str], overrides: Mapping[str, object], log: Path, nproc: int = 1) -> dict[str, float]:
    """Run ``python -m monai.bundle run`` on bundle config files with ``--key value`` overrides; with ``nproc`` > 1
    under ``torchrun --standalone --nproc_per_node=nproc``.

    Args:
        configs: config files, layered in this order.
        overrides: config ids and values (a string as it is, anything else as a Python literal, as fire reads it).
        log: the file that gets the command and its output.
        nproc: processes.

    Returns:
        the wall time in seconds and the peak resident memory (MiB) of the largest child so far.

    Raises:
        RuntimeError: the run failed (the message names the log).
    """
    config_arg = str([str(c) for c in configs]) if len(configs) > 1 else str(configs[0])
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else []
    command = [sys.executable, *launcher, "-m", "monai.bundle", "run", "--config_file", config_arg]
    for key, value in overrides.items():
        command += [f"--{key}", value if isinstance(value, str) else repr(value)]
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    with log.open("w") as stream:
        stream.write(" ".join(command) + "\n")
        stream.flush()
        completed = subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT, cwd=ROOT, check=False)
    seconds = time.perf_counter() - start
    if completed.returncode != 0:
        raise RuntimeError(f"bundle run failed (exit {completed.returncode}); see {log}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024.0
    return {"seconds": round(seconds, 1), "peak_memory_mb_max_child": round(peak, 1)}


def log_beside(output_dir: Path, step: str = "train") -> Path:
    """The log of a run writing ``output_dir``: ``<output_dir>_<step>.log`` beside the folder, not in it, since a
    training run refuses an output folder holding files it did not write."""
    return output_dir.with_name(f"{output_dir.name}_{step}.log")


def logged_seconds(log: Path, engine: str, event: str) -> list[float]:
    """Durations (s) that Ignite logged for ``event`` of ``engine`` in a bundle log, in order.

    Args:
        log: the bundle's log file (absent: no durations).
        engine: the engine class, e.g. ``"SupervisedTrainer"``.
        event: a regular expression of the event, e.g. ``r"Epoch\\[\\d+\\] Complete"`` or ``"Engine run finished"``.
    """
    if not log.is_file():
        return []
    pattern = re.compile(rf"{engine} - INFO - {event}\. Time taken: (\d+):(\d+):([\d.]+)")
    return [int(h) * 3600 + int(m) * 60 + float(s) for h, m, s in pattern.findall(log.read_text())]


def cell_phantoms(folder: Path, variant: str) -> Path:
    """The 120 cell phantoms of ``variant`` (seed 0) in ``folder``, generated unless its datalist exists."""
    if not (folder / "datalist.json").is_file():
        make_phantoms(str(folder), variant=variant, n=120, seed=0)
    return folder


def brain_phantoms(folder: Path, n: int, seed: int = 0) -> tuple[Path, float]:
    """The 3D brain phantoms ``make_brains(folder, n, seed, resolution=2)`` (split 4:1:1), generated unless present;
    returns their FLAIR datalist and the spacing (mm). Raises ``ValueError`` when ``folder`` holds other phantoms."""
    if not (folder / "datalist.json").is_file():
        make_brains(folder, n=n, seed=seed, mode="3d", resolution=2, overwrite=True)  # an interrupted run's files
    meta = json.loads((folder / "dataset.json").read_text())
    expected = {"n": n, "mode": "3d", "seed": seed, "generator_version": GENERATOR_VERSION}
    found = {"n": meta["options"]["n"], "mode": meta["options"]["mode"], "seed": meta["seed"]}
    found["generator_version"] = meta.get("generator_version")
    if found != expected:
        raise ValueError(f"'{folder}' holds other phantoms ({found}, expected {expected}); use another --workdir.")
    return folder / "datalist_flair.json", float(meta["spacing_mm"])


def train_once(configs: Sequence[str], work: Path, overrides: Mapping[str, object]) -> tuple[Path, dict]:
    """Train with bundle config files into ``work`` (its ``output_dir``), or reuse the run that finished there.

    A run interrupted (say, at the end of a session) resumes from its newest checkpoint when called again. Its time
    is then the sum of its parts, each recorded in ``<work>_parts.json`` beside the folder when it starts: an
    interrupted part counts up to its last checkpoint (the training it kept), the last part its whole wall time.

    Returns:
        the selected weights (``work/model.pt``) and the run's timing (with ``parts`` when it was resumed), kept in
        ``work/done`` for a rerun.
    """
    target, done = work / "model.pt", work / "done"
    if done.is_file():
        return target, json.loads(done.read_text())
    record = work.with_name(f"{work.name}_parts.json")
    parts = start_part(record, work.glob("checkpoint*.pt"))
    timing = finish_part(record, parts, run_bundle(configs, {**overrides, "output_dir": str(work)}, log_beside(work)))
    done.write_text(json.dumps(timing))
    return target, timing


def pretrain(configs: Sequence[str], work: Path, overrides: Mapping[str, object], reuse: Path | None) -> tuple:
    """The diffusion checkpoint of a benchmark: ``reuse`` when given, else :func:`train_once`."""
    if reuse is not None:
        return reuse, {"reused": str(reuse)}
    return train_once(configs, work, overrides)


def evaluate_once(configs: Sequence[str], overrides: Mapping[str, object], out: Path) -> tuple[dict, dict]:
    """Evaluate with bundle config files into a fresh ``out`` (its ``eval_output_dir``), or reuse the evaluation made
    there: one whose ``report.json`` is newer than the weights it scored (``overrides["ckpt_path"]``) and that the same
    configs and overrides made (recorded with its timing in ``<out>_run.json`` beside it), so that a resumed benchmark
    does not evaluate its finished steps again.

    Returns:
        the bundle's ``report.json`` and the run's timing.
    """
    report, record = out / "report.json", out.with_name(f"{out.name}_run.json")
    made = {
        "configs": [Path(c).relative_to(BUNDLES).as_posix() for c in configs],
        "overrides": json.loads(json.dumps(overrides)),
    }
    saved = reusable_timing(report, record, Path(str(overrides["ckpt_path"])), made)
    if saved is not None:
        return json.loads(report.read_text()), saved
    if out.exists():
        shutil.rmtree(out)
    timing = run_bundle(configs, {**overrides, "eval_output_dir": str(out)}, log_beside(out, "evaluate"))
    record_evaluation(record, made, timing)
    return json.loads(report.read_text()), timing


def evaluate_discovery(overlays: Sequence[str], overrides: Mapping[str, object], out: Path) -> tuple[dict, dict]:
    """:func:`evaluate_once` of structure discovery (``train.json`` + ``evaluate.json`` + ``overlays``)."""
    return evaluate_once(bundle_config("structure_discovery", "train.json", "evaluate.json", *overlays), overrides, out)


def discover(data: Path, diffusion_ckpt: Path, work: Path, overrides: Mapping[str, object]) -> tuple[Path, dict]:
    """Train structure discovery on the cell phantoms in ``data`` with :func:`train_once`."""
    overrides = {"dataset_dir": str(data), "diffusion_ckpt": str(diffusion_ckpt), **overrides}
    return train_once(bundle_config("structure_discovery", "train.json"), work, overrides)


def evaluate_on_phantoms(
    data: Path, diffusion_ckpt: Path, ckpt: Path, out: Path, overrides: Mapping[str, object], baselines: bool
) -> dict:
    """The report of :func:`evaluate_discovery` of ``ckpt`` on the cell phantoms in ``data``, with the baselines in
    the same run when ``baselines``."""
    common = {"dataset_dir": str(data), "diffusion_ckpt": str(diffusion_ckpt), "ckpt_path": str(ckpt)}
    return evaluate_discovery((), {**common, "compare_baselines": baselines, **overrides}, out)[0]


def level_parts(config: Mapping[str, object]) -> list[int]:
    """K of every level a structure-discovery config segments, coarse to fine, merged levels included (config id
    ``level_parts``)."""
    return hierarchy_parts(config["num_parts"], config.get("merged_parts", []))


CELL_LEVEL_PARTS = level_parts(read_config("structure_discovery", "train.json"))  # also the cell phantoms' levels
# The brain phantoms' whole tumour, as the paper's Table 3 scores it (brain.py, brains.py).
BRAIN_CONFIG = read_config("structure_discovery", "brain.json")
NUM_PARTS = level_parts(BRAIN_CONFIG)[0]  # Table 3's first level: K = 3
TUMOUR = 1
PAPER_TABLE3 = {  # BraTS'19, whole tumour: (Dice, HD95 in mm)
    "ours": (0.719, 27.838),
    "lambda_inv=0": (0.696, 38.645),
    "lambda_f=0": (0.677, 42.318),
    "lambda_v=0": (0.671, 41.801),
    "kmeans": (0.439, 63.811),
    "features_kmeans": (0.471, 45.917),
}


def tumour_scores(parts: np.ndarray, label: np.ndarray, spacing: float) -> tuple[float, float]:
    """Whole-tumour matched Dice and HD95 (mm) of a K-part label map against the tumour label."""
    y_pred = torch.as_tensor(parts)[None, None]
    y = torch.as_tensor(label.astype(np.int64))[None, None]
    dice = MatchedDiceMetric(report_classes=[TUMOUR])(y_pred, y)
    hd95 = MatchedHausdorffDistanceMetric(classes=[TUMOUR], spacing=spacing)(y_pred, y)
    return float(dice[0, 0]), float(hd95[0, 0])


# The diffusion-segmentation bundle read in this process (diffusion_segmentation.py, diffusion_divergence.py).
SEGMENTATION_BUNDLE = BUNDLES / "diffusion_segmentation"
ENSEMBLE = read_config("diffusion_segmentation", "inference.json")["num_samples"]  # the bundle's ensemble size
SAMPLER_STEPS = {"ddpm": None, "ddim_25": 25, "ddim_50": 50, "ddim_100": 100}


def segmentation_parser(*configs: str, **overrides: object) -> ConfigParser:
    """The diffusion-segmentation bundle's layered configs with ``overrides``, as ``monai.bundle run`` reads them."""
    parser = ConfigParser()
    parser.read_config([str(SEGMENTATION_BUNDLE / "configs" / c) for c in configs])
    parser.update({"bundle_root": str(SEGMENTATION_BUNDLE), **overrides})
    return parser


def test_items(parser: ConfigParser) -> list[dict]:
    """The test split through the bundle's validation preprocessing (image and label on the network's grid)."""
    transform = parser.get_parsed_content("validate#preprocessing")
    records = load_datalist(parser.get_parsed_content("datalist"), "test")
    return [transform(record) for record in records]


def tumour(items: list[dict]) -> list[dict]:
    """The items whose label holds tumour."""
    return [item for item in items if item["label"].any()]


def ensemble_inferer(name: str, parser: ConfigParser, num_samples: int = ENSEMBLE) -> DiffusionEnsembleInferer:
    """The seeded inferer of the sampler ``name`` (a key of ``SAMPLER_STEPS``: ``ddpm`` or ``ddim_<steps>``)."""
    scheduler = sampling_scheduler(
        name.split("_")[0], parser["num_train_timesteps"], prediction_type=parser["prediction_type"]
    )
    return DiffusionEnsembleInferer(
        scheduler, num_samples=num_samples, num_inference_steps=SAMPLER_STEPS[name], seed=0, progress=False
    )


def save_image_grid(fig, axes, columns: Sequence[str], out: Path) -> None:
    """Finish a figure of image panels (``axes``: rows x columns) and write it to ``out`` as PNG: the column titles
    over the first row, no ticks, a tight layout, 110 dpi."""
    for col, title in enumerate(columns):
        axes[0, col].set_title(title, fontsize=8)
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    fig.tight_layout()
    fig.savefig(out, dpi=110)

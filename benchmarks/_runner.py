"""Shared helpers of the benchmark scripts: run a bundle config in a subprocess, timed, and read its outputs."""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "bundles"


def run_bundle(configs: Sequence[str], overrides: Mapping[str, object], log: Path, nproc: int = 1) -> dict[str, float]:
    """Run ``python -m monai.bundle run`` on bundle config files with ``--key value`` overrides; with ``nproc`` > 1
    under ``torchrun --standalone --nproc_per_node=nproc``.

    The output goes to ``log``; returns the wall time in seconds and the peak resident memory (MiB) of the
    largest child so far. Raises ``RuntimeError`` naming the log when the run fails.
    """
    config_arg = str([str(c) for c in configs]) if len(configs) > 1 else str(configs[0])
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else []
    command = [sys.executable, *launcher, "-m", "monai.bundle", "run", "--config_file", config_arg]
    for key, value in overrides.items():
        command += [f"--{key}", value if isinstance(value, str) else repr(value)]  # fire reads Python literals
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


def bundle_config(bundle: str, *names: str) -> list[str]:
    """Paths of config files of a bundle of this repository."""
    return [str(BUNDLES / bundle / "configs" / name) for name in names]


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

"""What a user of the bundles needs on this machine: seconds and peak memory of each task, for the bundle
READMEs' "System requirements and memory" sections.

    python benchmarks/clients.py

Each task is one ``python -m monai.bundle run`` of the bundle's own configs (through ``steps.run_bundle``, under
torchrun for the two-process run), on the default regular phantoms (120 volumes, seed 0, generated once under
``benchmarks/.work/clients/``):

* structure_discovery inference (``inference.json``, shipped weights) on the test volumes: seconds per volume;
* structure_discovery training, one epoch of the CPU recipe (``train.json --max_epochs 1``): seconds per epoch;
* diffusion_pretraining training, one epoch (``train.json --max_epochs 1 --val_interval 1``) and DDIM sampling
  (``inference.json --num_samples 1``, 50 steps by default): seconds per epoch and per sample;
* structure_discovery training on two CPU processes (``torch.distributed.run --standalone --nproc_per_node=2``
  with ``multi_gpu_train.json``, ``OMP_NUM_THREADS=1`` per process): seconds of the same epoch.

Memory: every run is started from a fresh wrapper process (this script with ``--child``), so the wrapper's
``RUSAGE_CHILDREN`` ``ru_maxrss`` is the peak resident memory of the largest process of that run alone, not of
earlier runs (for torchrun: the largest of the launcher and its workers). The wrapper also samples the summed
proportional set size (PSS) of all its descendants every 0.5 s: the total memory of a multi-process run. GPU
memory is not measured (the numbers are for CPU runs).

Seconds: the engines' own times from the bundle log (Ignite's "Time taken"), without interpreter start-up and
model loading, which the wall time of the whole command includes and which is recorded too.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
from pathlib import Path

from steps import RESULTS, ROOT, WORK, bundle_config, logged_seconds, run_bundle
from summaries.clients import clients as clients_table

from monai_ext.provenance import environment, write_json

SD, DP = "structure_discovery", "diffusion_pretraining"
NOTE = (
    "This 2-core machine was shared with other work while these ran, so timings are noisy (each run records the "
    "1-minute load average before it, which includes the previous run of this script, and its CPU seconds)."
)


class TreeMemory(threading.Thread):
    """The largest summed PSS (KiB) of this process's descendants, sampled every ``interval`` seconds."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.interval, self.peak_kib, self.samples = interval, 0, 0
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.peak_kib = max(self.peak_kib, _descendants_kib(os.getpid()))
            self.samples += 1

    def stop(self) -> None:
        self._halt.set()
        self.join()


def _descendants_kib(root: int) -> int:
    """Summed PSS (VmRSS where smaps_rollup is unreadable) of every descendant of ``root``, in KiB."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path("/proc", entry.name, "stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    total, stack = 0, list(children.get(root, []))
    while stack:
        pid = stack.pop()
        stack += children.get(pid, [])
        total += _memory_kib(pid)
    return total


def _memory_kib(pid: int) -> int:
    for name, field in (("smaps_rollup", "Pss:"), ("status", "VmRSS:")):
        try:
            for line in Path("/proc", str(pid), name).read_text().splitlines():
                if line.startswith(field):
                    return int(line.split()[1])
        except (OSError, ValueError):
            continue
    return 0


def child(spec: dict) -> dict:
    """Run one task (in a fresh wrapper process, see the module docstring) and return its timing and memory."""
    for key, value in spec.get("env", {}).items():
        os.environ[key] = value
    output = Path(spec["overrides"]["output_dir"])
    if output.exists():
        shutil.rmtree(output)
    log = Path(spec["log"])
    sampler = TreeMemory()
    sampler.start()
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    try:
        timing = run_bundle(spec["configs"], spec["overrides"], log, spec.get("nproc", 1))
    finally:
        sampler.stop()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {
        **timing,
        "peak_pss_total_mb_sampled": round(sampler.peak_kib / 1024.0, 1),
        "memory_samples": sampler.samples,
        "cpu_seconds": round(cpu, 1),
        "load_average_1min_before": round(load, 2),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
    }


def specs(data: Path, work: Path, ddp_threads: int) -> dict[str, dict]:
    """The measured tasks: bundle configs, overrides, what a unit is and which engine times it."""
    common = {"dataset_dir": str(data), "overwrite": True}
    split = {k: len(v) for k, v in json.loads((data / "datalist.json").read_text()).items()}
    trained = [f"{split['training']} training volumes, validation on {split['validation']}"]
    ddim_steps = json.loads(Path(bundle_config(DP, "inference.json")[0]).read_text())["num_inference_steps"]

    def out(name: str) -> dict:
        return {"output_dir": str(work / name)}

    return {
        "structure_discovery_inference": {
            "bundle": SD,
            "task": "inference",
            "configs": bundle_config(SD, "inference.json"),
            "overrides": {**common, **out("sd_inference")},
            "unit": "volume",
            "details": ["shipped weights", "test split"],
            "outputs": "*_l3.nii.gz",
            "run_engine": "SupervisedEvaluator",
        },
        "structure_discovery_train": {
            "bundle": SD,
            "task": "training",
            "configs": bundle_config(SD, "train.json"),
            "overrides": {**common, **out("sd_train"), "max_epochs": 1},
            "unit": "epoch",
            "details": [*trained, "shipped diffusion model"],
            "epoch_engine": "DiscoveryTrainer",
        },
        "diffusion_pretraining_train": {
            "bundle": DP,
            "task": "training",
            "configs": bundle_config(DP, "train.json"),
            "overrides": {**common, **out("dp_train"), "max_epochs": 1, "val_interval": 1},
            "unit": "epoch",
            "details": trained,
            "epoch_engine": "SupervisedTrainer",
        },
        "diffusion_pretraining_sampling": {
            "bundle": DP,
            "task": "DDIM sampling",
            "configs": bundle_config(DP, "inference.json"),
            "overrides": {**out("dp_samples"), "overwrite": True, "num_samples": 1, "progress": False},
            "unit": "sample",
            "details": ["shipped weights", f"{ddim_steps} DDIM steps (config default)"],
            "outputs": "*.nii.gz",
            "run_engine": "SupervisedEvaluator",
        },
        "structure_discovery_train_2proc": {
            "bundle": SD,
            "task": "training, 2 processes (torchrun)",
            "configs": bundle_config(SD, "train.json", "multi_gpu_train.json"),
            "overrides": {**common, **out("sd_train_2proc"), "max_epochs": 1},
            "unit": "epoch",
            "details": [*trained, "shipped diffusion model"],
            "epoch_engine": "DiscoveryTrainer",
            "nproc": 2,
            "env": {"OMP_NUM_THREADS": str(ddp_threads)},
        },
    }


def describe(spec: dict, units: int) -> str:
    """What was run, in words, from the spec and the counted outputs."""
    configs = " + ".join(Path(c).name for c in spec["configs"])
    hidden = ("dataset_dir", "output_dir", "overwrite", "progress")
    settings = "".join(f" --{k} {v}" for k, v in spec["overrides"].items() if k not in hidden)
    details = [f"{units} {spec['unit']}{'s' if units != 1 else ''}", *spec.get("details", [])]
    if "nproc" in spec:
        details.append(f"{spec['nproc']} processes, OMP_NUM_THREADS={spec['env']['OMP_NUM_THREADS']} each")
    return f"{configs}{settings} ({', '.join(details)})"


def measure(spec: dict) -> dict:
    """Run ``spec`` in a fresh wrapper process; add the engine times read from its log."""
    completed = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, check=False
    )
    log = Path(spec["log"])
    if completed.returncode != 0:
        return {
            "error": (completed.stderr.strip().splitlines() or ["no output"])[-1],
            "log": os.path.relpath(log, ROOT),
        }
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    result["bundle_command"] = log.read_text().splitlines()[0]
    result["log"] = os.path.relpath(log, ROOT)
    output = Path(spec["overrides"]["output_dir"])
    validation = logged_seconds(log, "SupervisedEvaluator", "Engine run finished")
    if "epoch_engine" in spec:  # one epoch; Ignite's epoch time includes the validation run at its end
        epochs = logged_seconds(log, spec["epoch_engine"], r"Epoch\[\d+\] Complete")
        units = int(spec["overrides"]["max_epochs"])
        engine = max(epochs) if epochs else None  # under torchrun every rank logs its epoch: the slowest one
        result["epoch_seconds_per_rank"] = [round(e, 1) for e in epochs]
        result["validation_seconds"] = max(validation) if validation else None
        if engine is not None and validation:
            result["training_seconds"] = round(engine - max(validation), 1)
    else:
        units = len(list(output.glob(spec["outputs"])))
        engine = validation[-1] if validation else None
    result["units"] = units
    result["engine_seconds"] = engine
    result["seconds_per_unit"] = round(engine / units, 3) if engine is not None and units else None
    result["wall_seconds_per_unit"] = round(result["seconds"] / units, 3) if units else None
    result["what"] = describe(spec, units)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default=str(WORK / "clients"))
    parser.add_argument("--ddp-threads", type=int, default=1, help="OMP_NUM_THREADS of each torchrun process")
    parser.add_argument("--out", default=str(RESULTS / "clients.json"))
    parser.add_argument("--child", help=argparse.SUPPRESS)  # internal: run one task spec (JSON) and print its result
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    work = Path(args.workdir).resolve()
    data = work / "phantoms_regular"
    phantoms = [sys.executable, "-m", "monai_ext", "make-phantoms", "--out", str(data)]
    phantoms += ["--variant", "regular", "--n", "120", "--seed", "0"]
    if not (data / "datalist.json").is_file():
        work.mkdir(parents=True, exist_ok=True)
        with (work / "phantoms.log").open("w") as stream:
            subprocess.run(phantoms, stdout=stream, stderr=subprocess.STDOUT, cwd=ROOT, check=True)
    runs = {}
    for name, spec in specs(data, work, args.ddp_threads).items():
        spec["log"] = str(work / f"{name}.log")
        print(f"{name} ...", flush=True)
        runs[name] = {"bundle": spec["bundle"], "task": spec["task"], "unit": spec["unit"], **measure(spec)}
        shown = {k: runs[name].get(k) for k in ("seconds", "seconds_per_unit", "peak_memory_mb_max_child", "error")}
        print(f"  {shown}", flush=True)
    single, double = runs["structure_discovery_train"], runs["structure_discovery_train_2proc"]
    comparison = None
    if single.get("engine_seconds") and double.get("engine_seconds"):
        comparison = round(double["engine_seconds"] / single["engine_seconds"], 2)
    provenance = environment()
    torch_threads = provenance["machine"]["torch_threads"]
    summary = {
        **provenance,
        "dataset": {
            "command": " ".join([Path(sys.executable).name, *phantoms[1:]]),
            "volumes": {k: len(v) for k, v in json.loads((data / "datalist.json").read_text()).items()},
        },
        "single_process_threads": (
            f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}"
            if "OMP_NUM_THREADS" in os.environ
            else f"OMP_NUM_THREADS unset, torch's default of {torch_threads} threads"
        ),
        "ddp_threads": f"OMP_NUM_THREADS={args.ddp_threads} in each of the 2 torchrun processes",
        "two_process_epoch_over_one_process": comparison,
        "gpu_memory": "not measured (CPU runs on a machine without a GPU)",
        "memory_method": (
            "each run from a fresh wrapper process: ru_maxrss of RUSAGE_CHILDREN of that wrapper = peak resident "
            "memory of the largest process of this run only (torchrun: largest of launcher and workers); "
            "peak_pss_total_mb_sampled = largest sum of PSS over all processes of the run, sampled every 0.5 s"
        ),
        "seconds_method": (
            "seconds_per_unit = Ignite's logged engine time (evaluator run for inference and sampling; trainer "
            "epoch including its validation run for training; slowest rank under torchrun) / units; "
            "'seconds' = wall time of the whole command including start-up"
        ),
        "note": NOTE
        + " In structure_discovery training epoch 1 also computes and caches the diffusion features of every "
        "training volume (feature cache, 2 noise draws: later epochs compute a draw only when it is first picked), "
        "so it is the slowest epoch.",
        "runs": runs,
    }
    write_json(Path(args.out), summary, overwrite=True)
    print(clients_table(summary))
    print(f"results written to {args.out}")


if __name__ == "__main__":
    main()

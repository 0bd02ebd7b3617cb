"""How often a failing two-process gloo run aborts at exit, with and without monai-ext's explicit end of a rank.

Issue 29, case 9: a rank of a ``torchrun`` job could end with "terminate called without an active exception"
(SIGABRT, exit -6), which torchrun then reports as the job's root cause instead of the real error. The cause: a
gloo worker thread frees a finished DDP allreduce, which holds a Python object, while the interpreter is already
shutting down. This script runs the smallest job that shows it (DDP on a linear layer, one backward pass, then
rank 1 raises) ``--runs`` times as it is and ``--runs`` times with
``monai_ext.command_line.end_without_interpreter_teardown()`` called after the process group is created (what
every ``multi_gpu_train.json`` does), and counts the jobs where a rank aborted. The race is timing-dependent:
expect a few percent to tens of percent of the plain runs on a busy 2-core machine.

    python benchmarks/exit_abort.py --runs 30 --out benchmarks/results/exit_abort.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from steps import RESULTS

from monai_ext.provenance import environment, write_json

JOB = """
import os, sys
import torch
import torch.distributed as dist
dist.init_process_group("gloo")
if sys.argv[1] == "explicit":
    from monai_ext.command_line import end_without_interpreter_teardown
    end_without_interpreter_teardown()
model = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 2))
model(torch.rand(8, 4)).sum().backward()
if dist.get_rank() == 1:
    raise ValueError("the real error of rank 1")
"""


def run_job(script: Path, mode: str) -> dict[str, object]:
    """One two-process job; whether a rank aborted and what torchrun reported."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(script), mode]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    output = result.stdout + result.stderr
    return {
        "exit": result.returncode,
        "aborted": "terminate called" in output or "SIGABRT" in output or "exitcode  : -6" in output,
        "real_error_reported": "the real error of rank 1" in output,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="jobs per mode (default 30)")
    parser.add_argument("--out", default=str(RESULTS / "exit_abort.json"), help="result JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing result file")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be >= 1")
    start = time.perf_counter()
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        script = Path(folder) / "job.py"
        script.write_text(JOB)
        for mode in ("plain", "explicit"):  # interleaving would mix the modes' load; each mode runs in one block
            jobs = [run_job(script, mode) for _ in range(args.runs)]
            rows[mode] = {
                "jobs": len(jobs),
                "aborted": sum(job["aborted"] for job in jobs),
                "real_error_reported": sum(job["real_error_reported"] for job in jobs),
                "exit_codes": sorted({job["exit"] for job in jobs}),
            }
            print(f"{mode:>9}: {rows[mode]['aborted']} of {len(jobs)} jobs aborted at exit; exit codes "
                  f"{rows[mode]['exit_codes']}")  # fmt: skip
    write_json(args.out, {**environment(), "seconds": round(time.perf_counter() - start, 1), "modes": rows},
               overwrite=args.overwrite)  # fmt: skip
    print(json.dumps(rows))


if __name__ == "__main__":
    main()

"""Each bundle's tasks as a user runs them: seconds and peak memory (``benchmarks/clients.py``), and how a failing
distributed run ends (``benchmarks/exit_abort.py``)."""

from __future__ import annotations

from summaries.common import load, table_header, table_row


def clients(result: dict) -> str:
    machine = result["machine"]
    where = f"{machine['cores']} cores, {machine['device']}"
    lines = [f"Bundle tasks as a user runs them (`{result['command']}`, {where}):"]
    lines.append(table_header(["bundle", "task", "what was run", "seconds", "peak memory (GB)"]))
    for run in result["runs"].values():
        if "error" in run:
            lines.append(table_row([run["bundle"], run["task"], "-", f"failed: {run['error'][:80]}", "-"]))
            continue
        per_unit = run["seconds_per_unit"] or run["wall_seconds_per_unit"]  # no engine time logged: wall time
        seconds = f"{per_unit:.2f} s" if per_unit < 10 else f"{per_unit:.0f} s"
        seconds += f" / {run['unit']}"
        if run.get("training_seconds") is not None:
            seconds += f" (training {run['training_seconds']:.0f} s + validation {run['validation_seconds']:.0f} s)"
        seconds += f"; whole command {run['seconds']:.0f} s"
        memory = f"{run['peak_memory_mb_max_child'] / 1024:.2f}"
        if len(run.get("epoch_seconds_per_rank", [])) > 1:
            memory += f" per process, {run['peak_pss_total_mb_sampled'] / 1024:.2f} all processes"
        lines.append(table_row([run["bundle"], run["task"], f"`{run['what']}`", seconds, memory]))
    if ratio := result.get("two_process_epoch_over_one_process"):
        one, two = (
            result["runs"][k]["engine_seconds"]
            for k in ("structure_discovery_train", "structure_discovery_train_2proc")
        )
        lines.append(
            f"\nTwo CPU processes ({result['ddp_threads']}) against one ({result['single_process_threads']}): "
            f"epoch {two:.0f} s against {one:.0f} s (x{ratio:.2f})."
        )
    lines.append(
        f"\nGPU memory: {result['gpu_memory']}. Peak memory: {result['memory_method']}. Seconds: "
        f"{result['seconds_method']}. {result['note']}"
    )
    return "\n".join(lines)


def exit_abort(result: dict) -> str:
    """Per mode, how many failing two-process jobs aborted at exit and how many reported the real error."""
    lines = [
        f"Failing two-process gloo jobs (`{result['command']}`, {result['machine']['cores']} cores):",
        table_header(["mode", "jobs", "aborted at exit (SIGABRT)", "real error reported", "exit codes"]),
    ]
    names = {"plain": "as it is", "explicit": "explicit end of a rank (multi_gpu_train.json)"}
    for mode, row in result["modes"].items():
        cells = [str(row[key]) for key in ("jobs", "aborted", "real_error_reported")]
        lines.append(table_row([names[mode], *cells, ", ".join(map(str, row["exit_codes"]))]))
    return "\n".join(lines)


SOURCES = {
    "clients": (clients, lambda: load("clients.json")),
    "exit_abort": (exit_abort, lambda: load("exit_abort.json")),
}

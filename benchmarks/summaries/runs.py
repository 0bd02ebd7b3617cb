"""Every results file with the command that wrote it and the run time it recorded (``benchmarks/README.md``)."""

from __future__ import annotations

from steps import RESULTS

from summaries.common import load, table_header, table_row

RUN_TIMES = ("steps_seconds", "wall_time_s", "seconds")  # the first a file records: its run time


def runs(names: list[str]) -> str:
    """One row per results file: its command and the run time it recorded, if any."""
    lines = [
        "The committed results, each with the command that wrote it (from the repository root) and its run time where "
        "the script records one (every step of the run, reused ones included; else the invocation's wall time):",
        table_header(["results file", "command", "run time"]),
    ]
    for name in names:
        result = load(name)
        seconds = next((result[key] for key in RUN_TIMES if result.get(key)), None)
        time = f"{seconds / 60:.0f} min" if seconds else "-"
        lines.append(table_row([f"`{name}`", f"`{result['command']}`", time]))
    return "\n".join(lines)


SOURCES = {"runs": (runs, lambda: sorted(path.name for path in RESULTS.glob("*.json")) or None)}

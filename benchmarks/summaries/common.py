"""What every page of results shares: reading ``benchmarks/results/*.json`` and writing Markdown tables."""

from __future__ import annotations

import json
import re

from steps import RESULTS


def repo_relative(command: str) -> str:
    """A recorded command with absolute paths into a checkout (``/any/where/benchmarks/...``,
    ``/any/where/bundles/...``) written from the repository root, as a reader would run it."""
    return re.sub(r"(?<![\w.])/\S*?/(?=(?:benchmarks|bundles)/)", "", command)


def load(name: str) -> dict | None:
    """The results file ``name`` (its command repository-relative), or None when it does not exist."""
    path = RESULTS / name
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    if "command" in result:
        result["command"] = repo_relative(result["command"])
    return result


def load_each(names: dict[str, str]) -> dict[str, dict] | None:
    """The results files of ``names`` that exist, by name (None when none does)."""
    return {name: result for name in names if (result := load(name))} or None


def table_row(cells: list[str]) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(cells) + " |"


def table_header(cells: list[str]) -> str:
    """A table header, after a blank line so that the table starts its own Markdown block."""
    return "\n" + table_row(cells) + "\n" + table_row(["---"] * len(cells))


def paired_cell(pair: dict) -> str:
    """A paired difference of ``monai_ext.metrics.paired_differences``: mean (95 % interval), cases higher / cases."""
    low, high = pair["ci95"]
    return f"{pair['mean']:+.3f} ({low:+.3f}, {high:+.3f}), {pair['higher']} / {pair['n']}"

"""Runs that outlive a session: the wall time of a training resumed in parts, and when a finished evaluation may be
read back instead of run again. The benchmark scripts (``benchmarks/steps.py``) keep their records with these rules.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from pathlib import Path


def start_part(record: Path, checkpoints: Iterable[Path]) -> list[dict]:
    """Record in ``record`` (a JSON list of parts) that a part of a training starts now.

    A previous part without ``seconds`` was interrupted: it counts up to its newest checkpoint in ``checkpoints``
    (the training it kept; nothing when it saved none).

    Returns:
        the parts, the new one last.
    """
    parts = json.loads(record.read_text()) if record.is_file() else []
    if parts and "seconds" not in parts[-1]:
        kept = max((path.stat().st_mtime for path in checkpoints), default=parts[-1]["start"])
        parts[-1]["seconds"] = round(max(0.0, kept - parts[-1]["start"]), 1)
    parts.append({"start": time.time()})
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(parts))
    return parts


def finish_part(record: Path, parts: list[dict], timing: Mapping[str, float]) -> dict:
    """Record the last part's ``timing["seconds"]`` in ``record``.

    Returns:
        ``timing``, with ``seconds`` the sum of the parts and ``parts`` their number when there was more than one.
    """
    parts[-1]["seconds"] = timing["seconds"]
    record.write_text(json.dumps(parts))
    if len(parts) == 1:
        return dict(timing)
    return {**timing, "seconds": round(sum(part["seconds"] for part in parts), 1), "parts": len(parts)}


def reusable_timing(report: Path, record: Path, weights: Path, made: Mapping[str, object]) -> dict | None:
    """The timing of a finished evaluation that may be read back, else None.

    It may when its ``report`` is newer than the ``weights`` it scored and ``record`` (JSON, written by
    :func:`record_evaluation`) holds the same ``made`` (e.g. the configs and overrides that made it).
    """
    if not (report.is_file() and record.is_file()) or report.stat().st_mtime <= weights.stat().st_mtime:
        return None
    saved = json.loads(record.read_text())
    return saved["timing"] if {key: saved.get(key) for key in made} == dict(made) else None


def record_evaluation(record: Path, made: Mapping[str, object], timing: Mapping[str, float]) -> None:
    """Write what made an evaluation and its timing to ``record``, for :func:`reusable_timing`."""
    record.write_text(json.dumps({**made, "timing": dict(timing)}))

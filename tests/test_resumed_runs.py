"""``monai_ext.resumed_runs``: a training resumed in parts counts the training each part kept, and a finished
evaluation is read back only when it scored the same weights with the same options."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from monai_ext.resumed_runs import finish_part, record_evaluation, reusable_timing, start_part


def _touch(path: Path, age: float, text: str = "x") -> Path:
    path.write_text(text)
    os.utime(path, (time.time() - age,) * 2)
    return path


def test_an_interrupted_part_counts_up_to_its_last_checkpoint(tmp_path: Path) -> None:
    record = tmp_path / "train_parts.json"
    record.write_text(json.dumps([{"start": time.time() - 1000.0}]))  # a part started 1000 s ago, then killed
    checkpoints = [_touch(tmp_path / "c1.pt", 700.0), _touch(tmp_path / "c2.pt", 400.0)]  # the last 600 s in
    resumed = start_part(record, checkpoints)
    assert len(resumed) == 2 and abs(resumed[0]["seconds"] - 600.0) < 2.0
    timing = finish_part(record, resumed, {"seconds": 50.0, "peak_memory_mb_max_child": 10.0})
    assert timing["parts"] == 2 and abs(timing["seconds"] - 650.0) < 2.0
    assert timing["peak_memory_mb_max_child"] == 10.0


def test_an_interrupted_part_without_checkpoints_counts_nothing(tmp_path: Path) -> None:
    record = tmp_path / "train_parts.json"
    start_part(record, [])
    parts = start_part(record, [])
    assert parts[0]["seconds"] == 0.0
    assert finish_part(record, parts, {"seconds": 5.0}) == {"seconds": 5.0, "parts": 2}


def test_a_run_in_one_part_keeps_its_timing(tmp_path: Path) -> None:
    record = tmp_path / "train_parts.json"
    assert finish_part(record, start_part(record, []), {"seconds": 7.0}) == {"seconds": 7.0}


def test_an_evaluation_is_reused_only_for_the_same_options_and_older_weights(tmp_path: Path) -> None:
    weights = _touch(tmp_path / "model.pt", 100.0)
    report, record = tmp_path / "report.json", tmp_path / "eval_run.json"
    made = {"configs": ["a.json"], "overrides": {"num_parts": [2, 4]}}
    assert reusable_timing(report, record, weights, made) is None  # nothing evaluated yet
    _touch(report, 50.0)
    assert reusable_timing(report, record, weights, made) is None  # a report without its record
    record_evaluation(record, made, {"seconds": 3.0})
    assert reusable_timing(report, record, weights, made) == {"seconds": 3.0}
    other = {**made, "overrides": {"num_parts": [2, 8]}}
    assert reusable_timing(report, record, weights, other) is None
    _touch(weights, 10.0)  # retrained after the report
    assert reusable_timing(report, record, weights, made) is None

"""The structure-discovery report beside baselines run in the same evaluation and, for those that take minutes per
volume, beside the committed results of the same volumes (issue 30: `make demo` in minutes)."""

from __future__ import annotations

import json

import pytest
from ignite.engine import Engine

from monai_ext.engines import discovery_report
from monai_ext.engines.discovery_report import committed_columns

NUM_PARTS = [2, 4, 8]


def _evaluator() -> Engine:
    engine = Engine(lambda engine, batch: None)
    engine.state.metric_details = {f"matched_dice_l{level}": [0.5, 0.7] for level in (1, 2, 3)}
    return engine


def _reference(tmp_path, split: str = "test") -> str:
    column = [{"mean": 0.9 - 0.1 * level, "sd": 0.01, "n": 1} for level in range(3)]
    columns = {"ours": column, "kmeans": column, "bm4d_kmeans": column}
    report = {"split": split, "num_parts": NUM_PARTS, "matched_dice": columns}
    (tmp_path / "results.json").write_text(json.dumps({"runs": {"regular": {"report": report}}}))
    return f"{tmp_path / 'results.json'}/runs/regular/report"


def test_baselines_not_run_are_read_from_the_committed_report_and_marked(tiny_phantoms, tmp_path, capsys):
    report = discovery_report(
        _evaluator(), NUM_PARTS, str(tmp_path / "report.json"), dataset_dir=str(tiny_phantoms), split="test",
        compare_baselines="true", baseline_methods=["kmeans"], baseline_reference=_reference(tmp_path),
    )  # fmt: skip
    assert list(report["matched_dice"]) == ["ours", "kmeans", "bm4d_kmeans"]  # ours and k-means: this run's
    assert report["matched_dice"]["ours"][0]["mean"] == pytest.approx(0.6)
    assert report["matched_dice"]["kmeans"][0]["mean"] != pytest.approx(0.9)  # measured, not the committed value
    assert report["committed"] == {"bm4d_kmeans": _reference(tmp_path)}
    printed = capsys.readouterr().out
    assert "bm4d_kmeans*" in printed and "* not run here" in printed and "make demo-full" in printed


def test_a_committed_report_of_another_split_or_hierarchy_is_refused(tmp_path):
    with pytest.raises(ValueError, match="of split 'validation'"):
        committed_columns(_reference(tmp_path, split="validation"), "test", NUM_PARTS)
    with pytest.raises(ValueError, match=r"num_parts \[2, 4, 8\], this evaluation of 'test' and \[2, 4\]"):
        committed_columns(_reference(tmp_path), "test", [2, 4])
    with pytest.raises(ValueError, match="no key 'irregular'"):
        committed_columns(f"{tmp_path / 'results.json'}/runs/irregular/report", "test", NUM_PARTS)
    with pytest.raises(FileNotFoundError, match="config id baseline_reference"):
        committed_columns(f"{tmp_path / 'absent.json'}/runs", "test", NUM_PARTS)

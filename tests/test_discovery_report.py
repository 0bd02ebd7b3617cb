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


def _reference(tmp_path, columns: dict, split: str = "test") -> str:
    report = {"split": split, "num_parts": NUM_PARTS, "matched_dice": columns}
    (tmp_path / "results.json").write_text(json.dumps({"runs": {"regular": {"report": report}}}))
    return f"{tmp_path / 'results.json'}/runs/regular/report"


COMMITTED = [{"mean": 0.9 - 0.1 * level, "sd": 0.01, "n": 1} for level in range(3)]


def _report(tiny_phantoms, out, **options) -> dict:
    return discovery_report(
        _evaluator(), NUM_PARTS, str(out), dataset_dir=str(tiny_phantoms), split="test", compare_baselines="true",
        baseline_methods=["kmeans"], **options,
    )  # fmt: skip


def test_baselines_not_run_are_read_from_the_committed_report_and_marked(tiny_phantoms, tmp_path, capsys):
    measured = _report(tiny_phantoms, tmp_path / "alone.json")["matched_dice"]["kmeans"]
    reference = _reference(tmp_path, {"ours": COMMITTED, "kmeans": measured, "bm4d_kmeans": COMMITTED})
    report = _report(tiny_phantoms, tmp_path / "report.json", baseline_reference=reference)
    assert list(report["matched_dice"]) == ["ours", "kmeans", "bm4d_kmeans"]  # ours and k-means: this run's
    assert report["matched_dice"]["ours"][0]["mean"] == pytest.approx(0.6)
    assert report["committed"] == {"bm4d_kmeans": reference}
    printed = capsys.readouterr().out
    assert "bm4d_kmeans*" in printed and "* not run here" in printed and "baseline_methods unset" in printed


def test_a_committed_report_of_other_volumes_is_refused(tiny_phantoms, tmp_path):
    """The committed columns stand beside this run's only when the baselines both ran agree to 1e-6."""
    with pytest.raises(ValueError, match=r"is not of these volumes: its kmeans at level 1 is 0\.900000"):
        _report(tiny_phantoms, tmp_path / "a.json", baseline_reference=_reference(tmp_path, {"kmeans": COMMITTED}))
    with pytest.raises(ValueError, match="none of its baselines ran here"):
        _report(tiny_phantoms, tmp_path / "b.json", baseline_reference=_reference(tmp_path, {"x0_kmeans": COMMITTED}))


def test_a_committed_report_of_another_split_or_hierarchy_is_refused(tmp_path):
    reference = _reference(tmp_path, {"kmeans": COMMITTED}, split="validation")
    with pytest.raises(ValueError, match="of split 'validation'"):
        committed_columns(reference, "test", NUM_PARTS)
    reference = _reference(tmp_path, {"kmeans": COMMITTED})
    with pytest.raises(ValueError, match=r"num_parts \[2, 4, 8\], this evaluation of 'test' and \[2, 4\]"):
        committed_columns(reference, "test", [2, 4])
    with pytest.raises(ValueError, match="no key 'irregular'"):
        committed_columns(f"{tmp_path / 'results.json'}/runs/irregular/report", "test", NUM_PARTS)
    with pytest.raises(FileNotFoundError, match="config id baseline_reference"):
        committed_columns(f"{tmp_path / 'absent.json'}/runs", "test", NUM_PARTS)


def test_parts_used_per_level_are_reported(tmp_path, capsys):
    engine = _evaluator()
    engine.state.metric_details |= {"parts_used_l1": [[2.0], [2.0]], "parts_used_l2": [[2.0], [4.0]]}
    report = discovery_report(engine, NUM_PARTS, str(tmp_path / "report.json"))
    assert report["parts_used"][0] == {"mean": 2.0, "sd": 0.0, "n": 2, "all_used": 1.0}
    assert report["parts_used"][1]["mean"] == 3.0 and report["parts_used"][1]["all_used"] == 0.5
    assert report["parts_used"][2] == {}
    assert "l1 2.00 / 2 (100 %), l2 3.00 / 4 (50 %)" in capsys.readouterr().out

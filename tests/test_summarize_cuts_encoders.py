"""The encoder comparison that benchmarks/summarize.py renders from several cuts_selection.py results."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))
from summarize import CUTS_COORDINATE_WEIGHT, CUTS_ORACLE, CUTS_READING, CUTS_SHIPPED, cuts_encoders

ROOT = Path(__file__).resolve().parents[1]


def _result(reading: tuple[float, float], split: str = "validation") -> dict:
    def dice(tumour: float, ventricles: float) -> dict:
        return {"tumour": {"mean": tumour, "sd": 0.1, "n": 4}, "ventricles": {"mean": ventricles, "sd": 0.1, "n": 3}}

    return {
        "command": "python benchmarks/cuts_selection.py --out x.json",
        "split": split,
        "dice": {"k-means": dice(0.7, 0.5), CUTS_READING: dice(*reading), CUTS_ORACLE: dice(0.9, 0.8)},
        "worst_margin": {CUTS_READING: min(reading[0] - 0.7, reading[1] - 0.5)},
    }


def test_one_row_per_encoder_with_its_own_run() -> None:
    text = cuts_encoders(
        {"cuts_selection.json": _result((0.8, 0.6)), "cuts_selection_seed1.json": _result((0.75, 0.45))}
    )
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert rows[0].endswith("| 0.800 / 0.600 | +0.100 | 0.700 / 0.500 | 0.900 / 0.800 |")
    assert rows[1].startswith("| the 0.2.0 recipe with seed 1 |") and "| 0.750 / 0.450 | -0.050 |" in rows[1]


def test_training_split_has_its_own_files() -> None:
    text = cuts_encoders({"cuts_selection_training_radius2.json": _result((0.8, 0.6), split="training")}, "training")
    assert "run on the training split" in text and f"| {CUTS_SHIPPED} |" in text


def test_refuses_another_split() -> None:
    with pytest.raises(ValueError, match=r"cuts_selection\.json: .* on the validation split, not training"):
        cuts_encoders({"cuts_selection.json": _result((0.8, 0.6), split="training")})
    with pytest.raises(ValueError, match=r"on the training split, not validation"):
        cuts_encoders({"cuts_selection_training.json": _result((0.8, 0.6))}, "training")
    with pytest.raises(ValueError, match="on the validation or the training split, not test"):
        cuts_encoders({}, "test")


def test_shipped_label_names_the_training_recipe() -> None:
    train = json.loads((ROOT / "bundles" / "cuts" / "configs" / "train.json").read_text())
    assert f"positive radius {train['positive_radius']}" in CUTS_SHIPPED


def test_reading_is_the_bundles() -> None:
    inference = json.loads((ROOT / "bundles" / "cuts" / "configs" / "inference.json").read_text())
    assert inference["coordinate_weight"] == CUTS_COORDINATE_WEIGHT
    assert inference["persistence_rule"] == "lineage" and inference["refine_smoothness"] > 0

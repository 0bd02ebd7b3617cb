"""The benchmark scripts as a user runs them, in a subprocess (no test imports a benchmark script): the documents
quote the committed results, a CUTS selection refuses training options without ``--train``, the variant study's
paired differences average each volume over the training seeds (the rules that resume their runs are tested in
``test_resumed_runs.py``)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def test_documents_quote_the_committed_results() -> None:
    done = _run("benchmarks/summarize.py", "--check")
    assert done.returncode == 0, done.stderr


def test_update_rewrites_a_stale_block(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Page\n\n<!-- summarize: pretraining_headline -->\na typed number: 0.5\n<!-- /summarize -->\nend\n"
    )
    done = _run("benchmarks/summarize.py", "--update", str(page))
    assert done.returncode == 0, done.stderr
    text = page.read_text()
    assert "0.5\n" not in text and "| L1, t = 25 |" in text and text.endswith("<!-- /summarize -->\nend\n")


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("<!-- summarize: table9 -->\n<!-- /summarize -->\n")
    done = _run("benchmarks/summarize.py", "--update", str(page))
    assert done.returncode != 0 and "unknown sections ['table9']" in done.stderr


def test_selection_refuses_training_options_without_train() -> None:
    done = _run("benchmarks/cuts_selection.py", "--temperature", "0.1", "--seed", "1")
    assert done.returncode == 2 and "set the training: pass --train" in done.stderr


def _write_level(folder: Path, level: int, dice: dict[str, float]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rows = "".join(f"{name},{value},{value}\n" for name, value in dice.items())
    (folder / f"matched_dice_l{level}_raw.csv").write_text("filename,class0,mean\n" + rows)


def test_variant_pairs_average_each_volume_over_the_training_seeds(tmp_path: Path) -> None:
    study = tmp_path / "epochs6"  # discovery_variants.py's folders: seed 0 without a suffix, seed 1 with one
    dice = {
        ("defaults", 0): {"a": 0.5, "b": 0.7},
        ("defaults", 1): {"a": 0.7, "b": 0.5},
        ("paper", 0): {"a": 0.4, "b": 0.4},
        ("paper", 1): {"a": 0.9, "b": 0.2},
    }
    for (name, seed), values in dice.items():
        _write_level(study / (name + (f"_seed{seed}" if seed else "")) / "eval_validation", 1, values)
    out = tmp_path / "pairs.json"
    args = ["--reference", "defaults", "--variants", "paper", "--workdir", str(tmp_path), "--out", str(out)]
    done = _run("benchmarks/variant_pairs.py", *args, "--seeds", "0", "1")
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    # each volume averaged over the seeds first: a 0.65 - 0.6 = +0.05, b 0.3 - 0.6 = -0.3
    assert abs(result["pairs"]["paper"][0]["mean"] - (-0.125)) < 1e-9
    assert result["pairs"]["paper"][0]["n"] == 2
    seed1 = result["seeds"]["1"]
    assert abs(seed1["pairs"]["paper"][0]["mean"] - (-0.05)) < 1e-9  # a +0.2, b -0.3
    assert abs(result["seeds"]["0"]["pairs"]["paper"][0]["mean"] - (-0.2)) < 1e-9  # a -0.1, b -0.3
    assert abs(seed1["mean_dice"]["defaults"][0] - 0.6) < 1e-9 and abs(seed1["mean_dice"]["paper"][0] - 0.55) < 1e-9
    missing = _run("benchmarks/variant_pairs.py", *args, "--seeds", "0", "2")
    assert missing.returncode != 0 and "defaults_seed2" in missing.stderr

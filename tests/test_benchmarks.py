"""The benchmark scripts as a user runs them, in a subprocess (no test imports a benchmark script): the documents
quote the committed results, and a CUTS selection refuses training options without ``--train``."""

from __future__ import annotations

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

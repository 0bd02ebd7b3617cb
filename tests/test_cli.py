"""``python -m monai_ext``: options are checked against the command's signature before any work."""

from __future__ import annotations

import subprocess
import sys

import pytest

from monai_ext.__main__ import COMMANDS, check_options
from monai_ext.data.phantoms import make_phantoms


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "monai_ext", *args], capture_output=True, text=True, timeout=300)


def test_misspelled_option_is_refused_before_anything_is_written(tmp_path):
    out = tmp_path / "phantoms"
    result = run_cli("make-phantoms", "--out", str(out), "--sise", "30")
    assert result.returncode == 2, result.stderr
    assert "--sise" in result.stderr
    assert "Did you mean --size?" in result.stderr
    assert "--variant" in result.stderr, "the error lists the valid options"
    assert not out.exists()


@pytest.mark.parametrize("value", ["abc", "nan"])
def test_count_that_is_not_a_number_is_refused(tmp_path, value):
    out = tmp_path / "phantoms"
    result = run_cli("make-phantoms", "--out", str(out), "--n", value)
    assert result.returncode == 2, result.stderr
    assert "option --n must be an integer" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    "args, read",
    [
        (
            ["--out", "d", "--n", "3", "--noise=0.1", "--overwrite", "--workers", "None"],
            {"out": "d", "n": "3", "noise": "0.1", "overwrite": None, "workers": "None"},
        ),
        (["d", "irregular", "3", "--size", "16"], {"size": "16", "out": "d", "variant": "irregular", "n": "3"}),
        (
            ["--out=d", "--nooverwrite", "--seed", "-3", "--noise", "1"],
            {"out": "d", "overwrite": "False", "seed": "-3", "noise": "1"},
        ),
        (["--out", "d", "-v", "regular"], {"out": "d", "variant": "regular"}),
        (["--out", "d", "--sise", "30", "--", "--help"], {}),  # help asked for: fire answers, nothing is checked
    ],
)
def test_valid_options_are_read_as_fire_reads_them(args, read):
    assert check_options("make-phantoms", make_phantoms, args) == read


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--out", "d", "--n", "2.5"], "option --n must be an integer, got '2.5' (not an integer)"),
        (["--out", "d", "--n=True"], "option --n must be an integer"),
        (["--out", "d", "--n"], "option --n needs a value"),
        (["--out", "d", "--noise", "inf"], "option --noise must be a finite number, got 'inf'"),
        (["--out", "d", "--noise", "1e400"], "option --noise must be a finite number"),
        (["--out", "d", "--workers", "two"], "option --workers must be an integer or None"),
        (["d", "regular", "x"], "option n (given by position) must be an integer"),
        (["--out", "d", "-s", "3"], "unknown option -s"),
        (["--out", "d", "--nosize"], "option --nosize must be an integer, got 'False'"),
        (["--out", "d", "--nose", "0.1"], "unknown option --nose. Did you mean --noise?"),
        (["a", "b", "1", "2", "3", "0.1", "true", "1", "2d", "extra"], "too many values ['extra']"),
    ],
)
def test_bad_options_are_refused(args, message):
    with pytest.raises(ValueError) as error:
        check_options("make-phantoms", make_phantoms, args)
    assert message in str(error.value)


def test_every_command_accepts_its_own_options():
    options = {
        "make-phantoms": ["--out", "d", "--n", "2", "--size", "16", "--noise", "0.2"],
        "make-brains": ["--out", "d", "--n", "2", "--resolution", "2", "--slice-size", "64"],
        "baselines": ["--data", "d", "--methods", "kmeans", "--out", "None", "--verbose", "false"],
        "package-bundle": ["structure_discovery", "--out", "d", "--bundles_dir", "bundles", "--overwrite", "false"],
    }
    assert set(options) == set(COMMANDS)
    for command, args in options.items():
        check_options(command, COMMANDS[command], args)

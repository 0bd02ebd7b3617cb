"""Options of ``python -m monai.bundle run`` that no config defines are refused (issue 29, case 7)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from monai_ext.command_line import bundle_command_line, check_command_line, unknown_options

ROOT = Path(__file__).resolve().parents[1]
INFERENCE = str(ROOT / "bundles" / "diffusion_segmentation" / "configs" / "inference.json")


def _argv(*options: str) -> list[str]:
    return ["/env/lib/python3.11/site-packages/monai/bundle/__main__.py", "run", *options]


def _config() -> dict:
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    return parser.get()


def test_the_options_of_a_bundle_command_line_are_read_as_fire_reads_them():
    options = bundle_command_line(
        _argv("--config_file", "['a.json','b.json']", "--num-samples", "3", "--overwrite", "--seed=4", "--x#y", "z")
    )
    assert options == {"config_file": ["a.json", "b.json"], "num_samples": 3, "overwrite": True, "seed": 4, "x#y": "z"}
    assert bundle_command_line(["pytest", "-q"]) is None  # not a bundle command line: nothing to check
    check_command_line(["pytest", "--num_sample", "2"])


def test_misspelled_options_are_named_with_the_closest_id():
    problems = unknown_options({"num_sample": 2, "save_panel": "false", "qqq": 1}, _config())
    assert problems == [
        "--num_sample (did you mean --num_samples?)",
        "--save_panel (did you mean --save_panels?)",
        "--qqq",
    ]


@pytest.mark.parametrize(
    "options",
    [
        {"config_file": "x.json", "meta_file": "m.json", "logging_file": "l.conf", "run_id": "run", "args_file": "a"},
        {"num_samples": 2, "inferer#num_samples": 3, "evaluator#amp": False},  # existing ids, nested too
        {"dataloader#pin_memory": True},  # a new argument of a component: the component checks it
        {"tracking": "mlflow", "tracking_uri": "sqlite:///x.db", "experiment_name": "e", "run_name": "r"},
    ],
)
def test_known_ids_run_arguments_and_component_arguments_pass(options):
    assert unknown_options(options, _config()) == []


def test_tracking_settings_need_tracking():
    assert unknown_options({"experiment_name": "e"}, _config()) == ["--experiment_name"]


def test_a_nested_id_under_a_plain_mapping_must_exist():
    assert unknown_options({"weights_settings#prediction_typ": "x"}, _config()) == [
        "--weights_settings#prediction_typ (did you mean --weights_settings#prediction_type?)"
    ]


def test_a_misspelled_option_stops_the_run_before_it_writes(tmp_path):
    """Issue 29, case 7: --num_sample 2 --save_panel false were ignored: 5 samples and the panels were produced."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "monai.bundle", "run", "--config_file", INFERENCE, "--output_dir", str(out)]
    result = subprocess.run(
        [*command, "--num_sample", "2", "--save_panel", "false"], capture_output=True, text=True, timeout=300
    )
    assert result.returncode != 0
    assert "--num_sample (did you mean --num_samples?)" in result.stderr
    assert "--save_panel (did you mean --save_panels?)" in result.stderr
    assert not out.exists()


END = """
import atexit, sys
from pathlib import Path
from monai_ext.command_line import end_without_interpreter_teardown
from monai_ext.data.output_folder import claim
atexit.register(print, "interpreter teardown ran")  # as a process-group thread's cleanup would, at teardown
end_without_interpreter_teardown()
claim(sys.argv[1])
(Path(sys.argv[1]) / "a.txt").write_text("written")
if sys.argv[2] == "raise":
    raise ValueError("the real error")
if sys.argv[2] == "exit":
    sys.exit(3)
"""


@pytest.mark.parametrize("ending, code", [("raise", 1), ("exit", 3), ("return", 0)])
def test_a_distributed_rank_ends_with_its_own_code_and_records_its_outputs(tmp_path, ending, code):
    """Issue 29, case 9: ranks aborted at exit (SIGABRT, -6) when the interpreter's teardown met a process-group
    thread; they now end before that teardown (the handler registered earlier never runs), with their own exit
    code, after recording their outputs."""
    result = subprocess.run(
        [sys.executable, "-c", END, str(tmp_path / "out"), ending], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == code, result.stderr[-2000:]
    assert ("ValueError: the real error" in result.stderr) == (ending == "raise")
    assert "interpreter teardown ran" not in result.stdout
    assert '"file": "a.txt"' in (tmp_path / "out" / ".monai_ext_outputs.jsonl").read_text()

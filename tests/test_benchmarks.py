"""The benchmark scripts as a user runs them, in a subprocess (no test imports a benchmark script): the documents
quote the committed results, a CUTS selection refuses training options without ``--train``, the variant study's
paired differences average each volume over the training seeds, a finished evaluation is reused only when it scored
the same weights with the same options, and a resumed training's time adds the parts it kept."""

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


EVALUATE_TWICE = """
import json, os, sys
from pathlib import Path
sys.path.insert(0, "benchmarks")
import steps

work = Path(sys.argv[1])
runs = []

def fake_run(configs, overrides, log):  # a bundle evaluation: writes the report, counts the runs
    runs.append(overrides["eval_output_dir"])
    out = Path(overrides["eval_output_dir"])
    out.mkdir(parents=True)
    (out / "report.json").write_text(json.dumps({"run": len(runs)}))
    return {"seconds": float(len(runs))}

steps.run_bundle = fake_run
ckpt = work / "model.pt"
ckpt.write_text("weights")
configs = steps.bundle_config("structure_discovery", "train.json", "evaluate.json")
options = {"ckpt_path": str(ckpt), "num_parts": [2, 4]}
answers = [steps.evaluate_once(configs, options, work / "eval")]  # evaluated
answers.append(steps.evaluate_once(configs, options, work / "eval"))  # reused
answers.append(steps.evaluate_once(configs, {**options, "num_parts": [2, 8]}, work / "eval"))  # other options
os.utime(ckpt, (os.path.getmtime(work / "eval" / "report.json") + 10,) * 2)  # retrained weights
answers.append(steps.evaluate_once(configs, {**options, "num_parts": [2, 8]}, work / "eval"))
print(json.dumps([[report["run"], timing["seconds"]] for report, timing in answers]))
"""


def test_an_evaluation_is_reused_only_for_the_same_options_and_older_weights(tmp_path: Path) -> None:
    done = _run("-c", EVALUATE_TWICE, str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [[1, 1.0], [1, 1.0], [2, 2.0], [3, 3.0]]


TRAIN_IN_PARTS = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, "benchmarks")
import steps

work = Path(sys.argv[1]) / "train"
work.mkdir(parents=True)
interrupted = time.time() - 1000.0  # a part started 1000 s ago and killed; its last checkpoint 600 s after its start
(work.parent / "train_parts.json").write_text(json.dumps([{"start": interrupted}]))
for name, age in (("checkpoint_epoch=1.pt", 700.0), ("checkpoint_epoch=2.pt", 400.0)):
    (work / name).write_text("state")
    os.utime(work / name, (time.time() - age,) * 2)
steps.run_bundle = lambda configs, overrides, log: {"seconds": 50.0}  # the resumed part
first = steps.train_once([], work, {})[1]
second = steps.train_once([], work, {})[1]  # finished: reused
print(json.dumps([first, second]))
"""


def test_a_resumed_training_counts_the_parts_it_kept(tmp_path: Path) -> None:
    done = _run("-c", TRAIN_IN_PARTS, str(tmp_path))
    assert done.returncode == 0, done.stderr
    first, second = json.loads(done.stdout)
    assert first == second and first["parts"] == 2
    assert abs(first["seconds"] - 650.0) < 5.0  # 600 s up to the last checkpoint + the 50 s of the resumed part

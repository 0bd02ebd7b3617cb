"""The bundles as their clients use them: a bundle folder alone beside a monai-ext installed from its wheel, and
training under ``torchrun`` with two processes (gloo on the CPU).

Each test runs ``python -m monai.bundle`` in a subprocess, as a user would, on tiny settings (16^3 volumes, tiny
networks, one epoch).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_ext.data.brain import make_brains
from monai_ext.data.phantoms import make_phantoms

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = ROOT / "bundles"
SIZE = "[16, 16, 16]"
TINY_SEGMENTER = ["--spatial_size", SIZE, "--network_def#channels", "[4, 8, 8]", "--network_def#strides", "[1, 2]"]
TINY_DIFFUSION = ["--network_def#channels", "[8, 8, 16]", "--image_size", SIZE]
TINY_MASK_DIFFUSION = ["--spatial_size", "[16, 16]", "--num_train_timesteps", "20",
                       "--network_def#channels", "[8, 8, 16]", "--network_def#norm_num_groups", "8",
                       "--network_def#num_head_channels", "8"]  # fmt: skip
TINY_CUTS = ["--spatial_size", "[24, 24]", "--network_def#channels", "[4, 8]"]


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Twelve 24^3 phantoms (8 / 2 / 2; the networks see them resized to 16^3): every split holds at least one
    volume per rank of a 2-process run."""
    folder = tmp_path_factory.mktemp("clients") / "phantoms"
    make_phantoms(str(folder), variant="regular", n=12, seed=0, size=24, workers=1)
    return folder


@pytest.fixture(scope="module")
def brain_slices(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six subjects' 32^2 four-contrast slices, one through the tumour and one without it each (8 / 2 / 2 slices):
    every split holds at least one slice per rank of a 2-process run."""
    folder = tmp_path_factory.mktemp("clients") / "brain_slices"
    make_brains(folder, n=6, seed=0, mode="2d", slices_per_subject=1, empty_slices_per_subject=1, slice_size=32)
    return folder


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """monai-ext built as a wheel and installed from it into a folder of its own; the environment that imports it
    from there (and not from this checkout)."""
    root = tmp_path_factory.mktemp("wheel")
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", str(ROOT), "--no-deps", "--no-build-isolation", "-w", str(root)], check=True)
    wheels = list(root.glob("monai_ext-*.whl"))
    assert len(wheels) == 1, f"pip wheel wrote {wheels}"
    site = root / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheels[0])], check=True)
    env = {**os.environ, "PYTHONPATH": str(site)}
    where = subprocess.run(
        [sys.executable, "-c", "import monai_ext; print(monai_ext.__file__)"],
        env=env, cwd=root, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert where.startswith(str(site)), f"monai_ext imported from {where}, not from the wheel"
    return env


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 600):
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=timeout)


def _alone(name: str, tmp_path: Path) -> Path:
    """A copy of one bundle folder in an otherwise empty folder, without earlier run outputs."""
    folder = tmp_path / "alone" / name
    shutil.copytree(BUNDLES / name, folder, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    return folder


def _bundle(*args: str) -> list[str]:
    return [sys.executable, "-m", "monai.bundle", "run", *args]


def test_structure_discovery_folder_alone(phantoms, installed, tmp_path):
    """Inference with the shipped weights and one training epoch with the shipped diffusion model, run in the
    copied folder with monai-ext from its wheel: nothing is read from beside the folder."""
    folder = _alone("structure_discovery", tmp_path)
    infer = _run(
        _bundle("--config_file", "configs/inference.json", "--dataset_dir", str(phantoms), "--output_dir", "out",
                "--spatial_size", SIZE),
        folder, installed,
    )  # fmt: skip
    assert infer.returncode == 0, infer.stderr[-3000:]
    written = sorted((folder / "out").glob("*_l3.nii.gz"))
    assert len(written) == 2
    label = nib.load(written[0])
    assert label.shape == (24, 24, 24) and np.issubdtype(label.get_data_dtype(), np.integer)
    assert set(np.unique(np.asarray(label.dataobj)).tolist()) <= set(range(8))

    train = _run(
        _bundle("--config_file", "configs/train.json", "--dataset_dir", str(phantoms), "--output_dir", "train",
                "--max_epochs", "1", "--feature_cache_draws", "1", "--denoise_draws", "1", *TINY_SEGMENTER),
        folder, installed,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert (folder / "train" / "model.pt").is_file() and (folder / "train" / "checkpoint_epoch=1.pt").is_file()


def test_diffusion_pretraining_folder_alone(phantoms, installed, tmp_path):
    folder = _alone("diffusion_pretraining", tmp_path)
    sample = _run(
        _bundle("--config_file", "configs/inference.json", "--output_dir", "samples", "--num_samples", "1",
                "--num_inference_steps", "2", "--image_size", SIZE, "--progress", "false"),
        folder, installed,
    )  # fmt: skip
    assert sample.returncode == 0, sample.stderr[-3000:]
    assert len(list((folder / "samples").glob("*.nii.gz"))) == 1

    train = _run(
        _bundle("--config_file", "configs/train.json", "--dataset_dir", str(phantoms), "--output_dir", "train",
                "--max_epochs", "1", "--crop_size", SIZE, *TINY_DIFFUSION),
        folder, installed,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert (folder / "train" / "model.pt").is_file()


def test_diffusion_segmentation_folder_alone(brain_slices, installed, tmp_path):
    """Ensemble inference with the shipped weights on 32^2 slices and one training epoch, run in the copied folder
    with monai-ext from its wheel."""
    folder = _alone("diffusion_segmentation", tmp_path)
    infer = _run(
        _bundle("--config_file", "configs/inference.json", "--dataset_dir", str(brain_slices), "--output_dir", "out",
                "--num_samples", "2", "--num_inference_steps", "2", "--progress", "false"),
        folder, installed,
    )  # fmt: skip
    assert infer.returncode == 0, infer.stderr[-3000:]
    for kind in ("mask", "mean", "variance"):
        written = sorted((folder / "out").rglob(f"*_{kind}.nii.gz"))
        assert len(written) == 2, f"{kind}: {written}"  # the two test slices
        assert nib.load(written[0]).shape[:2] == (32, 32)
    assert len(sorted((folder / "out").rglob("*_panel.png"))) == 2

    train = _run(
        _bundle("--config_file", "configs/train.json", "--dataset_dir", str(brain_slices), "--output_dir", "train",
                *TORCHRUN["diffusion_segmentation"]),
        folder, installed,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert (folder / "train" / "model.pt").is_file() and (folder / "train" / "checkpoint_epoch=1.pt").is_file()


def test_cuts_folder_alone(brain_slices, installed, tmp_path):
    """Inference with the shipped encoder on 32^2 slices (condensation, persistent structures, level stacks and
    panels) and one training epoch, run in the copied folder with monai-ext from its wheel."""
    folder = _alone("cuts", tmp_path)
    infer = _run(
        _bundle("--config_file", "configs/inference.json", "--dataset_dir", str(brain_slices), "--output_dir", "out",
                "--landmarks", "256"),
        folder, installed,
    )  # fmt: skip
    assert infer.returncode == 0, infer.stderr[-3000:]
    for kind in ("seg", "levels"):
        written = sorted((folder / "out").rglob(f"*_{kind}.nii.gz"))
        assert len(written) == 2, f"{kind}: {written}"  # the two test slices
        assert nib.load(written[0]).shape[:2] == (32, 32)
    assert len(sorted((folder / "out").rglob("*_levels.png"))) == 2

    train = _run(
        _bundle("--config_file", "configs/train.json", "--dataset_dir", str(brain_slices), "--output_dir", "train",
                *TORCHRUN["cuts"]),
        folder, installed,
    )  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert (folder / "train" / "model.pt").is_file() and (folder / "train" / "checkpoint_epoch=1.pt").is_file()


def _torchrun(name: str, config_files: list[str], overrides: list[str], cwd: Path):
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "monai.bundle", "run", "--config_file", json.dumps(config_files).replace('"', "'"),
        "--bundle_root", str(BUNDLES / name), *overrides,
    ]  # fmt: skip
    return _run(command, cwd, {**os.environ, "OMP_NUM_THREADS": "1"}, timeout=900)


TORCHRUN = {
    "cuts": ["--max_epochs", "1", "--batch_size", "2", "--anchors_per_image", "4",
             *TINY_CUTS],
    "structure_discovery": ["--max_epochs", "1", "--feature_cache_draws", "1", "--denoise_draws", "1",
                            "--batch_size", "2", *TINY_SEGMENTER],
    "diffusion_pretraining": ["--max_epochs", "1", "--batch_size", "2", "--num_crops", "1",
                              "--crop_size", SIZE, *TINY_DIFFUSION],
    "diffusion_segmentation": ["--max_epochs", "1", "--batch_size", "2",
                               "--val_inference_steps", "2", *TINY_MASK_DIFFUSION],
}  # fmt: skip
DATASETS = {
    "cuts": "brain_slices",
    "structure_discovery": "phantoms",
    "diffusion_pretraining": "phantoms",
    "diffusion_segmentation": "brain_slices",
}


@pytest.mark.parametrize("name", sorted(TORCHRUN))
def test_torchrun_two_processes(name, request, tmp_path):
    """Both ranks train on their half of the 8 training volumes (slices); only rank 0 writes the checkpoint and
    model."""
    dataset = request.getfixturevalue(DATASETS[name])
    report = tmp_path / "ranks.json"
    write_state = (
        "$open(os.path.join(@output_dir, 'rank' + os.environ['RANK'] + '.txt'), 'w')"
        ".write(str(@train#trainer.state.epoch) + ' ' + str(@train#trainer.state.iteration))"
    )
    report.write_text(json.dumps({"+finalize": [write_state]}))
    configs = [str(BUNDLES / name / "configs" / f) for f in ("train.json", "multi_gpu_train.json")] + [str(report)]
    out = tmp_path / "train"
    run = _torchrun(name, configs, ["--dataset_dir", str(dataset), "--output_dir", str(out), *TORCHRUN[name]], ROOT)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    # 8 training volumes, 4 per rank, batch 2: two iterations on each rank in its one epoch
    assert {p.name: p.read_text() for p in out.glob("rank*.txt")} == {"rank0.txt": "1 2", "rank1.txt": "1 2"}
    assert sorted(p.name for p in out.glob("checkpoint*.pt")) == ["checkpoint_epoch=1.pt"]
    assert (out / "model.pt").is_file()


def test_torchrun_rank_that_raises_ends_the_job(phantoms, tmp_path):
    """A failure on rank 1 alone stops both processes with rank 1's error instead of leaving rank 0 waiting."""
    fail = tmp_path / "fail.json"
    fail.write_text(json.dumps({"+initialize": ["$1 / 0 if os.environ['RANK'] == '1' else None"]}))
    name = "diffusion_pretraining"
    configs = [str(BUNDLES / name / "configs" / f) for f in ("train.json", "multi_gpu_train.json")] + [str(fail)]
    overrides = ["--dataset_dir", str(phantoms), "--output_dir", str(tmp_path / "train"), *TORCHRUN[name]]
    run = _torchrun(name, configs, overrides, ROOT)
    assert run.returncode != 0
    output = run.stdout + run.stderr
    assert "ZeroDivisionError" in output
    # issue 29, case 9: no rank aborts at exit (SIGABRT, exit -6, which torchrun would report as the root cause)
    assert "terminate called" not in output and "SIGABRT" not in output and "exitcode  : -6" not in output


SINGLE = {
    "cuts": ["--max_epochs", "1", "--batch_size", "2", "--anchors_per_image", "4", *TINY_CUTS],
    "structure_discovery": ["--max_epochs", "1", "--feature_cache_draws", "1", "--denoise_draws", "1",
                            "--batch_size", "4", *TINY_SEGMENTER],
    "diffusion_pretraining": ["--max_epochs", "1", "--batch_size", "4", "--num_crops", "1", "--crop_size", SIZE,
                              *TINY_DIFFUSION],
    "diffusion_segmentation": ["--max_epochs", "1", "--batch_size", "4", "--val_inference_steps", "2",
                               *TINY_MASK_DIFFUSION],
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(SINGLE))
def test_mlflow_tracking_with_monai_command_line(name, request, tmp_path):
    """Issue 29, case 14: --tracking mlflow was refused by the output-folder guard (MONAI writes the executed config
    into output_dir first), and with --overwrite true the config was deleted. Now the run logs to the SQLite store
    that MONAI 1.6's tracking uses by default (mlflow 3 accepts no file store), keeps the executed config, and a
    second run replaces the first's files with --overwrite true."""
    pytest.importorskip("mlflow")
    dataset = request.getfixturevalue(DATASETS[name])
    out = tmp_path / "train"
    command = _bundle(
        "--config_file", str(BUNDLES / name / "configs" / "train.json"), "--dataset_dir", str(dataset),
        "--output_dir", str(out), "--tracking", "mlflow", *SINGLE[name],
    )  # fmt: skip
    for attempt in ("first", "again"):
        run = _run([*command, *(["--overwrite", "true"] if attempt == "again" else [])], ROOT, timeout=600)
        assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
        executed = sorted(out.glob("config_*.json"))
        assert len(executed) == 1, f"{attempt}: executed configs {executed}"
        manifest = (out / ".monai_ext_outputs.jsonl").read_text()
        assert f'"file": "{executed[0].name}"' in manifest and '"file": "model.pt"' in manifest
        with sqlite3.connect(out / "mlruns.db") as store:
            statuses = [row[0] for row in store.execute("SELECT status FROM runs")]
            metrics = {row[0] for row in store.execute("SELECT DISTINCT key FROM metrics")}
        assert statuses == ["FINISHED"] and "train_loss" in metrics, (attempt, statuses, metrics)
        time.sleep(1)  # MONAI names the executed config by the second

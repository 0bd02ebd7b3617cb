"""Bad input tried as a user would, through the bundle configs (issue 29): each case fails with a message naming the
file, the key and the expected form, before anything is written, and never destroys data."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_support import error_messages
from monai.bundle import ConfigWorkflow
from PIL import Image

from monai_ext.weights import settings_path

ROOT = Path(__file__).resolve().parents[1]
SEGMENTATION = ROOT / "bundles" / "diffusion_segmentation" / "configs"
CUTS = ROOT / "bundles" / "cuts" / "configs"
TINY_SAMPLING = {"num_samples": 2, "num_inference_steps": 2, "spatial_size": [32, 32], "progress": False}


def _workflow(configs: Path, files: list[str], kind: str = "infer", **overrides) -> ConfigWorkflow:
    paths = [str(configs / name) for name in files]
    return ConfigWorkflow(
        config_file=paths if len(paths) > 1 else paths[0],
        meta_file=str(configs / "metadata.json"),
        workflow_type=kind,
        **overrides,
    )


def _refused(workflow: ConfigWorkflow, step: str = "initialize") -> str:
    with pytest.raises(Exception) as error:
        workflow.initialize() if step == "initialize" else (workflow.initialize(), workflow.run())
    return error_messages(error.value)


def test_cuts_output_into_its_own_input_folder_is_refused_and_the_folder_kept(tmp_path):
    """Case 1, as reported: --dataset_dir imgs --output_dir imgs --overwrite true emptied imgs."""
    images = tmp_path / "imgs"
    images.mkdir()
    for index in range(2):
        Image.fromarray(np.random.default_rng(index).integers(0, 255, (40, 30), dtype=np.uint8)).save(
            images / f"cell{index}.png"
        )
    (images / "notes.txt").write_text("the user's notes")
    before = {p.name: p.read_bytes() for p in images.iterdir()}
    for out in (images, tmp_path):
        message = _refused(
            _workflow(CUTS, ["inference.json"], dataset_dir=str(images), output_dir=str(out), overwrite="true")
        )
        assert f"output folder '{out}'" in message and "the input" in message
    assert {p.name: p.read_bytes() for p in images.iterdir()} == before


def _nan_weights(tmp_path: Path) -> Path:
    shipped = ROOT / "bundles" / "diffusion_segmentation" / "models" / "model.pt"
    state = torch.load(shipped, weights_only=True)
    first = next(iter(state))  # the input convolution: every output becomes NaN
    state[first] = torch.full_like(state[first], float("nan"))
    path = tmp_path / "nan.pt"
    torch.save(state, path)
    shutil.copy(settings_path(shipped), settings_path(path))
    return path


def test_an_ensemble_with_nan_is_an_error_naming_input_and_weights(tiny_brain_slices, tmp_path):
    """Case 3: NaN weights gave NaN mean and variance maps and an all-zero mask ("no tumour"), exit 0."""
    weights = _nan_weights(tmp_path)
    workflow = _workflow(
        SEGMENTATION, ["inference.json"], dataset_dir=str(tiny_brain_slices), output_dir=str(tmp_path / "out"),
        ckpt_path=str(weights), **TINY_SAMPLING,
    )  # fmt: skip
    message = _refused(workflow, "run")
    assert "holds NaN or infinite values" in message and f"weights '{weights}'" in message
    assert "_image.nii.gz" in message  # the input slice
    assert not list((tmp_path / "out").rglob("*_mask.*")), "a mask was written from a NaN ensemble"


def test_cuts_evaluation_of_a_target_no_record_has_is_refused_before_it_runs(tiny_brain_slices, tmp_path):
    """Case 5: --targets "{'lesion': 'lbl'}" exited 0 with a report of 0 images; case 12: evaluation of images
    without labels ended in 'NoneType'.reshape."""
    unlabelled = tmp_path / "unlabelled"
    unlabelled.mkdir()
    record = json.loads((tiny_brain_slices / "datalist.json").read_text())["test"][0]
    shutil.copy(tiny_brain_slices / record["image"], unlabelled / "slice.nii.gz")
    cases = [
        ({"dataset_dir": str(tiny_brain_slices), "targets": {"lesion": "lbl"}}, "target 'lesion' (key 'lbl')"),
        ({"dataset_dir": str(unlabelled)}, "target 'tumour' (key 'label'), 'ventricles' (key 'ventricles')"),
    ]
    for overrides, named in cases:
        out = tmp_path / "eval"
        message = _refused(_workflow(CUTS, ["inference.json", "evaluate.json"], eval_output_dir=str(out), **overrides))
        assert "has the ground truth of target" in message and named in message
        assert not out.exists()


@pytest.mark.parametrize(
    "overrides, named",
    [
        ({"seed": "abc"}, "config id 'seed' must be an integer >= 0, got 'abc'"),
        ({"spatial_size": [17, 17]}, "config id 'spatial_size' must list positive multiples of 4"),
    ],
)
def test_bad_options_are_named_before_anything_runs(overrides, named, tiny_brain_slices, tmp_path):
    """Case 12: --seed abc failed without naming the option; --spatial_size [17,17] said 'Sizes of tensors must
    match' after the network had run."""
    for files, kind in ((["inference.json"], "infer"), (["train.json"], "train")):
        out = tmp_path / kind
        workflow = _workflow(
            SEGMENTATION, files, kind, dataset_dir=str(tiny_brain_slices), output_dir=str(out), **overrides
        )
        assert named in _refused(workflow)
        assert not out.exists()


def _rgba_png(path: Path) -> None:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 4), np.uint8)).save(path)


def _thin_slice(path: Path) -> None:
    nib.save(nib.Nifti1Image(np.random.rand(1, 128, 4).astype(np.float32), np.eye(4)), path)


def _huge_slice(path: Path) -> None:
    contrasts = np.stack([np.full((8, 8), -3e38), np.full((8, 8), 3e38)] * 2, axis=-1).astype(np.float32)
    nib.save(nib.Nifti1Image(contrasts, np.eye(4)), path)


@pytest.mark.parametrize(
    "name, write, named",
    [
        ("photo.png", _rgba_png, r"'image' of '.*photo\.png' is a RGBA picture: its alpha"),  # case 13
        ("thin.nii.gz", _thin_slice, r"'image' of '.*thin\.nii\.gz' has spatial shape \(1, 128\), smaller than 2"),
        ("huge.nii.gz", _huge_slice, r"'image' of '.*huge\.nii\.gz' spans -3e\+38 to 3e\+38, a range that overflows"),
    ],
    ids=["rgba png (case 13)", "1 x 128 (case 12)", "near the float32 limit (case 3)"],
)
def test_inputs_that_are_no_four_contrast_slice_are_refused_naming_the_file(name, write, named, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write(data / name)
    out = tmp_path / "out"
    workflow = _workflow(SEGMENTATION, ["inference.json"], dataset_dir=str(data), output_dir=str(out), **TINY_SAMPLING)
    message = _refused(workflow, "run")
    assert re.search(named, message), message
    assert not list(out.rglob("*.nii.gz")) and not list(out.rglob("*.png"))

"""The bundles as MONAI Label 0.8.5 loads them: ``monailabel.tasks.infer.bundle.BundleInferTask`` on a copy of the
bundle folder, called the way the server calls it (``task(request) -> (result file, result json)``).

Run by ``make test-monailabel`` (MONAI 1.5.2, monai-ext from its wheel); skipped where monailabel is missing.
Timings are printed: run with ``-s`` to see them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("monailabel.tasks.infer.bundle")

from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.bundle import BundleInferTask
from monailabel_support import assert_no_dataset, assert_unchanged, channel_def, check_label_map, copy_bundle, snapshot


def test_structure_discovery_bundle_infer_task(volumes, empty_cache, tmp_path, monkeypatch):
    """MONAI Label's bundle task returns, for volumes of sizes other than the network's, one integer NIfTI label
    map on the input's grid whose values are keys of channel_def, names the parts as channel_def does, and writes
    nothing into the bundle folder nor any dataset into the cache."""
    results = tmp_path / "results"
    results.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(results))  # MONAI Label's Writer puts the result file there
    bundle = copy_bundle("structure_discovery", tmp_path / "bundles" / "structure_discovery")
    parts = channel_def(bundle)
    before = snapshot(bundle)

    start = time.perf_counter()
    task = BundleInferTask(str(bundle), {"preload": "false"})
    built = time.perf_counter() - start
    print(f"\n[monailabel task] BundleInferTask(structure_discovery) built in {built:.2f} s")

    assert task.is_valid(), "MONAI Label refused the bundle (BundleInferTask.is_valid() is False)"
    assert task.type == InferType.SEGMENTATION
    expected = {name.lower(): int(key) for key, name in parts.items() if name.lower() != "background"}
    assert task.labels == expected, f"task labels {task.labels} do not match channel_def {parts}"
    assert task.info()["labels"] == expected
    assert task.dimension == 3
    assert_unchanged(bundle, before, "building BundleInferTask")
    assert_no_dataset(empty_cache, "building BundleInferTask")

    for name, path in volumes.items():
        start = time.perf_counter()
        result, params = task({"image": str(path), "device": "cpu", "logging": "WARNING"})
        elapsed = time.perf_counter() - start
        assert isinstance(result, str), f"{name}: MONAI Label returned {type(result).__name__}, not a file path"
        assert result.endswith(".nii.gz"), f"{name}: result file {result} is not named as NIfTI"
        image = check_label_map(Path(result), path, parts)
        assert params["label_names"] == expected, f"{name}: result label_names {params['label_names']}"
        values = [int(v) for v in np.unique(np.asarray(image.dataobj))]
        print(
            f"[monailabel task] {name}: input {nib.load(str(path)).shape} -> {Path(result).name} "
            f"shape {image.shape} dtype {image.get_data_dtype()} values {values}; request {elapsed:.2f} s "
            f"(MONAI Label latencies {params['latencies']['pre']} pre, {params['latencies']['infer']} infer, "
            f"{params['latencies']['post']} post, {params['latencies']['write']} write, "
            f"{params['latencies']['total']} total)"
        )

    assert_unchanged(bundle, before, "BundleInferTask requests")
    assert_no_dataset(empty_cache, "BundleInferTask requests")


def test_diffusion_pretraining_bundle_infer_task(volumes, empty_cache, tmp_path):
    """Documents what MONAI Label 0.8.5 does with the generative diffusion_pretraining bundle (current behaviour,
    not a requirement): it accepts the folder as a 3D *segmentation* model whose one "label" is channel_def's
    "predicted clean image x0", but every image request fails before inference, because the bundle's
    preprocessing has no image loader (its inputs are noise made by its own dataset): MONAI Label hands the image
    path to the network as it is and raises TypeError. It writes nothing meanwhile. If this test fails, the
    bundle's serving behaviour changed: update the report / docs rather than this test alone."""
    bundle = copy_bundle("diffusion_pretraining", tmp_path / "bundles" / "diffusion_pretraining")
    parts = channel_def(bundle)
    before = snapshot(bundle)

    task = BundleInferTask(str(bundle), {"preload": "false"})
    assert task.is_valid()
    assert task.type == InferType.SEGMENTATION
    assert task.labels == {name.lower(): int(key) for key, name in parts.items()}

    start = time.perf_counter()
    with pytest.raises(TypeError, match=r"expected np\.ndarray \(got str\)"):
        task({"image": str(volumes["cube36"]), "device": "cpu", "logging": "WARNING"})
    print(
        f"\n[monailabel task] diffusion_pretraining: is_valid {task.is_valid()}, type {task.type.value}, labels "
        f"{task.labels}; an image request raised TypeError after {time.perf_counter() - start:.2f} s"
    )
    assert_unchanged(bundle, before, "diffusion_pretraining BundleInferTask")
    assert_no_dataset(empty_cache, "diffusion_pretraining BundleInferTask")


def _bundle_output(bundle: Path, image: Path, work: Path, suffix: str, *overrides: str) -> np.ndarray:
    """The ``<image>_<suffix>.nii.gz`` map the bundle's own inference writes for ``image``, run as a user runs it
    (with ``overrides``: e.g. no panels)."""
    data = work / "data"
    data.mkdir(parents=True)
    shutil.copy(image, data / "slice.nii.gz")
    (data / "datalist.json").write_text(json.dumps({"test": [{"image": "slice.nii.gz"}]}))
    command = [
        sys.executable, "-m", "monai.bundle", "run", "--config_file", str(bundle / "configs" / "inference.json"),
        "--bundle_root", str(bundle), "--dataset_dir", str(data), "--output_dir", str(work / "out"), *overrides,
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, check=False, timeout=1800)
    assert run.returncode == 0, run.stderr[-3000:]
    return np.asarray(nib.load(str(work / "out" / f"slice_{suffix}.nii.gz")).dataobj)


def test_diffusion_segmentation_bundle_infer_task(slices, empty_cache, tmp_path, monkeypatch):
    """MONAI Label's bundle task serves the 2D ensemble bundle: for four-contrast slices of sizes other than the
    network's, one integer whole-tumour mask on the input's pixel grid (H, W) whose values are keys of channel_def,
    equal to the mask the bundle's own inference writes for the same slice (same seed: orientation and resizing
    survive MONAI Label's round trip); it writes nothing into the bundle folder (no panels, no maps) nor any
    dataset into the cache. MONAI Label 0.8.5 writes 2D results without an affine (its writer passes none for 2D
    arrays), so only the pixel grid is compared."""
    results = tmp_path / "results"
    results.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(results))
    bundle = copy_bundle("diffusion_segmentation", tmp_path / "bundles" / "diffusion_segmentation")
    parts = channel_def(bundle)
    before = snapshot(bundle)

    task = BundleInferTask(str(bundle), {"preload": "false"})
    assert task.is_valid(), "MONAI Label refused the bundle (BundleInferTask.is_valid() is False)"
    assert task.type == InferType.SEGMENTATION
    assert task.labels == {"whole tumour": 1}
    assert task.dimension == 2
    assert_unchanged(bundle, before, "building BundleInferTask")

    for name, (image_path, label_path) in slices.items():
        start = time.perf_counter()
        result, params = task({"image": str(image_path), "device": "cpu", "logging": "WARNING"})
        elapsed = time.perf_counter() - start
        assert isinstance(result, str) and result.endswith(".nii.gz"), f"{name}: result {result!r}"
        mask = np.asarray(nib.load(result).dataobj)
        truth = np.asarray(nib.load(str(label_path)).dataobj) > 0
        assert mask.shape == truth.shape, f"{name}: mask shape {mask.shape} != input grid {truth.shape}"
        assert np.issubdtype(mask.dtype, np.integer), f"{name}: mask dtype {mask.dtype}"
        assert {int(v) for v in np.unique(mask)} <= {int(k) for k in parts}, f"{name}: values {np.unique(mask)}"
        own = _bundle_output(
            bundle, image_path, tmp_path / f"own_{name}", "mask", "--progress", "false", "--save_panels", "false"
        )
        assert np.array_equal(np.squeeze(own), mask), f"{name}: MONAI Label's mask differs from the bundle's own"
        dice = 2 * np.sum((mask > 0) & truth) / max(np.sum(mask > 0) + np.sum(truth), 1)
        print(
            f"\n[monailabel task] diffusion_segmentation {name}: input {nib.load(str(image_path)).shape} -> mask "
            f"{mask.shape}, {int(mask.sum())} tumour pixels, Dice {dice:.3f}; request {elapsed:.2f} s "
            f"(infer {params['latencies']['infer']} s)"
        )

    assert_unchanged(bundle, before, "BundleInferTask requests")
    assert_no_dataset(empty_cache, "BundleInferTask requests")


def test_cuts_bundle_infer_task(slices, empty_cache, tmp_path, monkeypatch):
    """MONAI Label's bundle task serves the CUTS bundle: for four-contrast slices of sizes other than the network's,
    one integer label map of persistent structures on the input's pixel grid (H, W) whose values are keys of
    channel_def, equal to the segmentation the bundle's own inference writes for the same slice; it writes nothing
    into the bundle folder (no levels, no panels) nor any dataset into the cache."""
    results = tmp_path / "results"
    results.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(results))
    bundle = copy_bundle("cuts", tmp_path / "bundles" / "cuts")
    parts = channel_def(bundle)
    before = snapshot(bundle)

    task = BundleInferTask(str(bundle), {"preload": "false"})
    assert task.is_valid(), "MONAI Label refused the bundle (BundleInferTask.is_valid() is False)"
    assert task.type == InferType.SEGMENTATION
    assert task.labels == {name.lower(): int(key) for key, name in parts.items() if name.lower() != "background"}
    assert task.dimension == 2
    assert_unchanged(bundle, before, "building BundleInferTask")

    for name, (image_path, label_path) in slices.items():
        start = time.perf_counter()
        result, params = task({"image": str(image_path), "device": "cpu", "logging": "WARNING"})
        elapsed = time.perf_counter() - start
        assert isinstance(result, str) and result.endswith(".nii.gz"), f"{name}: result {result!r}"
        label_map = np.asarray(nib.load(result).dataobj)
        grid = np.asarray(nib.load(str(label_path)).dataobj).shape
        assert label_map.shape == grid, f"{name}: label map shape {label_map.shape} != input grid {grid}"
        assert np.issubdtype(label_map.dtype, np.integer), f"{name}: dtype {label_map.dtype}"
        values = {int(v) for v in np.unique(label_map)}
        assert values <= {int(k) for k in parts}, f"{name}: values {sorted(values)}"
        own = _bundle_output(bundle, image_path, tmp_path / f"own_{name}", "seg", "--save_panels", "false")
        assert np.array_equal(own, label_map), f"{name}: MONAI Label's label map differs from the bundle's own"
        print(
            f"\n[monailabel task] cuts {name}: input {nib.load(str(image_path)).shape} -> label map "
            f"{label_map.shape} with {len(values)} parts; request {elapsed:.2f} s "
            f"(infer {params['latencies']['infer']} s)"
        )

    assert_unchanged(bundle, before, "BundleInferTask requests")
    assert_no_dataset(empty_cache, "BundleInferTask requests")

"""Helpers of the MONAI Label tests: bundle copies, write detection and label-map checks (no monailabel import)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
BUNDLES = ROOT / "bundles"
CACHE_ENV = "MONAI_EXT_CACHE"


def copy_bundle(name: str, destination: Path) -> Path:
    """A copy of ``bundles/<name>`` at ``destination`` without earlier run outputs."""
    shutil.copytree(BUNDLES / name, destination, ignore=shutil.ignore_patterns("runs", "__pycache__"))
    assert not (destination / "runs").exists()
    return destination


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under ``folder`` with its size and modification time, to detect any write."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def assert_unchanged(folder: Path, before: dict[str, tuple[int, int]], what: str) -> None:
    after = snapshot(folder)
    added = sorted(set(after) - set(before))
    removed = sorted(set(before) - set(after))
    modified = sorted(k for k in set(before) & set(after) if before[k] != after[k])
    assert not (added or removed or modified), (
        f"{what} wrote into {folder}: added {added}, removed {removed}, modified {modified}"
    )
    assert not (folder / "runs").exists(), f"{what} created {folder / 'runs'}"


def assert_no_dataset(cache: Path, what: str) -> None:
    """``$MONAI_EXT_CACHE`` must stay absent or empty: no default dataset was generated."""
    contents = sorted(str(p.relative_to(cache)) for p in cache.rglob("*")) if cache.exists() else []
    assert not contents, f"{what} wrote into {CACHE_ENV}={cache}: {contents[:20]}"


def channel_def(bundle: Path) -> dict[str, str]:
    metadata = json.loads((bundle / "configs" / "metadata.json").read_text())
    return metadata["network_data_format"]["outputs"]["pred"]["channel_def"]


def check_label_map(result: Path, source: Path, parts: dict[str, str]) -> nib.Nifti1Image:
    """``result`` is a NIfTI label map on ``source``'s grid whose values are keys of ``parts`` (channel_def)."""
    with open(result, "rb") as stream:
        head = stream.read(4)
    assert not head.startswith(b"NRRD"), f"{result} holds NRRD bytes, not NIfTI"
    image = nib.load(str(result))  # raises on anything that is not NIfTI (e.g. a seg.nrrd under a .nii.gz name)
    assert isinstance(image, nib.Nifti1Image | nib.Nifti2Image), f"{result} read as {type(image).__name__}"
    reference = nib.load(str(source))
    labels = np.asarray(image.dataobj)
    assert labels.shape == reference.shape, f"label map shape {labels.shape} != input shape {reference.shape}"
    assert np.issubdtype(labels.dtype, np.integer), f"label map dtype {labels.dtype} is not an integer type"
    values = {int(v) for v in np.unique(labels)}
    keys = {int(k) for k in parts}
    assert values <= keys, f"label values {sorted(values)} are not all keys of channel_def {sorted(keys)}"
    assert len(values) >= 2, f"label map holds one part only ({sorted(values)}): not a segmentation of a phantom"
    assert np.allclose(image.affine, reference.affine, atol=1e-4), (
        f"label map affine\n{image.affine}\n differs from the input's\n{reference.affine}"
    )
    return image

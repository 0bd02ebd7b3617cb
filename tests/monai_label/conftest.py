"""Fixtures of the MONAI Label tests (run by ``make test-monailabel`` in ``.venv-monailabel``).

This file imports nothing from MONAI Label, so the main suite (``pytest tests``, no monailabel installed) can load
it; the test modules themselves skip there with ``pytest.importorskip("monailabel.tasks.infer.bundle")``.
"""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

CACHE_ENV = "MONAI_EXT_CACHE"


@pytest.fixture(scope="session")
def volumes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Generated one-channel NIfTI volumes of sizes other than the network's (48^3) and the default phantoms'
    (50^3): a 36^3 phantom, a 60^3 phantom, and a 40x52x36 crop of another 60^3 phantom with an anisotropic,
    shifted affine (0.8 x 1.0 x 1.25 mm voxels), written with nibabel."""
    from monai_ext.data.phantoms import make_phantoms

    root = tmp_path_factory.mktemp("volumes")
    make_phantoms(str(root / "p36"), variant="regular", n=3, seed=0, size=36, workers=1)
    make_phantoms(str(root / "p60"), variant="regular", n=3, seed=0, size=60, workers=1)
    found = {"cube36": root / "p36" / "phantom_000_image.nii.gz", "cube60": root / "p60" / "phantom_000_image.nii.gz"}
    big = nib.load(str(root / "p60" / "phantom_001_image.nii.gz"))
    affine = np.diag([0.8, 1.0, 1.25, 1.0])
    affine[:3, 3] = [-12.0, 7.5, 30.0]
    moved = nib.Nifti1Image(np.asarray(big.dataobj, dtype=np.float32), affine)
    crop = moved.slicer[10:50, 4:56, 12:48]  # nibabel shifts the affine's origin to the crop's first voxel
    found["crop40x52x36"] = root / "crop40x52x36.nii.gz"
    nib.save(crop, str(found["crop40x52x36"]))
    for name, path in found.items():
        assert path.is_file(), f"{name}: {path} was not generated"
    assert nib.load(str(found["crop40x52x36"])).shape == (40, 52, 36)
    return found


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``$MONAI_EXT_CACHE`` pointed at a folder that does not exist yet (where default data would be made)."""
    cache = tmp_path / "monai_ext_cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    return cache


@pytest.fixture(scope="session")
def slices(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Generated 2D four-contrast brain slices (H x W x 4 NIfTI) with their whole-tumour masks, of sizes other than
    the network's (64^2): a 128^2 slice through a tumour and a 100 x 90 crop of another one with anisotropic,
    shifted pixels (1.2 x 1.6 mm), written with nibabel."""
    from monai_ext.data.brain import make_brains

    root = tmp_path_factory.mktemp("slices")
    make_brains(root / "brains", n=6, seed=1, mode="2d", slices_per_subject=1)
    records = json.loads((root / "brains" / "datalist.json").read_text())["training"]
    first, second = (tuple(root / "brains" / record[key] for key in ("image", "label")) for record in records[:2])
    found = {"slice128": first}
    affine = np.diag([1.2, 1.6, 1.0, 1.0])
    affine[:3, 3] = [-40.0, 12.5, 3.0]
    for source, name in zip(second, ("image", "label"), strict=True):
        stored = nib.Nifti1Image(np.asarray(nib.load(str(source)).dataobj), affine).slicer[14:114, 20:110]
        nib.save(stored, str(root / f"crop100x90_{name}.nii.gz"))
    found["crop100x90"] = (root / "crop100x90_image.nii.gz", root / "crop100x90_label.nii.gz")
    assert nib.load(str(found["crop100x90"][0])).shape == (100, 90, 4)
    assert all(np.asarray(nib.load(str(label)).dataobj).any() for _, label in found.values()), "a slice has no tumour"
    return found

"""Shared fixtures: tiny generated datasets, made once per test session."""

from __future__ import annotations

import pytest

from monai_ext.data.brain import make_brains
from monai_ext.data.phantoms import make_phantoms


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Default data that a test makes on first use go to a temporary cache, never to the user's home cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MONAI_EXT_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.fixture(scope="session")
def tiny_phantoms(tmp_path_factory: pytest.TempPathFactory):
    """Six regular 24^3 phantoms (4 / 1 / 1 split); returns the dataset folder."""
    folder = tmp_path_factory.mktemp("phantoms") / "regular"
    make_phantoms(str(folder), variant="regular", n=6, seed=0, size=24, workers=1)
    return folder


@pytest.fixture(scope="session")
def tiny_brains(tmp_path_factory: pytest.TempPathFactory):
    """Six 3D brain phantoms (96^3 at 2 mm, 4 / 1 / 1 split) with their per-contrast datalists; returns the folder."""
    folder = tmp_path_factory.mktemp("brains")
    make_brains(folder, n=6, seed=0)
    return folder


@pytest.fixture(scope="session")
def tiny_brain_slices(tmp_path_factory: pytest.TempPathFactory):
    """Three subjects' 32 x 32 four-contrast slices, one through the tumour and one without it each (2 / 2 / 2
    slices); returns the folder."""
    folder = tmp_path_factory.mktemp("slices")
    make_brains(folder, n=3, seed=0, mode="2d", slices_per_subject=1, empty_slices_per_subject=1, slice_size=32)
    return folder

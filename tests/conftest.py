"""Shared fixtures: tiny generated datasets, made once per test session."""

from __future__ import annotations

import pytest

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

"""Default datasets of the bundle configs: which folder each lives in, and when it is generated."""

from __future__ import annotations

from pathlib import Path

import pytest

from monai_ext.bundle import default_data as bundle


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Replace the generators of ``DEFAULT_DATA`` by ones that record (name, folder) and write a datalist."""
    calls: list[tuple[str, str]] = []

    def recorder(name: str):
        def make(folder: str) -> Path:
            calls.append((name, folder))
            Path(folder).mkdir(parents=True, exist_ok=True)
            (Path(folder) / "datalist.json").write_text("{}")
            return Path(folder) / "datalist.json"

        return make

    monkeypatch.setattr(bundle, "DEFAULT_DATA", {name: recorder(name) for name in bundle.DEFAULT_DATA})
    return calls


def test_each_default_dataset_has_its_own_cache_folder():
    folders = {name: Path(bundle.default_dataset_dir(name)) for name in ("phantoms_regular", "brains", "brain_slices")}
    assert len(set(folders.values())) == 3
    assert bundle.default_dataset_dir() == str(folders["phantoms_regular"])
    assert all(folder.parent == bundle.cache_dir("x").parent for folder in folders.values())


def test_an_unknown_default_dataset_names_the_choices():
    with pytest.raises(ValueError, match=r"'tumours'.*\['brain_slices', 'brains', 'cell_slices', 'phantoms_regular'\]"):
        bundle.default_dataset_dir("tumours")


def test_the_brain_folder_gets_brains_once_and_other_folders_nothing(recorded, tmp_path):
    brains = bundle.default_dataset_dir("brains")
    assert bundle.ensure_default_data(brains) == brains
    bundle.ensure_default_data(brains)  # its datalist exists now: not generated again
    bundle.ensure_default_data(str(tmp_path))  # a user's folder is never filled
    assert recorded == [("brains", brains)]


def test_a_missing_datalist_names_the_file_and_the_config_id(tmp_path):
    (tmp_path / "datalist.json").write_text("{}")
    assert bundle.datalist_path(str(tmp_path)) == str(tmp_path / "datalist.json")
    with pytest.raises(FileNotFoundError, match=r"no datalist_flair\.json \(config id datalist_name\)"):
        bundle.datalist_path(str(tmp_path), "datalist_flair.json")

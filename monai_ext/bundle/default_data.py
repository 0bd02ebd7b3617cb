"""The data a bundle runs on when no ``dataset_dir`` is given: generated on first use into a cache folder."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

from monai_ext.data.brain import make_brains
from monai_ext.data.datalist import inference_items
from monai_ext.data.output_folder import on_rank_zero
from monai_ext.data.phantoms import make_phantoms

CACHE_ENV = "MONAI_EXT_CACHE"
DEFAULT_PHANTOMS = "phantoms_regular"
DEFAULT_DATA: dict[str, Callable[[str], Path]] = {  # cache folder name -> generator of its dataset
    DEFAULT_PHANTOMS: partial(make_phantoms, variant="regular", n=120, seed=0, size=50),
    "brains": partial(make_brains, n=60, seed=0, mode="3d", resolution=2),
    "cell_slices": partial(make_phantoms, variant="regular", n=120, seed=0, size=64, mode="2d"),
    "brain_slices": partial(
        make_brains, n=60, seed=0, mode="2d", resolution=2, slices_per_subject=4, empty_slices_per_subject=1
    ),
}


def cache_dir(name: str) -> Path:
    """A folder for generated default data: ``$MONAI_EXT_CACHE/<name>``, else ``~/.cache/monai_ext/<name>``."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "monai_ext")
    return root / name


def default_dataset_dir(name: str = DEFAULT_PHANTOMS) -> str:
    """A bundle's default ``dataset_dir``: the cache folder where default dataset ``name`` is generated on first use.

    Args:
        name: one of ``DEFAULT_DATA``: ``"phantoms_regular"`` (the 120 regular cell phantoms, the bundles' default),
            ``"brains"`` (60 BraTS-like brain phantoms, the brain configs' default) or ``"brain_slices"`` (their 2D
            axial slices, 128 x 128 x 4 contrasts: 4 through the tumour and 1 without it per subject; the
            diffusion_segmentation and cuts bundles' default) or ``"cell_slices"`` (the central 64 x 64 axial slice
            of 120 regular cell phantoms, for cuts' ``configs/cell_slices.json``).

    Raises:
        ValueError: ``name`` is not a default dataset.
    """
    if name not in DEFAULT_DATA:
        raise ValueError(f"default dataset '{name}' does not exist; choose one of {sorted(DEFAULT_DATA)}.")
    return str(cache_dir(name))


def ensure_default_data(dataset_dir: str) -> str:
    """Return ``dataset_dir``; when it is a default folder (:func:`default_dataset_dir`) and holds no
    ``datalist.json`` yet, generate its dataset there first (``DEFAULT_DATA``).

    Bundle configs call this only where the dataset is built for a run, never in what MONAI Label builds
    (transforms, network, inferer), so loading a bundle reads and writes no data. Any other folder is returned
    as it is: a user's folder is never filled with phantoms. Under ``torch.distributed`` rank 0 generates while
    the other ranks wait.
    """
    folder = Path(dataset_dir)
    for name, make in DEFAULT_DATA.items():
        if folder.resolve() == Path(default_dataset_dir(name)).resolve() and not (folder / "datalist.json").is_file():
            on_rank_zero(partial(make, str(folder)))
    return str(dataset_dir)


def datalist_path(dataset_dir: str, datalist_name: str = "datalist.json") -> str:
    """``dataset_dir/datalist_name`` (default data generated first, see :func:`ensure_default_data`).

    Raises:
        FileNotFoundError: the folder has no ``datalist_name``; the message says what the file must hold.
    """
    datalist = Path(ensure_default_data(dataset_dir)) / datalist_name
    if not datalist.is_file():
        raise FileNotFoundError(
            f"dataset_dir '{dataset_dir}' has no {datalist_name} (config id datalist_name): it must list "
            f"'training', 'validation' and 'test' volumes as MONAI datalists do "
            f'({{"training": [{{"image": "a.nii.gz"}}, ...], ...}}).'
        )
    return str(datalist)


def dataset_items(
    dataset_dir: str, split: str = "test", datalist_name: str = "datalist.json", optional_keys: Sequence[str] = ()
) -> list[dict]:
    """The records a bundle's inference or evaluation reads (:func:`monai_ext.data.datalist.inference_items`), once
    the default data of a default ``dataset_dir`` are generated (:func:`ensure_default_data`)."""
    return inference_items(ensure_default_data(dataset_dir), split, datalist_name, optional_keys)

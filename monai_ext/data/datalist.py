"""NIfTI writing and MONAI datalists."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import nibabel as nib
import numpy as np

SPLITS = ("training", "validation", "test")
SPLIT_USES = {
    "training": "training learns from the training volumes",
    "validation": "training selects its model on the validation volumes",
    "test": "evaluation and inference run on the test volumes",
}
IMAGE_SUFFIXES = (".nii", ".nii.gz", ".mha", ".mhd", ".nrrd", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".dcm")


def split_counts(n: int, fractions: Sequence[float] = (4, 1, 1)) -> tuple[int, int, int]:
    """Split ``n`` items into training / validation / test counts in the given proportions.

    The default 4:1:1 gives 80 / 20 / 20 for 120 volumes. Validation and test each get at least one item
    as soon as ``n >= 3``; training keeps the remainder.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}.")
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(f"fractions must be three non-negative numbers with a positive sum, got {fractions}.")
    total = float(sum(fractions))
    n_val = round(n * fractions[1] / total)
    n_test = round(n * fractions[2] / total)
    if n >= 3:
        n_val, n_test = max(n_val, int(fractions[1] > 0)), max(n_test, int(fractions[2] > 0))
    n_val, n_test = min(n_val, n - 1), min(n_test, max(n - 1 - n_val, 0))
    return n - n_val - n_test, n_val, n_test


def save_nifti(array: np.ndarray, path: Path, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> None:
    """Write ``array`` (spatial axes first, optional channel axis last) as NIfTI with a diagonal affine.

    ``.nii.gz`` files are written with a fixed gzip timestamp, so the same array gives the same bytes.
    """
    affine = np.diag([*[float(s) for s in spacing], 1.0])
    image = nib.Nifti1Image(np.asarray(array), affine)
    image.header.set_xyzt_units("mm")
    nib.save(image, str(path))


def write_datalist(
    out: Path, records: Sequence[Mapping[str, object]], counts: Sequence[int], meta: Mapping[str, object]
) -> Path:
    """Write ``datalist.json`` (readable by ``monai.data.load_decathlon_datalist``) and ``dataset.json``.

    Args:
        out: dataset folder; record paths are stored relative to it.
        records: one mapping per volume, in split order (training first, then validation, then test).
        counts: number of records in each of ``SPLITS``.
        meta: generator name, version, options and seed, stored in ``dataset.json``.
    """
    if sum(counts) != len(records):
        raise ValueError(f"split counts {tuple(counts)} do not add up to {len(records)} records.")
    datalist: dict[str, list[Mapping[str, object]]] = {}
    start = 0
    for split, count in zip(SPLITS, counts, strict=True):
        datalist[split] = list(records[start : start + count])
        start += count
    path = out / "datalist.json"
    path.write_text(json.dumps(datalist, indent=2) + "\n")
    summary = {**meta, "splits": {s: len(v) for s, v in datalist.items()}}
    (out / "dataset.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return path


def _resolve(value: object, base: Path) -> object:
    if isinstance(value, str) and value.lower().endswith(IMAGE_SUFFIXES):
        return str(base / value) if not Path(value).is_absolute() else value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return [_resolve(v, base) for v in value]
    return value


def load_datalist(datalist: str | Path, split: str = "training") -> list[dict]:
    """Read one split of a ``datalist.json`` and resolve every relative image path against the file's folder.

    ``monai.data.load_decathlon_datalist`` resolves only the ``image`` and ``label`` keys; this also resolves
    ``label_l1``, ``flair``, ``tissue`` and any other value (or list of values) that names an image file.

    Raises:
        FileNotFoundError: the datalist file does not exist.
        ValueError: the file is not valid JSON, or ``split`` is missing, empty, not a list of mappings, or holds a
            record without ``image``.
    """
    path = Path(datalist)
    if not path.is_file():
        raise FileNotFoundError(f"datalist '{path}' does not exist.")
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"datalist '{path}' is not valid JSON: {error}.") from error
    if not isinstance(content, dict) or split not in content:
        available = sorted(content) if isinstance(content, dict) else []
        raise ValueError(f"datalist '{path}' has no split '{split}'; it has {available}.")
    items = content[split]
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise ValueError(f"split '{split}' of datalist '{path}' must be a list of mappings.")
    if not items:
        use = SPLIT_USES.get(split, f"the run reads the '{split}' volumes")
        raise ValueError(f"split '{split}' of datalist '{path}' is empty: {use}; add at least one.")
    for index, item in enumerate(items):
        if "image" not in item:
            raise ValueError(
                f"record {index} of split '{split}' of datalist '{path}' has no 'image' (its keys: {sorted(item)}); "
                'every record needs one, e.g. {"image": "case_001.nii.gz"}.'
            )
    return [{key: _resolve(value, path.parent) for key, value in item.items()} for item in items]


def read_volume(path: str | Path, key: str = "image") -> np.ndarray:
    """Load one image file as a float32 array (NIfTI through nibabel) with errors that name the file and key.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file cannot be read as an image, or holds NaN / infinite values.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"'{key}' file '{path}' does not exist.")
    try:
        array = np.asarray(nib.load(str(path)).dataobj, dtype=np.float32)
    except Exception as error:  # nibabel raises several types for unreadable files
        raise ValueError(f"'{key}' file '{path}' could not be read as an image: {error}") from error
    if not np.isfinite(array).all():
        raise ValueError(f"'{key}' file '{path}' contains NaN or infinite values.")
    return array


def inference_items(
    dataset_dir: str | Path,
    split: str = "test",
    datalist_name: str = "datalist.json",
    optional_keys: Sequence[str] = (),
) -> list[dict]:
    """Images to run a bundle on: the ``split`` of ``dataset_dir/datalist_name`` when the folder has one,
    else every NIfTI or PNG file (``*.nii``, ``*.nii.gz``, ``*.png``) in it, sorted by name.

    Records keep ``image`` and, where the datalist has them, the ``optional_keys`` (e.g. ``["label"]`` for a
    figure that shows the ground truth); every other key is dropped.

    Raises:
        FileNotFoundError: the folder does not exist or holds neither a datalist nor NIfTI files.
        ValueError: the datalist's ``split`` is missing or empty (see ``load_datalist``).
    """
    folder = Path(dataset_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset_dir '{folder}' is not a folder.")
    if (folder / datalist_name).is_file():
        keep = ("image", *optional_keys)
        return [{k: item[k] for k in keep if k in item} for item in load_datalist(folder / datalist_name, split)]
    files = sorted(p for p in folder.iterdir() if p.name.endswith((".nii", ".nii.gz", ".png")))
    if not files:
        raise FileNotFoundError(f"dataset_dir '{folder}' has no {datalist_name} and no .nii / .nii.gz / .png files.")
    return [{"image": str(p)} for p in files]


def check_targets(
    records: Sequence[Mapping[str, object]], targets: Mapping[str, str], dataset_dir: str, split: str
) -> None:
    """Refuse, before an evaluation runs, a target whose ground-truth key no record has (nothing could be scored).

    Args:
        records: the records the evaluation reads.
        targets: target name -> record key of its ground truth (config id ``targets``).
        dataset_dir: the dataset folder, named in the error.
        split: the datalist split, named in the error.

    Raises:
        ValueError: a target's key is in no record; the message names the target and the key.
    """
    missing = [f"'{name}' (key '{key}')" for name, key in targets.items() if not any(key in r for r in records)]
    if missing:
        raise ValueError(
            f"no record of split '{split}' of '{dataset_dir}' has the ground truth of target {', '.join(missing)}; "
            "evaluation needs labels: a datalist whose records name a binary mask under each target's key "
            "(config id targets: target name -> datalist key)."
        )

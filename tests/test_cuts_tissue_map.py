"""``tissue_map``: the brain phantoms' true tissue partition (the CUTS benchmarks' row ``tissue map (oracle)``)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from monai_ext.data.brain import BRATS_LABELS, LABEL_KEYS, TISSUE_LABELS, TISSUE_MAP_KEYS, tissue_map
from monai_ext.metrics.hint import hint_dice


def _slice(tmp_path: Path, tissue: np.ndarray, brats: np.ndarray) -> dict:
    """A datalist item whose tissue and BraTS maps are NIfTI files under ``tmp_path``."""
    item = {}
    for key, array in (("tissue", tissue), ("brats", brats)):
        item[key] = str(tmp_path / f"{key}.nii.gz")
        nib.save(nib.Nifti1Image(array.astype(np.uint8), np.eye(4)), item[key])
    return item


def _phantom() -> tuple[np.ndarray, np.ndarray]:
    """A 12 x 12 slice: CSF, grey and white matter bands and a tumour of 9 edema, 4 enhancing and 2 necrosis pixels."""
    tissue = np.full((12, 12), TISSUE_LABELS["wm"])
    tissue[:, :2] = TISSUE_LABELS["background"]
    tissue[:, 2:4] = TISSUE_LABELS["csf"]
    tissue[:, 4:6] = TISSUE_LABELS["gm"]
    brats = np.zeros((12, 12), dtype=int)
    brats[6:9, 6:9] = BRATS_LABELS["edema"]
    brats[9, 6:10] = BRATS_LABELS["enhancing"]
    brats[6:8, 9] = BRATS_LABELS["necrosis"]
    tissue[brats > 0] = TISSUE_LABELS["tumour"]
    return tissue, brats


def test_each_tumour_tissue_is_a_part_and_the_healthy_tissues_are_kept(tmp_path: Path) -> None:
    tissue, brats = _phantom()
    parts = tissue_map(_slice(tmp_path, tissue, brats))
    np.testing.assert_array_equal(parts[brats == 0], tissue[brats == 0])
    tumour_parts = {name: np.unique(parts[brats == value]) for name, value in BRATS_LABELS.items()}
    assert all(len(values) == 1 for values in tumour_parts.values())
    values = [int(v[0]) for v in tumour_parts.values()]
    assert len(set(values)) == 3 and not set(values) & set(np.unique(tissue[brats == 0]).tolist())


def test_the_hint_rule_takes_the_largest_tumour_tissue(tmp_path: Path) -> None:
    tissue, brats = _phantom()
    parts = tissue_map(_slice(tmp_path, tissue, brats))
    edema, whole = 9, 15  # the largest tissue of the tumour, and the tumour
    assert hint_dice(parts, brats > 0) == pytest.approx(2 * edema / (edema + whole))


def test_maps_on_different_grids_are_refused_naming_both_files(tmp_path: Path) -> None:
    tissue, brats = _phantom()
    item = _slice(tmp_path, tissue, brats[:10])
    with pytest.raises(ValueError, match=r"'tissue' file .*tissue\.nii\.gz.*'brats' file .*brats\.nii\.gz.*one grid"):
        tissue_map(item)


def test_maps_that_place_the_tumour_differently_are_refused(tmp_path: Path) -> None:
    tissue, brats = _phantom()
    tissue[9, 6] = TISSUE_LABELS["wm"]  # an enhancing pixel that the tissue map calls white matter
    with pytest.raises(ValueError, match=r"'tissue' file .*'brats' file .*disagree"):
        tissue_map(_slice(tmp_path, tissue, brats))


def test_it_reads_maps_the_generator_writes() -> None:
    assert set(TISSUE_MAP_KEYS) <= set(LABEL_KEYS)

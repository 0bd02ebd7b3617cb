"""Tests of the BraTS-like brain tumour phantoms (monai_ext.data.brain)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged
from scipy import ndimage

import monai_ext
from monai_ext.data.brain import (
    BRATS_LABELS,
    CONTRASTS,
    GRIDS,
    LABEL_KEYS,
    REGIONS,
    TISSUE_LABELS,
    make_brains,
    synthesize_brain,
)
from monai_ext.data.tumour import TumourPlacementError, grow_tumour, mass_effect_coordinates, warp

T1, T1CE, T2, FLAIR = (CONTRASTS.index(c) for c in ("t1", "t1ce", "t2", "flair"))
CSF, GM, WM, TUMOUR = (TISSUE_LABELS[t] for t in ("csf", "gm", "wm", "tumour"))


@pytest.fixture(scope="module")
def dataset_3d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_brains(tmp_path_factory.mktemp("brains_3d"), n=3, seed=0)


@pytest.fixture(scope="module")
def dataset_2d(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_brains(tmp_path_factory.mktemp("brains_2d"), n=3, seed=0, mode="2d", slices_per_subject=3)


@pytest.fixture(scope="module")
def phantoms() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    return [synthesize_brain(rng)]


def _records(datalist: Path) -> list[dict]:
    return [r for split in ("training", "validation", "test") for r in load_decathlon_datalist(datalist, True, split)]


def _load(path: str) -> np.ndarray:
    return np.asanyarray(nib.load(path).dataobj)


def _region_means(image: np.ndarray, regions: np.ndarray, values: tuple[int, ...]) -> list[float]:
    return [float(image[regions == v].mean()) for v in values]


def test_3d_files_shapes_and_labels(dataset_3d: Path) -> None:
    splits = json.loads((dataset_3d.parent / "dataset.json").read_text())["splits"]
    assert splits == {"training": 1, "validation": 1, "test": 1}
    for record in _records(dataset_3d):
        assert [Path(p).name for p in record["image"]] == [f"{c}.nii.gz" for c in CONTRASTS]
        assert record["flair"] == record["image"][FLAIR]
        images = np.stack([_load(p) for p in record["image"]])
        label, tissue, brats = _load(record["label"]), _load(record["tissue"]), _load(record["brats"])
        assert {Path(record[k]).name for k in LABEL_KEYS} == {f"{k}.nii.gz" for k in LABEL_KEYS}
        assert images.shape == (4, *GRIDS[2]) and images.dtype == np.float32
        assert np.allclose(images.min(axis=(1, 2, 3)), 0) and np.allclose(images.max(axis=(1, 2, 3)), 1)
        assert label.dtype == np.uint8 and tissue.dtype == np.uint8 and label.shape == tissue.shape == GRIDS[2]
        assert set(np.unique(label)) == {0, 1}
        assert set(np.unique(tissue)) == set(TISSUE_LABELS.values())
        assert np.array_equal(tissue == TUMOUR, label == 1)
        assert set(np.unique(brats)) == {0, *BRATS_LABELS.values()} and np.array_equal(brats > 0, label == 1)
        assert np.all(images[:, tissue == 0] == 0), "background must be 0 (skull-stripped)"
        assert nib.load(record["label"]).header.get_zooms() == (2.0, 2.0, 2.0)


def test_tumour_inside_brain_and_sized(dataset_3d: Path) -> None:
    volumes = json.loads((dataset_3d.parent / "dataset.json").read_text())["whole_tumour_cm3"]
    for record, volume in zip(_records(dataset_3d), volumes, strict=True):
        label, tissue = _load(record["label"]).astype(bool), _load(record["tissue"])
        assert np.all(tissue[ndimage.binary_dilation(label, iterations=2)] > 0), "tumour touches the background"
        assert ndimage.label(label)[1] == 1, "one connected tumour"
        assert label.sum() * 8 / 1000 == pytest.approx(volume, abs=1e-3)
        assert 15 <= volume <= 250


def test_tumour_volume_within_requested_bounds() -> None:
    rng = np.random.default_rng(1)
    for bounds in ((20.0, 30.0), (180.0, 200.0)):
        volume = synthesize_brain(rng, volume_cm3=bounds)["label"].sum() * 8 / 1000
        assert bounds[0] - 0.008 <= volume <= bounds[1] + 0.008


def test_brats_labels_core_and_edema(phantoms: list[dict[str, np.ndarray]]) -> None:
    for phantom in phantoms:
        brats, label = phantom["brats"], phantom["label"]
        assert set(np.unique(brats)) == {0, 1, 2, 4}
        core = np.isin(brats, (BRATS_LABELS["necrosis"], BRATS_LABELS["enhancing"]))
        edema = brats == BRATS_LABELS["edema"]
        assert np.array_equal(core | edema, label == 1) and not (core & edema).any()
        assert 0.2 - 1e-3 <= core.sum() / label.sum() <= 0.5 + 1e-3, "core is 20-50 % of the whole tumour"
        necrosis = brats == BRATS_LABELS["necrosis"]
        assert (ndimage.binary_dilation(necrosis) & edema).sum() < 0.05 * necrosis.sum(), "rim surrounds necrosis"
        outer = edema & ~ndimage.binary_dilation(core, iterations=2)
        assert outer.sum() > 0.2 * edema.sum(), "edema reaches beyond the core, not a thin shell"


def test_edema_prefers_white_matter() -> None:
    brain = np.zeros((40, 40, 40), bool)
    brain[2:-2, 2:-2, 2:-2] = True
    wm = np.zeros(brain.shape, np.float32)
    wm[:, :20] = 1.0  # white matter on one side, grey matter on the other
    masks = grow_tumour(brain, wm, np.zeros_like(brain), 2.0, 60.0, np.random.default_rng(0), "toy")
    edema = masks.whole & ~masks.core
    assert edema[:, :20].sum() > 3 * edema[:, 20:].sum()


def test_ventricles_are_csf_near_the_midline(phantoms: list[dict[str, np.ndarray]]) -> None:
    for phantom in phantoms:
        ventricles, tissue = phantom["ventricles"].astype(bool), phantom["tissue"]
        assert np.all(tissue[ventricles] == CSF)
        assert 5 <= ventricles.sum() * 8 / 1000 <= 60, "lateral ventricles hold 5-60 cm^3"
        midline = np.argwhere(tissue > 0)[:, 0].mean()
        offsets = np.abs(np.argwhere(ventricles)[:, 0] - midline) * 2.0
        assert offsets.min() <= 10, "the ventricles touch the midline region"
        assert offsets.max() <= 40, "no sulcal CSF far out in the hemispheres"


def test_impossible_tumour_names_subject_and_seed() -> None:
    brain = np.zeros((12, 12, 12), bool)
    brain[2:10, 2:10, 2:10] = True
    wm = brain.astype(np.float32)
    with pytest.raises(TumourPlacementError, match=r"brain_007 \(seed 3\)"):
        grow_tumour(brain, wm, np.zeros_like(brain), 2.0, 100.0, np.random.default_rng(0), "brain_007 (seed 3)")


def test_tumour_parts_nested_inside_brain(phantoms: list[dict[str, np.ndarray]]) -> None:
    for phantom in phantoms:
        fractions = phantom["fractions"]
        assert fractions.shape == (len(REGIONS), *GRIDS[2])
        assert np.allclose(fractions.sum(0), 1, atol=1e-4)
        tumour = phantom["label"] == 1
        assert fractions[REGIONS.index("background")][tumour].max() < 0.5
        for part in ("edema", "enhancing", "necrosis"):
            assert (fractions[REGIONS.index(part)] >= 0.5).sum() > 0, part


def test_contrast_ordering_per_tissue(dataset_3d: Path) -> None:
    for record in _records(dataset_3d):
        images = np.stack([_load(p) for p in record["image"]])
        tissue = _load(record["tissue"])
        t1_csf, t1_gm, t1_wm = _region_means(images[T1], tissue, (CSF, GM, WM))
        assert t1_wm > t1_gm > t1_csf
        t2_csf, t2_gm, t2_wm = _region_means(images[T2], tissue, (CSF, GM, WM))
        assert t2_csf > t2_gm > t2_wm
        flair_csf, flair_gm, flair_wm, flair_tumour = _region_means(images[FLAIR], tissue, (CSF, GM, WM, TUMOUR))
        assert flair_tumour > flair_gm > flair_wm > flair_csf


def test_contrast_ordering_per_tumour_part(phantoms: list[dict[str, np.ndarray]]) -> None:
    for phantom in phantoms:
        image, fractions = phantom["image"], phantom["fractions"]
        regions = np.where(fractions.max(0) >= 0.5, fractions.argmax(0), -1)
        csf, gm, wm, edema, rim, necrosis = (REGIONS.index(r) for r in REGIONS[1:])
        t1_gm, t1_wm, t1_rim, t1_necrosis = _region_means(image[T1], regions, (gm, wm, rim, necrosis))
        assert t1_rim < t1_gm and t1_necrosis < t1_gm, "T1 core is dark"
        t1ce_wm, t1ce_rim = _region_means(image[T1CE], regions, (wm, rim))
        assert t1ce_rim > t1ce_wm, "T1ce enhancing rim is the brightest"
        assert t1ce_rim / t1ce_wm > 1.5 * t1_rim / t1_wm, "the rim enhances from T1 to T1ce"
        t2_gm, t2_edema = _region_means(image[T2], regions, (gm, edema))
        assert t2_edema > t2_gm
        flair = _region_means(image[FLAIR], regions, (csf, gm, wm, edema, rim, necrosis))
        assert min(flair[3:]) > flair[1] > flair[2] > flair[0], "FLAIR: tumour > GM > WM > CSF"
        assert flair[3] == max(flair), "FLAIR: edema brightest"


def test_3d_loads_as_four_channels_with_monai(dataset_3d: Path) -> None:
    record = load_decathlon_datalist(dataset_3d, True, "training")[0]
    assert Path(record["tissue"]).is_absolute() and Path(record["flair"]).is_file()
    keys = ["image", "label", "tissue"]
    loaded = Compose([LoadImaged(keys=keys, image_only=True), EnsureChannelFirstd(keys=keys)])(record)
    assert loaded["image"].shape == (4, *GRIDS[2])
    assert loaded["label"].shape == loaded["tissue"].shape == (1, *GRIDS[2])
    assert np.allclose(loaded["image"][FLAIR].numpy(), _load(record["flair"]))


def test_one_datalist_per_contrast_beside_the_3d_datalist(dataset_3d: Path) -> None:
    """``datalist_<contrast>.json`` lists the same subjects in the same splits, ``image`` one contrast file."""
    full = json.loads(dataset_3d.read_text())
    for index, contrast in enumerate(CONTRASTS):
        single = json.loads(dataset_3d.with_name(f"datalist_{contrast}.json").read_text())
        assert list(single) == list(full)
        for split, items in full.items():
            assert [s["image"] for s in single[split]] == [item["image"][index] for item in items]
            assert [{**s, "image": None} for s in single[split]] == [{**i, "image": None} for i in items]
            assert all(s["image"].endswith(f"{contrast}.nii.gz") for s in single[split])


def test_2d_mode_writes_no_contrast_datalists(dataset_2d: Path) -> None:
    assert not list(dataset_2d.parent.glob("datalist_*.json"))


def test_mass_effect_pushes_away_from_the_core_and_never_moves_the_brain_surface() -> None:
    """A blob of tissue beside a core moves outward by less than the shift; voxels on the brain's surface keep
    their values; every displacement is at most the shift (checked on a synthetic 40^3 brain)."""
    grid = np.indices((40, 40, 40))
    brain = np.zeros((40, 40, 40), bool)
    brain[4:36, 4:36, 4:36] = True
    core = ((grid - 20) ** 2).sum(0) <= 4**2
    blob = (((grid - np.array([27, 20, 20]).reshape(3, 1, 1, 1)) ** 2).sum(0) <= 2**2).astype(np.float32)
    shift_mm, spacing = 6.0, 2.0
    coordinates = mass_effect_coordinates(core, brain, spacing, shift_mm)
    displacement = np.sqrt(((grid - coordinates) ** 2).sum(0)) * spacing
    assert displacement.max() <= shift_mm + 1e-4 and displacement[core].max() > 0.5 * shift_mm
    surface = brain & ~ndimage.binary_erosion(brain)
    assert np.allclose(displacement[surface], 0)
    moved = ndimage.center_of_mass(warp(blob, coordinates))
    assert 0.5 < moved[0] - 27 < shift_mm / spacing and abs(moved[1] - 20) < 0.1 and abs(moved[2] - 20) < 0.1
    assert set(np.unique(warp(blob > 0, coordinates, order=0))) <= {False, True}


def test_mass_effect_moves_the_anatomy_around_the_same_tumour() -> None:
    """The same seed with and without mass effect: the same tumour and BraTS labels (the push draws nothing at
    random), the same brain outline, tissue moved next to the tumour; the tumour stays inside the brain."""
    still, pushed = (synthesize_brain(np.random.default_rng(7), mass_effect_mm=mm) for mm in (0.0, 8.0))
    assert np.array_equal(still["brats"], pushed["brats"])
    brain_still, brain_pushed = still["tissue"] > 0, pushed["tissue"] > 0
    assert (brain_still != brain_pushed).mean() < 0.002
    assert np.all(brain_pushed[pushed["label"] > 0])
    near = ndimage.binary_dilation(pushed["label"] > 0, iterations=5) & (pushed["label"] == 0)
    assert (still["tissue"][near] != pushed["tissue"][near]).mean() > 0.05


def test_2d_slices(dataset_2d: Path) -> None:
    meta = json.loads((dataset_2d.parent / "dataset.json").read_text())
    assert meta["splits"] == {"training": 3, "validation": 3, "test": 3}
    subjects_per_split = []
    for split in ("training", "validation", "test"):
        records = load_decathlon_datalist(dataset_2d, True, split)
        subjects_per_split.append({Path(r["image"]).parent.name for r in records})
        assert len({r["image"] for r in records}) == 3, "distinct slices"
        for record in records:
            image, label, tissue = _load(record["image"]), _load(record["label"]), _load(record["tissue"])
            assert image.shape == (128, 128, 4) and image.dtype == np.float32
            assert np.allclose(image.min(axis=(0, 1)), 0) and np.allclose(image.max(axis=(0, 1)), 1)
            assert label.shape == tissue.shape == (128, 128) and label.dtype == tissue.dtype == np.uint8
            assert label.sum() > 0, "every slice cuts the tumour"
            assert set(np.unique(tissue)) <= set(TISSUE_LABELS.values())
            assert np.array_equal(tissue == TUMOUR, label == 1)
            brats, ventricles = _load(record["brats"]), _load(record["ventricles"])
            assert set(np.unique(brats)) <= {0, *BRATS_LABELS.values()} and np.array_equal(brats > 0, label == 1)
            assert set(np.unique(ventricles)) <= {0, 1} and np.all(tissue[ventricles == 1] == CSF)
    assert all(len(s) == 1 for s in subjects_per_split) and len(set.union(*subjects_per_split)) == 3


def test_2d_tumour_free_slices_follow_the_tumour_slices(tmp_path: Path) -> None:
    datalist = make_brains(
        tmp_path / "b", n=1, seed=5, mode="2d", slices_per_subject=2, empty_slices_per_subject=3, slice_size=32
    )
    records = [
        {k: str(datalist.parent / v) for k, v in r.items()} for r in json.loads(datalist.read_text())["training"]
    ]
    assert len(records) == 5
    tumour = [int(_load(r["label"]).sum()) for r in records]
    assert all(t > 0 for t in tumour[:2]) and tumour[2:] == [0, 0, 0]
    brain = [(_load(r["tissue"]) > 0).mean() for r in records[2:]]
    assert min(brain) > 0.1  # each shows a good part of the brain
    assert len({r["image"] for r in records}) == 5
    meta = json.loads((datalist.parent / "dataset.json").read_text())
    assert meta["options"]["empty_slices_per_subject"] == 3


def test_too_many_tumour_free_slices_is_an_error() -> None:
    from monai_ext.data.brain import _tumour_free_slices

    tissue, label = np.ones((4, 4, 6)), np.zeros((4, 4, 6))
    label[..., 1:5] = 1
    assert _tumour_free_slices(tissue, label, 2) == [0, 5]
    with pytest.raises(ValueError, match="empty_slices_per_subject=3 exceeds the 2 tumour-free slices"):
        _tumour_free_slices(tissue, label, 3)


def test_2d_loads_channel_first_with_monai(dataset_2d: Path) -> None:
    record = load_decathlon_datalist(dataset_2d, True, "test")[0]
    transform = Compose(
        [
            LoadImaged(keys=["image", "label"], image_only=True),
            EnsureChannelFirstd(keys="image", channel_dim=-1),
            EnsureChannelFirstd(keys="label"),
        ]
    )
    loaded = transform(record)
    assert loaded["image"].shape == (4, 128, 128)
    assert loaded["label"].shape == (1, 128, 128)
    assert np.allclose(loaded["image"][T2].numpy(), _load(record["image"])[..., T2])


def test_same_seed_same_bytes_and_overwrite(tmp_path: Path) -> None:
    def files(folder: Path) -> dict[str, bytes]:
        return {  # the generated files; the manifest of the run that wrote them differs by run
            str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.startswith(".")
        }

    make_brains(tmp_path / "a", n=1, seed=5, mode="2d", slices_per_subject=1, slice_size=32)
    first = files(tmp_path / "a")
    make_brains(tmp_path / "a", n=1, seed=5, mode="2d", slices_per_subject=1, slice_size=32, overwrite=True)
    assert files(tmp_path / "a") == first
    make_brains(tmp_path / "b", n=1, seed=6, mode="2d", slices_per_subject=1, slice_size=32)
    other = files(tmp_path / "b")
    assert other.keys() != first.keys() or other != first
    meta = json.loads(first["dataset.json"])
    assert meta["version"] == monai_ext.__version__ and meta["seed"] == 5
    assert meta["options"]["mode"] == "2d" and meta["generator"] == "monai_ext.data.brain.make_brains"


def test_refuses_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError):
        make_brains(tmp_path, n=1)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


@pytest.mark.parametrize(
    "option, value",
    [
        ("n", 0),
        ("seed", -1),
        ("mode", "4d"),
        ("resolution", 3),
        ("slices_per_subject", 0),
        ("slices_per_subject", 13),
        ("empty_slices_per_subject", -1),
        ("empty_slices_per_subject", 13),
        ("slice_size", 8),
        ("min_volume_cm3", 0.0),
        ("max_volume_cm3", 10.0),  # below the default min_volume_cm3: reversed bounds
        ("max_volume_cm3", 1000.0),  # beyond the brain's capacity
        ("mass_effect_mm", -1.0),
        ("mass_effect_mm", 25.0),  # beyond a mild push
    ],
)
def test_bad_options_raise(tmp_path: Path, option: str, value: object) -> None:
    with pytest.raises(ValueError, match=option):
        make_brains(tmp_path / "out", **{option: value})
    assert not (tmp_path / "out").exists()

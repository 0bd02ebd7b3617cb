from __future__ import annotations

import itertools
import json

import nibabel as nib
import numpy as np
import pytest
from monai.data import load_decathlon_datalist
from scipy import ndimage

from monai_ext.data.datalist import load_datalist, split_counts
from monai_ext.data.noise import power_law_noise
from monai_ext.data.phantoms import LEVEL_CLASSES, PhantomOptions, make_phantom, make_phantoms


@pytest.fixture(scope="module", params=["regular", "irregular"])
def phantoms(request):
    return [make_phantom(PhantomOptions(variant=request.param), np.random.default_rng(seed)) for seed in range(4)]


def test_every_class_present_at_every_level(phantoms):
    for phantom in phantoms:
        for level, names in LEVEL_CLASSES.items():
            assert np.array_equal(np.unique(phantom.labels[level]), np.arange(len(names)))
            assert phantom.labels[level].dtype == np.uint8


def test_levels_are_nested(phantoms):
    for phantom in phantoms:
        l1, l2, l3 = (phantom.labels[level] for level in (1, 2, 3))
        assert np.array_equal(l1, (l2 > 0).astype(np.uint8))
        assert np.array_equal(l3[l3 < 4], l2[l3 < 4])
        for kind in range(4, 8):
            components, count = ndimage.label(l3 == kind)
            for index in range(1, count + 1):
                parents = np.unique(l2[components == index])
                assert len(parents) == 1 and parents[0] > 0, "an aggregate must lie in one region inside the cell"


def test_image_is_normalised_float(phantoms):
    for phantom in phantoms:
        assert phantom.image.dtype == np.float32 and phantom.image.shape == (50, 50, 50)
        assert phantom.image.min() == 0.0 and phantom.image.max() == 1.0


def test_noise_free_image_is_piecewise_constant():
    phantom = make_phantom(PhantomOptions(noise=0.0), np.random.default_rng(1))
    for label in range(8):
        assert np.ptp(phantom.image[phantom.labels[3] == label]) < 1e-6


def test_recorded_noise_std_matches_the_residual():
    phantom = make_phantom(PhantomOptions(), np.random.default_rng(2))
    labels = phantom.labels[3]
    means = np.array([phantom.image[labels == k].mean() for k in range(8)])
    residual = phantom.image - means[labels]
    assert residual.std() == pytest.approx(phantom.noise_std, rel=0.05)


def test_pink_noise_spectrum_falls_as_one_over_f():
    field = power_law_noise((64, 64, 64), np.random.default_rng(0), exponent=1.0, dtype=np.float64)
    assert field.mean() == pytest.approx(0.0, abs=1e-6) and field.std() == pytest.approx(1.0)
    power = np.abs(np.fft.fftn(field)) ** 2
    freqs = np.sqrt(sum(f**2 for f in np.meshgrid(*[np.fft.fftfreq(64)] * 3, indexing="ij")))
    bins = np.logspace(np.log10(2 / 64), np.log10(0.45), 12)
    centres, powers = [], []
    for low, high in itertools.pairwise(bins):
        shell = (freqs >= low) & (freqs < high)
        centres.append(np.sqrt(low * high))
        powers.append(power[shell].mean())
    slope = np.polyfit(np.log(centres), np.log(powers), 1)[0]
    assert slope == pytest.approx(-1.0, abs=0.1)


def test_same_seed_same_bytes_and_other_seed_differs(tmp_path):
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        make_phantoms(str(tmp_path / name), n=2, seed=seed, size=24, workers=1)
    first = (tmp_path / "a" / "phantom_001_image.nii.gz").read_bytes()
    assert first == (tmp_path / "b" / "phantom_001_image.nii.gz").read_bytes()
    assert first != (tmp_path / "c" / "phantom_001_image.nii.gz").read_bytes()
    assert (tmp_path / "a" / "datalist.json").read_text() == (tmp_path / "b" / "datalist.json").read_text()


def test_parallel_generation_gives_the_same_bytes(tmp_path):
    make_phantoms(str(tmp_path / "one"), n=3, seed=1, size=24, workers=1)
    make_phantoms(str(tmp_path / "two"), n=3, seed=1, size=24, workers=2)
    for index in range(3):
        name = f"phantom_{index:03d}_label_l3.nii.gz"
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


def test_datalist_loads_with_monai(tiny_phantoms):
    datalist = tiny_phantoms / "datalist.json"
    items = load_decathlon_datalist(str(datalist), is_segmentation=True, data_list_key="training")
    assert len(items) == 4 and (tiny_phantoms / items[0]["image"]).is_file()
    for split, count in (("training", 4), ("validation", 1), ("test", 1)):
        entries = load_datalist(datalist, split)
        assert len(entries) == count
        for entry in entries:
            assert set(entry) == {"image", "label_l1", "label_l2", "label_l3", "noise_std"}
            shapes = {nib.load(entry[key]).shape for key in ("image", "label_l1", "label_l2", "label_l3")}
            assert shapes == {(24, 24, 24)}
    meta = json.loads((tiny_phantoms / "dataset.json").read_text())
    assert meta["seed"] == 0 and meta["options"]["variant"] == "regular" and meta["splits"]["training"] == 4


def test_split_counts():
    assert split_counts(120) == (80, 20, 20)
    assert split_counts(24) == (16, 4, 4)
    assert split_counts(3) == (1, 1, 1)
    assert split_counts(1) == (1, 0, 0)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"size": 16}, "size"),
        ({"variant": "wavy"}, "variant"),
        ({"noise": -0.1}, "noise"),
        ({"n": 0}, "n (number of volumes)"),
        ({"workers": -1}, "workers"),
    ],
)
def test_bad_options_name_the_option(tmp_path, options, named):
    with pytest.raises(ValueError, match=named.replace("(", r"\(").replace(")", r"\)")):
        make_phantoms(str(tmp_path / "out"), **{"n": 1, "size": 24, **options})
    assert not (tmp_path / "out").exists(), "a bad option must not create the output folder"


def test_refuses_non_empty_folder_without_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="no monai-ext run recorded"):
        make_phantoms(str(tmp_path), n=1, size=24)
    assert (tmp_path / "notes.txt").read_text() == "user data"
    with pytest.raises(FileExistsError, match=r"notes\.txt, which no monai-ext run recorded"):
        make_phantoms(str(tmp_path), n=1, size=24, overwrite=True)  # issue 29: never a file the run did not write
    assert (tmp_path / "notes.txt").read_text() == "user data"
    make_phantoms(str(tmp_path / "generated"), n=1, size=24)
    make_phantoms(str(tmp_path / "generated"), n=1, size=24, seed=1, overwrite=True)  # generated data: replaced
    assert json.loads((tmp_path / "generated" / "dataset.json").read_text())["seed"] == 1


def test_load_datalist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"missing\.json"):
        load_datalist(tmp_path / "missing.json")
    (tmp_path / "d.json").write_text(json.dumps({"training": []}))
    with pytest.raises(ValueError, match="no split 'test'"):
        load_datalist(tmp_path / "d.json", "test")

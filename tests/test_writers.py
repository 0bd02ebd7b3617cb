"""Per-item writers (issue 29, cases 2 and 6): one set of outputs per input, never one written over another, and
the outputs of a PNG input in the PNG's own row / column order."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor
from monai.transforms import EnsureChannelFirstd, LoadImaged
from PIL import Image

from monai_ext.engines import EnsembleWriter, LevelsWriter
from monai_ext.engines.writers import strip_image_suffix


def _levels_item(name: str | Path, shape: tuple[int, int] = (6, 5)) -> dict:
    levels = torch.zeros(2, *shape, dtype=torch.long)
    levels[1, : shape[0] // 2] = 1
    return {
        "image": MetaTensor(torch.rand(1, *shape), meta={"filename_or_obj": str(name)}),
        "pred": levels[1:].clone(),
        "pred_levels": levels,
    }


def _run(writer: LevelsWriter | EnsembleWriter, items: list[dict]) -> None:
    engine = Engine(lambda engine, batch: items)
    writer.attach(engine)
    engine.run([0])


def _written(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*_seg.nii.gz"))


@pytest.mark.parametrize(
    "name, stem", [("sub1.z048.nii.gz", "sub1.z048"), ("a.nii", "a"), ("scan.png", "scan"), ("b.v2.mha", "b.v2")]
)
def test_the_output_name_is_the_whole_input_name_without_its_extension(name, stem):
    assert strip_image_suffix(name) == stem


def test_slices_of_one_subject_keep_their_own_outputs(tmp_path):
    """Issue 29, case 2: sub1.z048.nii.gz and sub1.z063.nii.gz gave one set of outputs."""
    data = tmp_path / "data"
    writer = LevelsWriter(tmp_path / "out", data_root_dir=data, save_panels=False)
    _run(writer, [_levels_item(data / "sub1.z048.nii.gz"), _levels_item(data / "sub1.z063.nii.gz")])
    assert _written(tmp_path / "out") == ["sub1.z048_seg.nii.gz", "sub1.z063_seg.nii.gz"]


def test_inputs_that_share_a_name_get_a_hash_not_one_file(tmp_path):
    """Issue 29, case 2: a.nii + a.nii.gz, or /a/slice.nii.gz + /b/slice.nii.gz outside dataset_dir, collided."""
    data = tmp_path / "data"
    items = [
        _levels_item(data / "a.nii"),
        _levels_item(data / "a.nii.gz", shape=(6, 7)),
        _levels_item(tmp_path / "x" / "slice.nii.gz"),
        _levels_item(tmp_path / "y" / "slice.nii.gz", shape=(6, 7)),
    ]
    writer = LevelsWriter(tmp_path / "out", data_root_dir=data, save_panels=False)
    _run(writer, items)
    written = _written(tmp_path / "out")
    assert len(written) == 4 and {"a_seg.nii.gz", "slice_seg.nii.gz"} <= set(written)
    shapes = sorted(nib.load(tmp_path / "out" / name).shape for name in written)
    assert shapes == [(6, 5), (6, 5), (6, 7), (6, 7)]  # each input's own output, none written over


@pytest.mark.parametrize("second", ["a.nii.gz", "sub/../a.nii.gz"])
def test_an_input_written_twice_in_one_run_is_an_error(tmp_path, second):
    item = _levels_item(tmp_path / "data" / "a.nii.gz")
    again = _levels_item(tmp_path / "data" / second)  # the same file, perhaps spelled otherwise
    writer = LevelsWriter(tmp_path / "out", data_root_dir=tmp_path / "data", save_panels=False)
    with pytest.raises(ValueError, match=r"'.*a\.nii\.gz' would be written twice"):
        _run(writer, [item, again])
    _run(writer, [item])  # a new run of the engine starts afresh


def _png_input(path: Path) -> np.ndarray:
    """A 100-row, 60-column PNG whose bright block is off the diagonal (so a transposed map cannot overlay it)."""
    pixels = np.full((100, 60), 20, dtype=np.uint8)
    pixels[10:40, 5:50] = 230
    Image.fromarray(pixels).save(path)
    return pixels


def test_the_segmentation_of_a_png_overlays_the_png(tmp_path):
    """Issue 29, case 6: MONAI reads a PNG with its axes reversed; its segmentation was 60 x 100."""
    pixels = _png_input(tmp_path / "cells.png")
    read = EnsureChannelFirstd("image", channel_dim="no_channel")(LoadImaged("image", image_only=True)(
        {"image": str(tmp_path / "cells.png")}
    ))["image"]  # fmt: skip
    assert read.shape == (1, 60, 100)  # MONAI's (column, row) order
    levels = torch.stack([torch.zeros_like(read[0]), (read[0] > 128).long()]).long()
    item = {"image": read, "pred": levels[1:].clone(), "pred_levels": levels}
    _run(LevelsWriter(tmp_path / "out", data_root_dir=tmp_path), [item])
    segmentation = np.asarray(Image.open(tmp_path / "out" / "cells_seg.png"))
    assert segmentation.shape == (100, 60) and np.array_equal(segmentation, (pixels > 128).astype(np.uint8))
    stack = np.asarray(nib.load(tmp_path / "out" / "cells_levels.nii.gz").dataobj)
    assert stack.shape == (100, 60, 2) and np.array_equal(stack[..., 1], segmentation)
    assert np.asarray(Image.open(tmp_path / "out" / "cells_levels.png")).ndim == 3  # the panel


def test_the_ensemble_maps_of_a_png_overlay_the_png(tmp_path):
    pixels = _png_input(tmp_path / "slice.png")
    mean = torch.as_tensor((pixels.T > 128).astype(np.float32))[None]  # MONAI's (column, row) order
    item = {
        "image": MetaTensor(torch.rand(4, 60, 100), meta={"filename_or_obj": str(tmp_path / "slice.png")}),
        "pred": (mean[0] > 0.5).to(torch.uint8),
        "pred_mean": mean,
        "pred_variance": mean / 4,
        "pred_samples": mean.repeat(3, 1, 1),
    }
    _run(EnsembleWriter(tmp_path / "out", data_root_dir=tmp_path, label_key=None), [item])
    mask = np.asarray(Image.open(tmp_path / "out" / "slice_mask.png"))
    assert np.array_equal(mask, (pixels > 128).astype(np.uint8))
    written_mean = np.asarray(nib.load(tmp_path / "out" / "slice_mean.nii.gz").dataobj)
    assert written_mean.shape == (100, 60) and np.array_equal(written_mean > 0.5, pixels > 128)


def test_labels_above_255_are_written_as_16_bit(tmp_path):
    read = MetaTensor(torch.rand(1, 4, 3), meta={"filename_or_obj": str(tmp_path / "many.png")})
    levels = torch.arange(12).reshape(1, 4, 3) * 100
    _run(LevelsWriter(tmp_path / "out", save_panels=False), [{"image": read, "pred": levels, "pred_levels": levels}])
    written = np.asarray(Image.open(tmp_path / "out" / "many_seg.png"))
    assert written.shape == (3, 4) and written.max() == 1100


def test_a_png_input_is_drawn_as_the_picture_in_its_panel(tmp_path, monkeypatch):
    """The panels of a PNG input show it as it is (first row at the top), not turned sideways."""
    from monai_ext import visualize

    pixels = _png_input(tmp_path / "cells.png")
    read = EnsureChannelFirstd("image", channel_dim="no_channel")(LoadImaged("image", image_only=True)(
        {"image": str(tmp_path / "cells.png")}
    ))["image"]  # fmt: skip
    levels = torch.stack([torch.zeros_like(read[0]), (read[0] > 128).long()]).long()
    drawn = []
    real_show = visualize.show
    monkeypatch.setattr(visualize, "show", lambda axis, array, raster=False, **o: (
        drawn.append((np.asarray(array), raster)), real_show(axis, array, raster, **o)
    ))  # fmt: skip
    item = {"image": read, "pred": levels[1:], "pred_levels": levels}
    _run(LevelsWriter(tmp_path / "out", data_root_dir=tmp_path), [item])
    image, raster = drawn[0]
    assert raster and np.array_equal(image, pixels)


@pytest.mark.parametrize("raster, shown, origin", [(True, "array", "upper"), (False, "transposed", "lower")])
def test_show_draws_pictures_as_they_are_and_scans_transposed(raster, shown, origin):
    from matplotlib.figure import Figure

    from monai_ext.visualize import show

    array = np.arange(6).reshape(2, 3)
    axis = Figure().add_subplot()
    show(axis, array, raster)
    expected = array if shown == "array" else array.T
    assert np.array_equal(axis.images[0].get_array(), expected) and axis.images[0].origin == origin

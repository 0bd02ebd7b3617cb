"""The cuts bundle end to end on a tiny encoder: train, infer, evaluate, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from bundle_support import bundle_workflow, error_messages
from monai.bundle import ConfigParser, ConfigWorkflow

from monai_ext.transforms import MergeAdjacentPartsd, PersistentStructuresd, PottsRefinementd

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "cuts"
CONFIGS = BUNDLE / "configs"
TRAIN = str(CONFIGS / "train.json")
INFERENCE = str(CONFIGS / "inference.json")
EVALUATE = [INFERENCE, str(CONFIGS / "evaluate.json")]

TINY = {"bundle_root": str(BUNDLE), "spatial_size": [24, 24], "network_def#channels": [4, 8]}
# max_epochs 1 under the default val_interval 2: a run shorter than the interval still validates and writes model.pt
TINY_TRAIN = {**TINY, "max_epochs": 1, "batch_size": 2, "anchors_per_image": 4}
TINY_INFER = {**TINY, "landmarks": 64}


def workflow(config_file: str | list[str], workflow_type: str, **override) -> ConfigWorkflow:
    """An initialized workflow with this bundle's metadata and logging config."""
    return bundle_workflow(CONFIGS, config_file, workflow_type, **override)


@pytest.fixture(scope="module")
def slices(tiny_brain_slices: Path) -> Path:
    """Three subjects, one tumour slice and one tumour-free slice each, 32 x 32 x 4 contrasts."""
    return tiny_brain_slices


@pytest.fixture(scope="module")
def trained(slices: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("train")
    wf = workflow(TRAIN, "train", dataset_dir=str(slices), output_dir=str(out), **TINY_TRAIN)
    assert wf.check_properties() == []
    wf.run()
    wf.finalize()
    return out / "model.pt"


def test_training_selects_the_encoder_on_the_validation_patch_error(trained: Path) -> None:
    selection = json.loads((trained.parent / "model_selection.json").read_text())
    assert selection["metrics"] == ["val_patch_mse"] and selection["epochs"] == [1]  # the one epoch, selected
    checkpoint = next(trained.parent.glob("checkpoint_epoch=1.pt"))
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    assert {"model", "reconstructor", "optimizer"} <= set(state)  # the reconstructor resumes with the encoder
    assert set(torch.load(trained, map_location="cpu", weights_only=True)) == set(state["model"])


@pytest.mark.parametrize("merge_parts", [False, True])
def test_inference_writes_segmentation_levels_and_panel(
    slices: Path, trained: Path, tmp_path: Path, merge_parts: bool
) -> None:
    overrides = {"dataset_dir": str(slices), "output_dir": str(tmp_path), "ckpt_path": str(trained)}
    wf = workflow(INFERENCE, "infer", merge_parts=merge_parts, **overrides, **TINY_INFER)
    assert wf.check_properties() == []
    wf.run()
    test_images = [Path(r["image"]) for r in json.loads((slices / "datalist.json").read_text())["test"]]
    assert len(test_images) == 2
    for image in test_images:
        stem = tmp_path / image.parent.name / image.name.split(".")[0]
        segmentation = np.asarray(nib.load(f"{stem}_seg.nii.gz").dataobj)
        levels = np.asarray(nib.load(f"{stem}_levels.nii.gz").dataobj)
        assert segmentation.shape == (32, 32) and levels.shape[:2] == (32, 32)  # back on the input grid
        labels = np.unique(segmentation)
        assert labels.tolist() == list(range(len(labels)))  # a full label map numbered 0 .. k - 1
        counts = [len(np.unique(levels[..., i])) for i in range(levels.shape[-1])]
        assert counts == sorted(counts, reverse=True)  # fine to coarse
        assert Path(f"{stem}_levels.png").stat().st_size > 0


def test_evaluation_scores_both_targets_with_the_oracle_apart(slices: Path, trained: Path, tmp_path: Path) -> None:
    wf = workflow(
        EVALUATE, "eval", dataset_dir=str(slices), eval_output_dir=str(tmp_path), ckpt_path=str(trained), **TINY_INFER
    )
    wf.run()
    report = json.loads((tmp_path / "report.json").read_text())
    tumour = report["targets"]["tumour"]
    assert report["images"] == 2 and tumour["images"] == 1 and tumour["empty_truth"] == 1  # one slice without it
    assert set(tumour["methods"]) == {"persistent structures", "spectral k-means", "best level (oracle)"}
    for scores in tumour["methods"].values():
        assert 0 <= scores["dice"]["mean"] <= 1
    oracle, persistent = tumour["methods"]["best level (oracle)"], tumour["methods"]["persistent structures"]
    assert oracle["dice"]["mean"] >= 0 and set(report["targets"]) == {"tumour", "ventricles"}
    assert persistent["dice"]["n"] == 1
    ventricles = report["targets"]["ventricles"]  # read from the batch: the evaluator's output has no such key
    assert ventricles["images"] + ventricles["empty_truth"] == 2
    assert not list(tmp_path.rglob("*_seg.nii.gz"))  # evaluation writes the report only


def test_images_smaller_than_the_patch_and_wrong_channels_name_the_file(slices: Path, tmp_path: Path) -> None:
    record = json.loads((slices / "datalist.json").read_text())["test"][0]
    small = tmp_path / "small"
    small.mkdir()
    nib.save(nib.Nifti1Image(np.random.rand(4, 4, 4).astype(np.float32), np.eye(4)), small / "tiny.nii.gz")
    wf = workflow(INFERENCE, "infer", dataset_dir=str(small), output_dir=str(tmp_path / "a"), **TINY_INFER)
    with pytest.raises(Exception) as error:
        wf.dataset[0]
    assert re.search(
        r"'image' of '.*tiny.nii.gz' has spatial shape \(4, 4\), smaller than 5 pixels", error_messages(error.value)
    )
    wf = workflow(
        INFERENCE,
        "infer",
        dataset_dir=str(slices),
        output_dir=str(tmp_path / "b"),
        **{**TINY_INFER, "image_channels": 1},
    )
    with pytest.raises(Exception) as error:
        wf.dataset[0]
    assert re.search(
        r"'image' of '.*_image.nii.gz' has 4 channels; .*config id image_channels", error_messages(error.value)
    )
    assert record["image"].endswith("_image.nii.gz")


def test_a_condensation_over_the_memory_cap_is_refused_before_it_runs(
    slices: Path, trained: Path, tmp_path: Path
) -> None:
    wf = workflow(
        INFERENCE,
        "infer",
        dataset_dir=str(slices),
        output_dir=str(tmp_path),
        ckpt_path=str(trained),
        **{**TINY_INFER, "max_memory_gb": 1e-6},
    )
    with pytest.raises(Exception) as error:
        wf.run()
    assert "above max_memory_gb=1e-06" in error_messages(error.value)
    assert not list(tmp_path.rglob("*.nii.gz"))


def test_a_png_folder_mixing_grey_and_rgb_is_refused_naming_the_grey_file(tmp_path: Path) -> None:
    """A folder of PNG files needs no datalist; with ``image_channels 3`` the RGB file is read and the greyscale one
    refused, named (H x W has no channel axis to match)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(tmp_path / "a_rgb.png")
    Image.fromarray(rng.integers(0, 255, (24, 24), dtype=np.uint8)).save(tmp_path / "b_grey.png")
    wf = workflow(
        INFERENCE, "infer", dataset_dir=str(tmp_path), output_dir=str(tmp_path / "out"), image_channels=3, **TINY
    )
    assert [Path(item["image"]).name for item in wf.dataset.data] == ["a_rgb.png", "b_grey.png"]
    assert wf.dataset[0]["image"].shape == (3, 24, 24)
    with pytest.raises(Exception) as error:
        wf.dataset[1]
    assert "b_grey.png" in error_messages(error.value)


def test_cell_phantom_slices_train_and_evaluate_with_their_overlay(tmp_path: Path) -> None:
    """configs/cell_slices.json: one-channel 2D slices of the cell phantoms (no channel axis in the file), the cell
    mask as the target."""
    from monai_ext.data.phantoms import make_phantoms

    data = tmp_path / "cells"
    make_phantoms(str(data), n=6, seed=0, size=24, workers=1, mode="2d")
    with pytest.raises(ValueError, match="mode must be '2d' or '3d'"):
        make_phantoms(str(tmp_path / "bad"), n=1, size=24, mode="2.5d")
    record = json.loads((data / "datalist.json").read_text())["training"][0]
    assert nib.load(data / record["image"]).shape == nib.load(data / record["label_l1"]).shape == (24, 24)
    overlay = str(CONFIGS / "cell_slices.json")
    wf = workflow([TRAIN, overlay], "train", dataset_dir=str(data), output_dir=str(tmp_path / "t"), **TINY_TRAIN)
    wf.run()
    wf = workflow(
        [*EVALUATE, overlay],
        "eval",
        dataset_dir=str(data),
        eval_output_dir=str(tmp_path / "e"),
        ckpt_path=str(tmp_path / "t" / "model.pt"),
        **TINY_INFER,
    )
    wf.run()
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert list(report["targets"]) == ["cell"], report
    assert report["targets"]["cell"]["images"] == 1, report["targets"]


def test_the_shipped_cell_encoder_infers_on_cell_slices(tmp_path: Path) -> None:
    """configs/cell_slices.json loads models/model_cell_slices.pt by default: inference runs with no training."""
    from monai_ext.data.phantoms import make_phantoms

    data = tmp_path / "cells"
    make_phantoms(str(data), n=3, seed=1, size=24, workers=1, mode="2d")
    overlay = str(CONFIGS / "cell_slices.json")
    overrides = {"bundle_root": str(BUNDLE), "dataset_dir": str(data), "output_dir": str(tmp_path / "i")}
    wf = workflow([INFERENCE, overlay], "infer", landmarks=64, **overrides)
    assert wf.parser.get_parsed_content("ckpt_path").endswith("models/model_cell_slices.pt")
    wf.run()
    segmentations = [np.asarray(nib.load(f).dataobj) for f in (tmp_path / "i").rglob("*_seg.nii.gz")]
    assert segmentations and all(s.shape == (24, 24) and len(np.unique(s)) >= 2 for s in segmentations)


def inference_config(**updates) -> ConfigParser:
    """This bundle's inference config with ``updates``, unparsed."""
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser.update({"bundle_root": str(BUNDLE), **updates})
    return parser


@pytest.mark.parametrize("part_ratio", [None, 0.75])
def test_the_part_ratio_config_id_reaches_persistent_structures(part_ratio: float | None) -> None:
    transforms = inference_config(part_ratio=part_ratio).get_parsed_content("postprocessing").transforms
    [persistence] = [t for t in transforms if isinstance(t, PersistentStructuresd)]
    assert persistence.transform.rule == "lineage" and persistence.transform.part_ratio == part_ratio


def test_a_part_ratio_outside_its_range_is_refused_naming_it() -> None:
    with pytest.raises(RuntimeError) as raised:  # MONAI wraps the transform's error
        inference_config(part_ratio=1.5).get_parsed_content("postprocessing")
    assert "ValueError: part_ratio must be None, or in (0, 1]" in error_messages(raised.value)


@pytest.mark.parametrize("merge_parts", [True, "true"])
def test_the_merge_config_ids_reach_the_part_merging_after_the_refinement(merge_parts: bool | str) -> None:
    config = inference_config(merge_parts=merge_parts, merge_boundary_share=0.6, merge_size_ratio=0.75)
    transforms = list(config.get_parsed_content("postprocessing").transforms)
    [merging] = [t for t in transforms if isinstance(t, MergeAdjacentPartsd)]
    assert (merging.merging.boundary_share, merging.merging.size_ratio) == (0.6, 0.75)
    assert isinstance(transforms[transforms.index(merging) - 1], PottsRefinementd)


@pytest.mark.parametrize("merge_parts", [False, "false"])
def test_merge_parts_off_leaves_the_refined_map(merge_parts: bool | str) -> None:
    transforms = inference_config(merge_parts=merge_parts).get_parsed_content("postprocessing").transforms
    assert not any(isinstance(t, MergeAdjacentPartsd) for t in transforms)
    assert any(isinstance(t, PottsRefinementd) for t in transforms)


@pytest.mark.parametrize(
    "updates, message",
    [
        (
            {"merge_parts": True, "merge_size_ratio": 1.5},
            "ValueError: boundary_share must be in (0, 1] and size_ratio in [0, 1], got 0.6 and 1.5",
        ),
        ({"merge_parts": True, "merge_boundary_share": 0}, "got 0 and 0.75"),
        ({"merge_parts": "maybe"}, "option 'merge_parts' must be True or False"),
    ],
)
def test_bad_merge_options_are_refused_with_the_transforms_message(updates: dict, message: str) -> None:
    with pytest.raises(RuntimeError) as raised:  # MONAI wraps the error
        inference_config(**updates).get_parsed_content("postprocessing")
    assert message in error_messages(raised.value)


@pytest.mark.parametrize("overlays, radius", [((), 2), (("cell_slices.json",), None)])
def test_loss_draws_positives_as_each_shipped_encoder_was_trained(
    overlays: tuple[str, ...], radius: int | None
) -> None:
    """The brain encoder (0.4.0) was trained with positives within 2 pixels, the cell encoder with the paper's patch
    size (None); each training config must repeat its recipe."""
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / "train.json"), *(str(CONFIGS / name) for name in overlays)])
    parser["bundle_root"] = str(BUNDLE)
    assert parser.get_parsed_content("loss").positive_radius == radius

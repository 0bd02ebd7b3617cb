"""The diffusion_segmentation bundle end to end on a tiny network: train, infer, bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_support import bundle_workflow, error_messages
from monai.bundle import ConfigParser, ConfigWorkflow

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "diffusion_segmentation"
CONFIGS = BUNDLE / "configs"
TRAIN = str(CONFIGS / "train.json")
INFERENCE = str(CONFIGS / "inference.json")
EVALUATE = [TRAIN, str(CONFIGS / "evaluate.json")]

TINY = {
    "bundle_root": str(BUNDLE),
    "spatial_size": [16, 16],
    "num_train_timesteps": 20,
    "network_def#channels": [8, 8, 16],
    "network_def#norm_num_groups": 8,
    "network_def#num_head_channels": 8,
}
TINY_TRAIN = {**TINY, "max_epochs": 1, "val_interval": 1, "batch_size": 2, "val_inference_steps": 2}
TINY_INFER = {**TINY, "num_samples": 2, "num_inference_steps": 2, "progress": False}


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


def test_training_selects_weights_on_the_validation_dice(trained: Path) -> None:
    selection = json.loads((trained.parent / "model_selection.json").read_text())
    assert trained.is_file() and selection["metrics"] == ["val_mean_dice"]
    assert selection["epochs"] == [1] and 0 <= selection["best"][0] <= 1  # the one epoch, with its Dice


def same_weights(first: dict, second: dict) -> bool:
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def test_selection_and_resume_keep_the_moving_average_of_the_weights(trained: Path) -> None:
    """The validation scores, and ``model.pt`` holds, the exponential moving average of the weights (the authors'
    guided-diffusion EMA); the resume checkpoint keeps both the online and the averaged network."""
    resume = torch.load(trained.parent / "checkpoint_epoch=1.pt", map_location="cpu", weights_only=True)
    selected = torch.load(trained, map_location="cpu", weights_only=True)
    assert same_weights(selected, resume["ema_model"])
    assert not same_weights(selected, resume["model"])


def test_inference_writes_mask_mean_variance_and_panel(slices: Path, trained: Path, tmp_path: Path) -> None:
    wf = workflow(
        INFERENCE, "infer", dataset_dir=str(slices), output_dir=str(tmp_path), ckpt_path=str(trained), **TINY_INFER
    )
    assert wf.check_properties() == []
    wf.run()
    test_images = [Path(r["image"]) for r in json.loads((slices / "datalist.json").read_text())["test"]]
    for image in test_images:
        folder = tmp_path / image.parent.name
        stem = image.name.split(".")[0]
        mask = np.asarray(nib.load(folder / f"{stem}_mask.nii.gz").dataobj)
        mean = np.asarray(nib.load(folder / f"{stem}_mean.nii.gz").dataobj)
        variance = np.asarray(nib.load(folder / f"{stem}_variance.nii.gz").dataobj)
        assert mask.shape[-2:] == mean.shape[-2:] == variance.shape[-2:] == (32, 32)  # back on the input grid
        assert set(np.unique(mask)) <= {0, 1} and mask.dtype == np.uint8
        assert variance.min() >= 0 and mean.min() >= 0 and mean.max() <= 1
        assert (folder / f"{stem}_panel.png").stat().st_size > 0


def test_inference_with_one_sample_has_zero_variance_and_ddpm_runs(slices: Path, trained: Path, tmp_path: Path) -> None:
    wf = workflow(
        INFERENCE,
        "infer",
        dataset_dir=str(slices),
        output_dir=str(tmp_path),
        ckpt_path=str(trained),
        **{**TINY_INFER, "num_samples": 1, "sampler": "ddpm", "save_panels": False},
    )
    wf.run()
    variances = sorted(tmp_path.rglob("*_variance.nii.gz"))
    assert variances and all(np.asarray(nib.load(v).dataobj).max() == 0 for v in variances)
    assert not list(tmp_path.rglob("*.png"))


def test_evaluation_reports_the_paper_table_and_uncertainty(slices: Path, trained: Path, tmp_path: Path) -> None:
    wf = workflow(
        EVALUATE,
        "eval",
        dataset_dir=str(slices),
        eval_output_dir=str(tmp_path),
        ckpt_path=str(trained),
        **{**TINY, "num_samples": 2, "num_inference_steps": 2},
    )
    wf.run()
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ensemble"]["slices"] == 1 and report["empty_label_slices"] == 1  # the test subject's 2 slices
    for key in ("single_sample", "ensemble"):
        assert 0 <= report[key]["dice"]["mean"] <= 1
    assert set(report["uncertainty"]) == {"boundary_variance_ratio", "variance_error_auroc", "mean_map_ece"}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"num_samples": 0}, "num_samples"),
        ({"num_inference_steps": 21}, "num_inference_steps must be between 1 and T = 20"),
        ({"sampler": "euler"}, "config id 'sampler'"),
    ],
)
def test_bad_sampling_options_name_the_config_id(trained: Path, override: dict, message: str) -> None:
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser.update({**TINY_INFER, "ckpt_path": str(trained), **override})
    with pytest.raises(Exception) as error:
        parser.get_parsed_content("inferer")
    assert message in error_messages(error.value)


def test_wrong_channel_count_and_non_binary_mask_name_the_file(slices: Path, tmp_path: Path) -> None:
    record = json.loads((slices / "datalist.json").read_text())["training"][0]
    image = slices / record["image"]
    wf = workflow(
        INFERENCE,
        "infer",
        dataset_dir=str(slices),
        output_dir=str(tmp_path / "a"),
        **{**TINY_INFER, "image_channels": 3},
    )
    with pytest.raises(Exception) as error:
        wf.dataset[0]
    assert re.search(
        r"'image' of '.*_image.nii.gz' has 4 channels; .*config id image_channels", error_messages(error.value)
    )
    bad = tmp_path / "bad_label.nii.gz"
    nib.save(nib.Nifti1Image(np.full((32, 32), 2, np.uint8), np.eye(4)), bad)
    data = tmp_path / "bad"
    data.mkdir()
    listing = {split: [{"image": str(image), "label": str(bad)}] for split in ("training", "validation", "test")}
    (data / "datalist.json").write_text(json.dumps(listing))
    wf = workflow(TRAIN, "train", dataset_dir=str(data), output_dir=str(tmp_path / "t"), **TINY_TRAIN)
    with pytest.raises(Exception) as error:
        wf.run()
    assert "bad_label.nii.gz" in error_messages(error.value) and "binary mask" in error_messages(error.value)


def test_supervised_baseline_trains_and_evaluates_as_a_dropout_ensemble(slices: Path, tmp_path: Path) -> None:
    supervised = str(CONFIGS / "supervised.json")
    tiny = {"bundle_root": str(BUNDLE), "spatial_size": [16, 16], "network_def#channels": [4, 8, 8, 8]}
    wf = workflow(
        [TRAIN, supervised],
        "train",
        dataset_dir=str(slices),
        output_dir=str(tmp_path / "t"),
        max_epochs=1,
        val_interval=1,
        batch_size=2,
        **tiny,
    )
    assert wf.check_properties() == []
    wf.run()
    resume = torch.load(tmp_path / "t" / "checkpoint_epoch=1.pt", map_location="cpu", weights_only=True)
    selected = torch.load(tmp_path / "t" / "model.pt", map_location="cpu", weights_only=True)
    assert same_weights(selected, resume["model"])  # the baseline is selected on its own weights, with no average
    wf = workflow(
        [*EVALUATE, supervised],
        "eval",
        dataset_dir=str(slices),
        eval_output_dir=str(tmp_path / "e"),
        ckpt_path=str(tmp_path / "t" / "model.pt"),
        num_samples=3,
        **tiny,
    )
    wf.run()
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["ensemble"]["slices"] == 1 and 0 <= report["ensemble"]["dice"]["mean"] <= 1


TINY_3D = {**TINY, "spatial_size": [16, 16, 16]}


def test_3d_mode_trains_infers_and_evaluates_on_brain_volumes(tiny_brains: Path, tmp_path: Path) -> None:
    """train_3d.json / inference_3d.json: the four contrast files stacked into (4, X, Y, Z), a 3D U-Net, maps
    written back on the 96^3 grid, and the report over the test volume."""
    wf = workflow(
        [TRAIN, str(CONFIGS / "train_3d.json")],
        "train",
        dataset_dir=str(tiny_brains),
        output_dir=str(tmp_path / "t"),
        **{**TINY_TRAIN, **TINY_3D, "batch_size": 2},
    )
    assert wf.check_properties() == []
    wf.run()
    weights = tmp_path / "t" / "model.pt"
    wf = workflow(
        [INFERENCE, str(CONFIGS / "inference_3d.json")],
        "infer",
        dataset_dir=str(tiny_brains),
        output_dir=str(tmp_path / "i"),
        ckpt_path=str(weights),
        **{**TINY_INFER, **TINY_3D},
    )
    assert wf.check_properties() == []
    wf.run()
    (mask,) = (tmp_path / "i").rglob("*_mask.nii.gz")
    label = nib.load(next(tiny_brains.rglob("label.nii.gz")))
    assert nib.load(mask).shape == label.shape == (96, 96, 96)
    assert np.allclose(nib.load(mask).affine, label.affine)
    assert len(list((tmp_path / "i").rglob("*_panel.png"))) == 1
    wf = workflow(
        [TRAIN, str(CONFIGS / "train_3d.json"), str(CONFIGS / "evaluate.json")],
        "eval",
        dataset_dir=str(tiny_brains),
        eval_output_dir=str(tmp_path / "e"),
        ckpt_path=str(weights),
        **{**TINY_3D, "num_samples": 2, "num_inference_steps": 2},
    )
    wf.run()
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["ensemble"]["slices"] == 1 and 0 <= report["ensemble"]["dice"]["mean"] <= 1


@pytest.fixture(scope="module")
def png_slices(slices: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny slices as a user's PNG folder: 8-bit RGB images (T1ce, T2, FLAIR) and 0 / 255 masks."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("png")
    listing = json.loads((slices / "datalist.json").read_text())
    for records in listing.values():
        for record in records:
            stem = Path(record["image"]).name.split("_")[0] + "_" + Path(record["image"]).parent.name
            image = np.asarray(nib.load(slices / record["image"]).dataobj)[..., 1:]
            label = np.asarray(nib.load(slices / record["label"]).dataobj)
            Image.fromarray((image / image.max() * 255).astype(np.uint8)).save(folder / f"{stem}.png")
            Image.fromarray((label > 0).astype(np.uint8) * 255).save(folder / f"{stem}_mask.png")
            record.update(image=f"{stem}.png", label=f"{stem}_mask.png")
    (folder / "datalist.json").write_text(json.dumps(listing))
    return folder


def test_png_slices_rgb_with_0_255_masks_train_and_infer(png_slices: Path, tmp_path: Path) -> None:
    from PIL import Image

    png = {"image_channels": 3}
    wf = workflow(
        TRAIN,
        "train",
        dataset_dir=str(png_slices),
        output_dir=str(tmp_path / "t"),
        mask_foreground_value=255,
        **{**TINY_TRAIN, **png},
    )
    wf.run()
    assert set(np.unique(wf.train_dataset[0]["label"].numpy())) == {0.0, 1.0}  # 255 read as foreground
    wf = workflow(
        INFERENCE,
        "infer",
        dataset_dir=str(png_slices),
        output_dir=str(tmp_path / "i"),
        ckpt_path=str(tmp_path / "t" / "model.pt"),
        **{**TINY_INFER, **png},
    )
    wf.run()
    masks = sorted((tmp_path / "i").rglob("*_mask.png"))  # a PNG's mask is a PNG in its own row order (issue 29)
    assert len(masks) == 2 and all(np.asarray(Image.open(m)).shape == (32, 32) for m in masks)


def test_greyscale_png_is_read_with_no_channel_axis(png_slices: Path, tmp_path: Path) -> None:
    from PIL import Image

    record = json.loads((png_slices / "datalist.json").read_text())["test"][0]
    grey = np.asarray(Image.open(png_slices / record["image"]).convert("L"))
    Image.fromarray(grey).save(tmp_path / "grey.png")
    (tmp_path / "datalist.json").write_text(json.dumps({"test": [{"image": "grey.png"}]}))
    wf = workflow(
        INFERENCE,
        "infer",
        dataset_dir=str(tmp_path),
        output_dir=str(tmp_path / "i"),
        image_channels=1,
        image_channel_dim="no_channel",
        **TINY_INFER,
    )
    assert tuple(wf.dataset[0]["image"].shape) == (1, 16, 16)


def test_inference_samples_with_the_training_prediction_type_and_the_paper_predicts_the_noise() -> None:
    """The CPU recipe predicts v (at t near T the noise prediction's error is multiplied by sqrt((1 - abar_t) /
    abar_t), about 150 at t = 980, and half the samples diverged); inference reads the same id, and the paper's
    setting keeps the noise prediction."""
    train, infer, paper = ConfigParser(), ConfigParser(), ConfigParser()
    train.read_config(TRAIN)
    infer.read_config(INFERENCE)
    paper.read_config([TRAIN, str(CONFIGS / "train_paper.json")])
    assert train["prediction_type"] == infer["prediction_type"] == "v_prediction"
    assert infer.get_parsed_content("scheduler").prediction_type == "v_prediction"
    assert infer["num_train_timesteps"] == train["num_train_timesteps"]
    assert paper.get_parsed_content("scheduler").prediction_type == "epsilon"
    assert train.get_parsed_content("validate#scheduler").prediction_type == "v_prediction"

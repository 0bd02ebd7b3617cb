"""Weights files and the settings stored beside them (issue 29, cases 4 and 12)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from bundle_support import error_messages
from monai.bundle import ConfigParser

from monai_ext.weights import load_weights, save_weights, settings_path

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "bundles").glob("*/models/**/*.pt"))


def _saved(tmp_path: Path, settings: dict | None) -> Path:
    path = tmp_path / "model.pt"
    save_weights(torch.nn.Linear(2, 1).state_dict(), path, settings)
    return path


def test_settings_are_written_beside_the_weights_and_checked(tmp_path):
    path = _saved(tmp_path, {"prediction_type": "v_prediction", "spatial_size": (64, 64)})
    assert json.loads(settings_path(path).read_text())["settings"]["spatial_size"] == [64, 64]
    load_weights(torch.nn.Linear(2, 1), path, settings={"prediction_type": "v_prediction", "spatial_size": [64, 64]})
    with pytest.raises(ValueError) as error:
        load_weights(torch.nn.Linear(2, 1), path, settings={"prediction_type": "sample"})
    message = str(error.value)
    assert "config id 'prediction_type' is 'sample'" in message
    assert "trained with prediction_type = 'v_prediction'" in message
    assert str(settings_path(path)) in message


def test_weights_without_settings_load_with_a_warning(tmp_path, caplog):
    path = _saved(tmp_path, None)
    with caplog.at_level(logging.WARNING):
        load_weights(torch.nn.Linear(2, 1), path, settings={"prediction_type": "sample"})
    assert "have no settings file 'model.json'" in caplog.text


@pytest.mark.parametrize(
    "content, message",
    [
        ([torch.zeros(2)], "hold a list, not a state dict"),
        (torch.zeros(2), "hold a Tensor, not a state dict"),
        ({"weight": torch.zeros(1, 2), "epoch": 3}, "hold a dict, not a state dict"),
    ],
)
def test_a_file_that_is_no_state_dict_is_named(tmp_path, content, message):
    """Issue 29, case 12: a saved list or tensor gave a TypeError naming no file."""
    path = tmp_path / "weights.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match=message) as error:
        load_weights(torch.nn.Linear(2, 1), path)
    assert str(path) in str(error.value)


def test_a_folder_is_not_a_weights_file(tmp_path):
    """Issue 29, case 12: a checkpoint path that is a folder was reported as missing."""
    with pytest.raises(ValueError, match=r"is a folder; pass the weights file inside it"):
        load_weights(torch.nn.Linear(2, 1), tmp_path)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
def test_a_cuda_device_without_a_gpu_is_named(tmp_path):
    """Issue 29, case 12: --device cuda without a GPU said the checkpoint was truncated or corrupt."""
    with pytest.raises(ValueError, match=r"config id 'device' is 'cuda', but this machine has no CUDA GPU"):
        load_weights(torch.nn.Linear(2, 1), _saved(tmp_path, None), device="cuda")


@pytest.mark.parametrize("weights", SHIPPED, ids=lambda p: p.relative_to(ROOT / "bundles").as_posix())
def test_every_shipped_weights_file_carries_its_settings(weights):
    stored = json.loads(settings_path(weights).read_text())["settings"]
    assert stored and all(isinstance(key, str) for key in stored)


@pytest.mark.parametrize(
    "bundle, configs, weights",
    [
        ("cuts", ["inference.json"], "models/model.pt"),
        ("cuts", ["inference.json", "cell_slices.json"], "models/model_cell_slices.pt"),
        ("diffusion_pretraining", ["inference.json"], "models/model.pt"),
        ("diffusion_pretraining", ["train.json", "brain.json"], "models/brain/model.pt"),
        ("diffusion_segmentation", ["inference.json"], "models/model.pt"),
        ("structure_discovery", ["inference.json"], "models/model.pt"),
        ("structure_discovery", ["inference.json", "brain.json"], "models/brain/model.pt"),
    ],
)
def test_the_configs_that_load_shipped_weights_repeat_their_settings(bundle, configs, weights):
    parser = ConfigParser()
    parser.read_config([str(ROOT / "bundles" / bundle / "configs" / name) for name in configs])
    parser["bundle_root"] = str(ROOT / "bundles" / bundle)
    stored = json.loads(settings_path(ROOT / "bundles" / bundle / weights).read_text())["settings"]
    assert json.loads(json.dumps(parser.get_parsed_content("weights_settings"))) == stored


@pytest.mark.parametrize("configs", [["train.json"], ["train.json", "brain.json"]], ids=["cells", "brains"])
def test_structure_discovery_loads_its_shipped_diffusion_weights_with_their_settings(configs):
    """The diffusion U-Net structure discovery reads is built by ``monai_ext.bundle.diffusion_model``, which checks
    the shipped weights' ``model.json`` against the settings of the diffusion configs it names (a mismatch raises)."""
    bundle = ROOT / "bundles" / "structure_discovery"
    parser = ConfigParser()
    parser.read_config([str(bundle / "configs" / name) for name in configs])
    parser.update({"bundle_root": str(bundle), "device": "cpu"})
    assert isinstance(parser.get_parsed_content("diffusion_unet"), torch.nn.Module)
    stored = json.loads(settings_path(parser.get_parsed_content("diffusion_ckpt")).read_text())["settings"]
    assert parser.get_parsed_content("diffusion_scheduler").num_train_timesteps == stored["num_train_timesteps"]


def test_a_scheduler_override_reaches_the_stored_settings():
    """The settings are read from the scheduler the weights are trained with, so a nested override counts too."""
    parser = ConfigParser()
    parser.read_config(str(ROOT / "bundles" / "diffusion_pretraining" / "configs" / "train.json"))
    parser["scheduler#prediction_type"] = "epsilon"
    assert parser.get_parsed_content("weights_settings")["prediction_type"] == "epsilon"


def test_the_shipped_diffusion_segmentation_weights_refuse_another_prediction_type(tmp_path):
    """Issue 29, case 4: --prediction_type sample on the shipped v-prediction weights ran and marked 95.6 % of the
    slice."""
    from monai.bundle import ConfigWorkflow

    configs = ROOT / "bundles" / "diffusion_segmentation" / "configs"
    for value in ("sample", "epsilon"):
        workflow = ConfigWorkflow(
            config_file=str(configs / "inference.json"), meta_file=str(configs / "metadata.json"),
            workflow_type="infer", output_dir=str(tmp_path / "out"), prediction_type=value,
        )  # fmt: skip
        workflow.initialize()
        with pytest.raises(RuntimeError) as error:
            workflow.parser.get_parsed_content("network")
        message = error_messages(error.value)
        assert f"config id 'prediction_type' is '{value}'" in message and "'v_prediction'" in message

"""Regression tests of the bundle-level faults of issue 7, each tried as a user would: through the bundle configs.

The unit-level cases (resume order and fallback, folder guards, unreadable NIfTI, command-line flags) are in
``test_reliability.py``, ``test_cli.py`` and ``test_config_flags.py``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from bundle_support import error_messages
from monai.bundle import ConfigWorkflow

from monai_ext.data.output_folder import claim_output_dir

ROOT = Path(__file__).resolve().parents[1]
DISCOVERY = ROOT / "bundles" / "structure_discovery"
DIFFUSION = ROOT / "bundles" / "diffusion_pretraining"
TINY_SEGMENTER = {"spatial_size": [24, 24, 24], "network_def#channels": [4, 8, 8], "network_def#strides": [1, 2]}


def _workflow(bundle: Path, files: list[str], workflow_type: str, **overrides) -> ConfigWorkflow:
    paths = [str(bundle / "configs" / f) for f in files]
    return ConfigWorkflow(
        config_file=paths if len(paths) > 1 else paths[0],
        workflow_type=workflow_type,
        meta_file=str(bundle / "configs" / "metadata.json"),
        logging_file=str(bundle / "configs" / "logging.conf"),
        bundle_root=str(bundle),
        **overrides,
    )


def _with_split(source: Path, target: Path, split: str, items: list) -> Path:
    """A copy of a dataset folder whose datalist has ``items`` in ``split``."""
    shutil.copytree(source, target)
    datalist = json.loads((target / "datalist.json").read_text())
    datalist[split] = items
    (target / "datalist.json").write_text(json.dumps(datalist))
    return target


def test_training_refuses_a_folder_with_weights_it_did_not_write(tiny_phantoms, tmp_path):
    """Issue 7: a folder holding a model.pt and model_selection.json but no checkpoint was overwritten after
    epoch 1; now training stops before anything runs, with or without --overwrite true (issue 29)."""
    out = tmp_path / "published"
    out.mkdir()
    (out / "model.pt").write_bytes(b"weights someone published")
    (out / "model_selection.json").write_text("{}")
    for bundle in (DISCOVERY, DIFFUSION):
        with pytest.raises(RuntimeError) as error:
            _workflow(bundle, ["train.json"], "train", dataset_dir=str(tiny_phantoms), output_dir=str(out)).initialize()
        message = error_messages(error.value)
        assert "model.pt, model_selection.json, which no monai-ext run recorded" in message
        assert (out / "model.pt").read_bytes() == b"weights someone published"
    workflow = _workflow(
        DIFFUSION, ["train.json"], "train", dataset_dir=str(tiny_phantoms), output_dir=str(out), overwrite="true"
    )
    with pytest.raises(RuntimeError) as error:  # issue 29: overwrite removes only what a monai-ext run recorded
        workflow.initialize()
    assert "no monai-ext run recorded" in error_messages(error.value)
    assert (out / "model.pt").read_bytes() == b"weights someone published"


def test_inference_with_an_empty_test_split_is_an_error(tiny_phantoms, tmp_path):
    """Issue 7: an empty test split made inference exit 0 having written nothing."""
    data = _with_split(tiny_phantoms, tmp_path / "data", "test", [])
    workflow = _workflow(
        DISCOVERY,
        ["inference.json"],
        "infer",
        dataset_dir=str(data),
        output_dir=str(tmp_path / "out"),
        **TINY_SEGMENTER,
    )
    workflow.initialize()
    with pytest.raises(RuntimeError) as error:
        workflow.run()
    assert "split 'test'" in error_messages(error.value) and "empty" in error_messages(error.value)


def test_training_with_an_empty_validation_split_is_an_error(tiny_phantoms, tmp_path):
    """Issue 7: an empty validation split made training exit 0 with no model.pt."""
    data = _with_split(tiny_phantoms, tmp_path / "data", "validation", [])
    workflow = _workflow(DIFFUSION, ["train.json"], "train", dataset_dir=str(data), output_dir=str(tmp_path / "run"))
    workflow.initialize()
    with pytest.raises(RuntimeError) as error:
        workflow.parser.get_parsed_content("validate#dataset")
    assert "split 'validation'" in error_messages(error.value) and "empty" in error_messages(error.value)


@pytest.mark.parametrize("files, kind", [(["train.json"], "train"), (["inference.json"], "infer")])
def test_num_parts_above_the_voxel_count_is_refused_before_any_allocation(files, kind, tiny_phantoms, tmp_path):
    """Issue 7: num_parts [2, 4, 100000] passed validation and died allocating 88 GB."""
    workflow = _workflow(
        DISCOVERY, files, kind, dataset_dir=str(tiny_phantoms), output_dir=str(tmp_path / "out"),
        num_parts=[2, 4, 100000], spatial_size=[8, 8, 8],
    )  # fmt: skip
    with pytest.raises(RuntimeError) as error:
        workflow.initialize()
    assert "num_parts" in error_messages(error.value) and "512" in error_messages(error.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("spelling, expected", [("false", False), ("true", True), ("False", False), ("True", True)])
def test_normalize_consistency_means_what_the_command_line_says(spelling, expected, tiny_phantoms, tmp_path):
    """Issue 7: --normalize_consistency false trained with normalisation on (the string 'false' is truthy)."""
    workflow = _workflow(
        DISCOVERY, ["train.json"], "train", dataset_dir=str(tiny_phantoms), output_dir=str(tmp_path / "run"),
        normalize_consistency=spelling,
    )  # fmt: skip
    workflow.initialize()
    assert workflow.parser.get_parsed_content("loss").consistency.normalize is expected


def test_overwrite_replaces_the_earlier_inference_outputs(tiny_phantoms, tmp_path):
    """Issue 7: --overwrite left the earlier run's files beside the new ones."""
    out = tmp_path / "out"
    with claim_output_dir(out):  # an earlier run of ours
        (out / "old_volume_l3.nii.gz").write_bytes(b"an earlier run")
    workflow = _workflow(
        DISCOVERY, ["inference.json"], "infer", dataset_dir=str(tiny_phantoms), output_dir=str(out),
        overwrite="true", spatial_size=[24, 24, 24],
    )  # fmt: skip
    workflow.initialize()
    workflow.run()
    assert sorted(p.name for p in out.glob("*.nii.gz")) == ["phantom_005_image_l3.nii.gz"]


def test_a_truncated_checkpoint_is_named(tiny_phantoms, tmp_path):
    """Issue 7: a truncated checkpoint crashed without naming the file."""
    good = DISCOVERY / "models" / "model.pt"
    broken = tmp_path / "model.pt"
    broken.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    workflow = _workflow(
        DISCOVERY, ["inference.json"], "infer", dataset_dir=str(tiny_phantoms), output_dir=str(tmp_path / "out"),
        ckpt_path=str(broken),
    )  # fmt: skip
    workflow.initialize()
    with pytest.raises(RuntimeError) as error:
        workflow.parser.get_parsed_content("network")
    assert str(broken) in error_messages(error.value)
    torch.load(good, weights_only=True)  # the shipped file itself is intact

"""Failure modes that used to pass silently: resuming, output folders, empty splits, unreadable images, flags."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_support import error_messages
from ignite.engine import Engine, Events
from monai.networks.schedulers import DDPMScheduler
from monai.transforms import Compose, LoadImaged

from monai_ext.data.datalist import inference_items, load_datalist
from monai_ext.engines import BestPerLevel, ResumeFromLatest, SaveForResume, latest_checkpoint
from monai_ext.engines.handlers import epoch_checkpoints
from monai_ext.inferers import DiffusionSamplingInferer
from monai_ext.losses import ConsistencyLoss, DiscoveryLoss
from monai_ext.transforms import ReadImaged, SetSpatialShaped, read_image_and_labels

# ---------------------------------------------------------------- resuming from checkpoints


def test_latest_checkpoint_follows_the_epoch_number_not_the_file_time(tmp_path, caplog):
    for name in ("checkpoint_epoch=10.pt", "checkpoint_epoch=2.pt", "checkpoint_final_iteration=99.pt"):
        torch.save({}, tmp_path / name)
    later = (tmp_path / "checkpoint_epoch=10.pt").stat().st_mtime + 100
    for name in ("checkpoint_epoch=2.pt", "checkpoint_final_iteration=99.pt"):  # `touch` on the older files
        os.utime(tmp_path / name, (later, later))
    with caplog.at_level(logging.DEBUG, logger="monai_ext.engines.handlers"):
        assert latest_checkpoint(tmp_path) == str(tmp_path / "checkpoint_epoch=10.pt")  # not 2 (newer), not "2" > "10"
    assert [p.name for p in epoch_checkpoints(tmp_path)] == ["checkpoint_epoch=10.pt", "checkpoint_epoch=2.pt"]
    assert "checkpoint_final_iteration=99.pt" in caplog.text and "no epoch number" in caplog.text
    assert latest_checkpoint(tmp_path / "missing") is None


def _counting_run(folder: Path | None, max_epochs: int, resume: bool = False) -> tuple[list[int], list[float]]:
    """Train a one-weight model whose weight counts the iterations run; return the epochs run and the weight at
    the start (after any resume). Saves ``checkpoint_epoch=N.pt`` every epoch, keeping two."""
    net = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.zeros_(net.weight)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)

    def step(engine: Engine, batch: int) -> None:
        with torch.no_grad():
            net.weight += 1.0

    engine = Engine(step)
    objects = {"model": net, "optimizer": optimizer}
    if resume:
        ResumeFromLatest(folder, objects).attach(engine)
    else:
        SaveForResume(folder, objects, n_saved=2).attach(engine)
    epochs, start = [], []
    engine.add_event_handler(Events.STARTED, lambda _: start.append(float(net.weight.detach())))
    engine.add_event_handler(Events.EPOCH_STARTED, lambda e: epochs.append(e.state.epoch))
    engine.run([0], max_epochs=max_epochs)
    return epochs, start


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_resume_skips_an_unreadable_checkpoint_for_the_previous_one(tmp_path, caplog):
    _counting_run(tmp_path, max_epochs=2)
    assert sorted(p.name for p in tmp_path.glob("*.pt")) == ["checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"]
    _truncate(tmp_path / "checkpoint_epoch=2.pt")  # the run was killed while writing epoch 2
    with caplog.at_level(logging.WARNING, logger="monai_ext.engines.handlers"):
        epochs, start = _counting_run(tmp_path, max_epochs=3, resume=True)
    assert start == [1.0] and epochs == [2, 3], "did not resume from the intact epoch-1 checkpoint"
    warning = next(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "checkpoint_epoch=2.pt" in warning and "cannot be read" in warning


def test_resume_refuses_when_every_checkpoint_is_unreadable(tmp_path):
    _counting_run(tmp_path, max_epochs=2)
    for path in tmp_path.glob("checkpoint_epoch=*.pt"):
        _truncate(path)
    with pytest.raises(RuntimeError, match="cannot resume") as error:
        _counting_run(tmp_path, max_epochs=3, resume=True)
    assert "checkpoint_epoch=1.pt" in str(error.value) and "checkpoint_epoch=2.pt" in str(error.value)


def test_a_checkpoint_that_does_not_fit_names_its_file(tmp_path):
    other = torch.nn.Linear(3, 1)
    torch.save({"model": other.state_dict(), "optimizer": {}, "trainer": {}}, tmp_path / "checkpoint_epoch=1.pt")
    with pytest.raises(RuntimeError, match=r"could not resume training from checkpoint '.*checkpoint_epoch=1\.pt'"):
        _counting_run(tmp_path, max_epochs=2, resume=True)


def test_best_per_level_reads_a_command_line_direction():
    assert BestPerLevel(torch.nn.Linear(1, 1), ["val_l1"], "m.pt", higher_is_better="false").sign == -1.0
    with pytest.raises(ValueError, match="option 'higher_is_better'"):
        BestPerLevel(torch.nn.Linear(1, 1), ["val_l1"], "m.pt", higher_is_better="lower")


# ---------------------------------------------------------------- empty splits


def test_empty_splits_are_errors_that_name_file_and_split(tmp_path):
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": [{"image": "a.nii.gz"}], "validation": [], "test": []}))
    with pytest.raises(ValueError, match=r"split 'validation' of datalist '.*datalist\.json' is empty: training sel"):
        load_datalist(datalist, "validation")
    with pytest.raises(ValueError, match=r"split 'test' of datalist .* is empty: evaluation and inference"):
        inference_items(tmp_path, "test")
    assert load_datalist(datalist, "training") == [{"image": str(tmp_path / "a.nii.gz")}]


def test_a_record_without_image_names_the_datalist_and_the_record(tmp_path):
    """Issue 29, case 12: a record without 'image' ended in a KeyError naming neither."""
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"test": [{"image": "a.nii.gz"}, {"img": "b.nii.gz"}]}))
    with pytest.raises(ValueError, match=r"record 1 of split 'test' of datalist '.*datalist\.json' has no 'image'"):
        inference_items(tmp_path)


def test_inference_items_keep_only_the_image_and_the_optional_keys_present(tmp_path):
    records = [{"image": "a.nii.gz", "label": "a_l.nii.gz", "tissue": "t.nii.gz"}, {"image": "b.nii.gz"}]
    (tmp_path / "datalist.json").write_text(json.dumps({"training": records, "validation": records, "test": records}))
    items = inference_items(tmp_path, "test", optional_keys=["label"])
    assert items == [
        {"image": str(tmp_path / "a.nii.gz"), "label": str(tmp_path / "a_l.nii.gz")},
        {"image": str(tmp_path / "b.nii.gz")},
    ]
    assert inference_items(tmp_path, "test") == [{"image": str(tmp_path / n)} for n in ("a.nii.gz", "b.nii.gz")]


# ---------------------------------------------------------------- unreadable images


def test_a_truncated_nifti_names_its_key_and_file(tmp_path):
    image = tmp_path / "case_001.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(8**3, dtype=np.float32).reshape(8, 8, 8), np.eye(4)), str(image))
    item = {"image": str(image), "label": str(tmp_path / "case_001_label.nii.gz")}
    (tmp_path / "case_001_label.nii.gz").write_bytes(image.read_bytes())
    loaded = ReadImaged(keys=["image", "label"], image_only=True)(item)
    assert torch.equal(loaded["image"], LoadImaged(keys="image", image_only=True)(item)["image"])
    _truncate(tmp_path / "case_001_label.nii.gz")
    with pytest.raises(ValueError, match=r"'label' file '.*case_001_label\.nii\.gz' could not be read as an image"):
        ReadImaged(keys=["image", "label"], image_only=True)(item)
    with pytest.raises(ValueError) as error:
        ReadImaged(keys="label")(item)
    assert isinstance(error.value.__cause__, EOFError)  # the reader's own error stays chained


def test_a_channel_last_slice_gets_the_spatial_shape_of_its_prediction(tmp_path):
    """Regression: a 128 x 128 x 4 slice read and moved channel first keeps meta spatial_shape (128, 128, 4), and
    MONAI Label's Restored resized the 2D mask to its last two entries, (128, 4). SetSpatialShaped, last in the
    postprocessing, gives the image the prediction's spatial shape."""
    path = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4), np.float32), np.eye(4)), str(path))
    item = ReadImaged(keys="image", image_only=True)({"image": str(path)})
    item["image"] = torch.movedim(item["image"], -1, 0)
    assert tuple(item["image"].meta["spatial_shape"]) == (6, 5, 4)  # what MONAI leaves
    item["pred"] = torch.ones(1, 6, 5)
    fixed = SetSpatialShaped(keys="image", like="pred")(item)
    assert tuple(fixed["image"].meta["spatial_shape"]) == (6, 5)
    assert fixed["pred"] is item["pred"]


# ---------------------------------------------------------------- boolean options from the command line


def test_discovery_loss_reads_normalize_from_the_command_line():
    generator = torch.Generator().manual_seed(0)
    masks = [torch.softmax(torch.randn(2, 3, 6, 6, 6, generator=generator), dim=1)]
    image = 10.0 * torch.rand(2, 1, 6, 6, 6, generator=generator)  # variance far from 1: normalising matters

    def loss(normalize: bool | str) -> float:
        return float(DiscoveryLoss(lambda_f=0.0, lambda_inv=0.0, normalize=normalize)(masks, None, image, [None])[0])

    assert loss(True) != pytest.approx(loss(False))
    assert loss("false") == loss(False) and loss("False") == loss(False)
    assert loss("true") == loss(True)
    with pytest.raises(ValueError, match="option 'normalize' must be True or False, got 'maybe'"):
        DiscoveryLoss(normalize="maybe")
    with pytest.raises(ValueError, match="option 'normalize'"):
        ConsistencyLoss(normalize="maybe")


def test_sampling_inferer_reads_progress_from_the_command_line():
    scheduler = DDPMScheduler(num_train_timesteps=10)
    assert DiffusionSamplingInferer(scheduler, progress="false").progress is False
    assert DiffusionSamplingInferer(scheduler, progress="true").progress is True
    with pytest.raises(ValueError, match="option 'progress'"):
        DiffusionSamplingInferer(scheduler, progress="quiet")


def test_reading_keeps_only_the_image_and_the_labels_and_stacks_the_labels(tmp_path):
    """A record's other keys (a path the run never reads) are dropped; the label maps become one (L, ...) label."""
    volume = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    paths = {}
    for key in ("image", "label_l1", "label_l2", "flair"):
        paths[key] = str(tmp_path / f"{key}.nii.gz")
        nib.save(nib.Nifti1Image(volume, np.eye(4)), paths[key])
    record = {**paths, "noise_std": 0.1}
    read = Compose(read_image_and_labels(["label_l1", "label_l2"]))(record)
    assert sorted(read) == ["image", "label", "label_l1", "label_l2"] and read["label"].shape == (2, 2, 3, 4)
    assert sorted(Compose(read_image_and_labels())(record)) == ["image"]
    with pytest.raises(RuntimeError) as error:
        Compose(read_image_and_labels(["label_l3"]))(record)
    assert "label_l3" in error_messages(error.value)

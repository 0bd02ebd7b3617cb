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
import torch.distributed as dist
from bundle_support import error_messages
from ignite.engine import Engine, Events
from monai.networks.schedulers import DDPMScheduler
from monai.transforms import Compose, LoadImaged

from monai_ext.data.datalist import (
    RUN_MARKER,
    empty_folder,
    inference_items,
    load_datalist,
    prepare_output_dir,
    prepare_training_dir,
)
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


# ---------------------------------------------------------------- output folders


def _fill(folder: Path) -> None:
    (folder / "sub").mkdir(parents=True)
    (folder / "old.nii.gz").write_text("earlier run")
    (folder / "sub" / "old.csv").write_text("earlier run")


def test_overwrite_replaces_an_output_folder(tmp_path):
    out = tmp_path / "out"
    _fill(out)
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare_output_dir(out, overwrite="false")  # the command line's string, not a truthy value
    assert prepare_output_dir(out, overwrite="true") == out
    assert out.is_dir() and list(out.iterdir()) == []


def test_overwrite_never_empties_a_dataset_home_or_working_folder(tmp_path, monkeypatch):
    dataset = tmp_path / "data"
    _fill(dataset)
    (dataset / "datalist.json").write_text(json.dumps({"training": []}))
    with pytest.raises(ValueError, match=r"refusing to empty .* a dataset"):
        prepare_output_dir(dataset, overwrite=True)
    (dataset / "dataset.json").write_text(json.dumps({"generator": "monai_ext.data.phantoms", "seed": 0}))
    prepare_output_dir(dataset, overwrite=True)  # a generated dataset is made again from its seed
    assert list(dataset.iterdir()) == []

    work = tmp_path / "project" / "work"
    _fill(work)
    monkeypatch.chdir(work)
    for folder in (work, tmp_path / "project", Path(".")):
        with pytest.raises(ValueError, match="the working folder or a folder above it"):
            prepare_output_dir(folder, overwrite=True)
    home = tmp_path / "home"
    _fill(home)
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(ValueError, match="the home folder"):
        prepare_training_dir(home, overwrite=True)
    assert (work / "old.nii.gz").is_file() and (home / "sub" / "old.csv").is_file()


def test_the_file_system_root_is_never_emptied(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("tried to delete a file")

    monkeypatch.setattr("shutil.rmtree", fail)  # nothing can be deleted, even if the guard were broken
    monkeypatch.setattr(Path, "unlink", fail)
    with pytest.raises(ValueError, match="the file system root"):
        empty_folder(Path("/"))


def test_training_folder_is_marked_resumed_or_refused(tmp_path):
    out = tmp_path / "train"
    prepare_training_dir(out)
    marker = json.loads((out / RUN_MARKER).read_text())
    assert marker["owner"] == "monai-ext training run" and "versions" in marker
    torch.save({}, out / "checkpoint_epoch=3.pt")
    prepare_training_dir(out, overwrite="false")  # a run of ours: kept, training resumes from it
    assert (out / "checkpoint_epoch=3.pt").is_file()

    published = tmp_path / "models"
    published.mkdir()
    (published / "model.pt").write_bytes(b"weights")
    (published / "model_selection.json").write_text("{}")
    with pytest.raises(FileExistsError) as error:
        prepare_training_dir(published)
    message = str(error.value)
    assert str(published) in message and "model.pt, model_selection.json" in message
    assert "--overwrite true" in message and "output_dir" in message
    assert (published / "model.pt").read_bytes() == b"weights"

    prepare_training_dir(out, overwrite=True)  # start afresh: the old checkpoints go
    assert sorted(p.name for p in out.iterdir()) == [RUN_MARKER]


@pytest.fixture
def process_group(tmp_path):
    """A real one-process gloo group: rank 0 of torch.distributed."""
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'init'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_under_torch_distributed_rank_zero_prepares_and_hands_on_its_outcome(tmp_path, process_group, monkeypatch):
    handed_on = []

    def broadcast(objects: list, src: int) -> None:
        handed_on.append(list(objects))
        real_broadcast(objects, src=src)

    real_broadcast = dist.broadcast_object_list
    monkeypatch.setattr(dist, "broadcast_object_list", broadcast)
    prepare_training_dir(tmp_path / "fresh")
    assert (tmp_path / "fresh" / RUN_MARKER).is_file() and handed_on == [[None]]
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "model.pt").write_bytes(b"weights")
    with pytest.raises(FileExistsError, match="no monai-ext training run wrote"):
        prepare_training_dir(tmp_path / "foreign")
    assert isinstance(handed_on[1][0], FileExistsError), "rank 0 did not hand its error to the other ranks"


def test_under_torch_distributed_other_ranks_wait_and_touch_nothing(tmp_path, monkeypatch):
    def broadcast(objects: list, src: int) -> None:  # what rank 0 sends when the folder is refused
        assert src == 0 and objects == [None]
        objects[0] = FileExistsError("training output folder 'x' holds model.pt (from rank 0)")

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda *args: 1)
    monkeypatch.setattr(dist, "broadcast_object_list", broadcast)
    for prepare in (prepare_training_dir, prepare_output_dir):
        with pytest.raises(FileExistsError, match="from rank 0"):
            prepare(tmp_path / "out", overwrite=True)
        assert not (tmp_path / "out").exists(), "a rank other than 0 touched the file system"


# ---------------------------------------------------------------- empty splits


def test_empty_splits_are_errors_that_name_file_and_split(tmp_path):
    datalist = tmp_path / "datalist.json"
    datalist.write_text(json.dumps({"training": [{"image": "a.nii.gz"}], "validation": [], "test": []}))
    with pytest.raises(ValueError, match=r"split 'validation' of datalist '.*datalist\.json' is empty: training sel"):
        load_datalist(datalist, "validation")
    with pytest.raises(ValueError, match=r"split 'test' of datalist .* is empty: evaluation and inference"):
        inference_items(tmp_path, "test")
    assert load_datalist(datalist, "training") == [{"image": str(tmp_path / "a.nii.gz")}]


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

"""Output folders (issue 29, cases 1, 10, 11 and 14): a run never removes a file it did not record, never writes into
or over its inputs, and never shares a folder with a run that is still writing there."""

from __future__ import annotations

import json
import multiprocessing
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from ignite.engine import Engine

from monai_ext.data.output_folder import (
    LEGACY_TRAINING_MARKER,
    MANIFEST,
    OutputFolder,
    claim,
    claim_output_dir,
    prepare_output_dir,
    prepare_training_dir,
    record_outputs,
)
from monai_ext.data.phantoms import make_phantoms
from monai_ext.engines import BestPerLevel, ResumeFromLatest, SaveForResume


def _recorded(folder: Path) -> set[str]:
    lines = (folder / MANIFEST).read_text().splitlines()
    return {json.loads(line)["file"] for line in lines if '"file"' in line}


def _a_run_wrote(folder: Path, *names: str, kind: str = "outputs") -> None:
    """A finished run of ours that wrote ``names`` into ``folder``."""
    claimed = claim(folder, kind=kind)
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("written by a run")
    claimed.release()


def _user_folder(folder: Path) -> Path:
    folder.mkdir(parents=True)
    for name in ("im0.png", "im1.png"):
        (folder / name).write_bytes(b"\x89PNG the user's image")
    (folder / "notes.txt").write_text("the user's notes")
    return folder


def _untouched(folder: Path) -> bool:
    return sorted(p.name for p in folder.iterdir()) == ["im0.png", "im1.png", "notes.txt"]


# ---------------------------------------------------------------- case 1: inputs are never removed


@pytest.mark.parametrize("overwrite", [True, False])
def test_an_output_folder_that_is_the_input_folder_is_refused_before_anything_is_touched(tmp_path, overwrite):
    """Issue 29, case 1: --output_dir imgs --dataset_dir imgs --overwrite true emptied imgs."""
    images = _user_folder(tmp_path / "imgs")
    with pytest.raises(ValueError, match=r"output folder '.*imgs' is the input '.*imgs'"):
        prepare_output_dir(images, overwrite, [images])
    assert _untouched(images) and not (images / MANIFEST).exists()


def test_an_output_folder_above_the_dataset_is_refused(tmp_path):
    images = _user_folder(tmp_path / "data" / "imgs")
    for out in (tmp_path / "data", tmp_path):
        with pytest.raises(ValueError, match="contains the input"):
            prepare_training_dir(out, True, [images])
    assert _untouched(images)


def test_an_output_folder_holding_a_file_the_datalist_names_is_refused(tmp_path):
    """A datalist may name images outside its own folder: the folder holding them is an input too."""
    elsewhere = _user_folder(tmp_path / "scans")
    dataset = tmp_path / "dataset"
    dataset.mkdir()
    (dataset / "datalist.json").write_text(json.dumps({"test": [{"image": str(elsewhere / "im0.png")}]}))
    with pytest.raises(ValueError, match=r"contains the input '.*im0\.png'"):
        prepare_output_dir(elsewhere, True, [dataset, None])
    assert _untouched(elsewhere)


def test_the_checkpoint_a_run_reads_is_an_input(tmp_path):
    _a_run_wrote(tmp_path / "train", "model.pt", kind="training")
    with pytest.raises(ValueError, match=r"contains the input '.*model\.pt'"):
        prepare_output_dir(tmp_path / "train", True, [tmp_path / "train" / "model.pt"])
    assert (tmp_path / "train" / "model.pt").is_file()


def test_overwrite_removes_only_what_runs_recorded(tmp_path):
    out = tmp_path / "out"
    _a_run_wrote(out, "a_seg.nii.gz", "sub/b_seg.nii.gz")
    assert _recorded(out) == {"a_seg.nii.gz", "sub/b_seg.nii.gz"}
    (out / "notes.txt").write_text("the user's notes, put there after the run")
    with pytest.raises(
        FileExistsError, match=r"holds notes\.txt, which no monai-ext run recorded.*nothing was removed"
    ):
        prepare_output_dir(out, overwrite="true")
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        MANIFEST, "a_seg.nii.gz", "notes.txt", "sub/b_seg.nii.gz"
    ]  # fmt: skip
    (out / "notes.txt").unlink()
    with pytest.raises(FileExistsError, match="--overwrite true"):
        prepare_output_dir(out, overwrite="false")  # the command line's string, not a truthy value
    prepare_output_dir(out, overwrite="true")
    assert [p.name for p in out.iterdir()] == [MANIFEST]  # the emptied sub-folder went too


def test_a_folder_of_user_files_is_never_emptied(tmp_path, monkeypatch):
    """The old guard refused a few named folders (root, home, working folder); now no unrecorded file is removed."""
    folder = _user_folder(tmp_path / "work")
    monkeypatch.chdir(folder)
    for target in (folder, Path(".")):
        with pytest.raises(FileExistsError, match="no monai-ext run recorded"):
            prepare_output_dir(target, overwrite=True)
    assert _untouched(folder)


def test_a_recorded_name_that_leaves_the_folder_is_ignored(tmp_path):
    """An edited manifest cannot make overwrite delete a file outside the folder."""
    victim = tmp_path / "victim.txt"
    victim.write_text("outside")
    out = tmp_path / "out"
    _a_run_wrote(out, "a.nii.gz")
    with open(out / MANIFEST, "a") as manifest:
        manifest.write(json.dumps({"file": "../victim.txt"}) + "\n" + json.dumps({"file": str(victim)}) + "\n")
    prepare_output_dir(out, overwrite=True)
    assert victim.read_text() == "outside" and not (out / "a.nii.gz").exists()


def test_a_symbolic_link_is_removed_never_followed(tmp_path):
    target = _user_folder(tmp_path / "imgs")
    out = tmp_path / "out"
    claimed = claim(out)
    (out / "link").symlink_to(target, target_is_directory=True)
    claimed.release()
    prepare_output_dir(out, overwrite=True)
    assert not (out / "link").exists() and _untouched(target)


def test_generated_data_is_recorded_and_can_be_made_again(tmp_path):
    folder = tmp_path / "phantoms"
    make_phantoms(str(folder), n=2, size=24, workers=1)
    assert "datalist.json" in _recorded(folder)
    with pytest.raises(FileExistsError, match="--overwrite"):
        make_phantoms(str(folder), n=2, size=24, workers=1)
    make_phantoms(str(folder), n=2, size=24, workers=1, overwrite=True)
    assert (folder / "datalist.json").is_file()


# ---------------------------------------------------------------- training folders


def test_a_training_folder_is_resumed_or_replaced_and_a_foreign_one_refused(tmp_path):
    out = tmp_path / "train"
    _a_run_wrote(out, "checkpoint_epoch=3.pt", kind="training")
    prepare_training_dir(out, overwrite="false")  # a run of ours: kept, training resumes from it
    assert (out / "checkpoint_epoch=3.pt").is_file()

    published = tmp_path / "models"
    published.mkdir()
    (published / "model.pt").write_bytes(b"weights")
    (published / "model_selection.json").write_text("{}")
    with pytest.raises(FileExistsError) as error:
        prepare_training_dir(published, overwrite=True)
    assert "model.pt, model_selection.json" in str(error.value) and str(published) in str(error.value)
    assert (published / "model.pt").read_bytes() == b"weights"

    prepare_training_dir(out, overwrite=True)  # start afresh: the old checkpoints go
    assert [p.name for p in out.iterdir()] == [MANIFEST]


def test_an_inference_folder_is_not_resumed_as_training(tmp_path):
    out = tmp_path / "out"
    _a_run_wrote(out, "a_seg.nii.gz")
    with pytest.raises(FileExistsError, match="earlier run"):
        prepare_training_dir(out)


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_training_folder_is_never_replaced_by_other_outputs(tmp_path, overwrite):
    """Inference into runs/train with --overwrite true would have removed the training's model.pt."""
    out = tmp_path / "train"
    _a_run_wrote(out, "model.pt", "checkpoint_epoch=2.pt", kind="training")
    with pytest.raises(FileExistsError, match=r"holds a training run \(checkpoint_epoch=2\.pt, model\.pt\)"):
        prepare_output_dir(out, overwrite)
    assert (out / "model.pt").is_file()


def test_a_training_folder_of_an_earlier_version_is_still_resumed(tmp_path):
    out = tmp_path / "train"
    out.mkdir()
    (out / LEGACY_TRAINING_MARKER).write_text("{}")
    torch.save({}, out / "checkpoint_epoch=1.pt")
    (out / "model.pt").write_text("w")
    prepare_training_dir(out)
    assert (out / "checkpoint_epoch=1.pt").is_file()
    prepare_training_dir(out, overwrite=True)
    assert [p.name for p in out.iterdir()] == [MANIFEST]


def test_only_what_an_earlier_version_trained_is_adopted_from_its_folder(tmp_path):
    out = tmp_path / "train"
    out.mkdir()
    (out / LEGACY_TRAINING_MARKER).write_text("{}")
    (out / "model.pt").write_text("w")
    (out / "my_thesis_figure.png").write_text("the user's")
    prepare_training_dir(out)  # resumes
    with pytest.raises(FileExistsError, match=r"holds my_thesis_figure\.png, which no monai-ext run recorded"):
        prepare_training_dir(out, overwrite=True)
    assert (out / "my_thesis_figure.png").is_file() and (out / "model.pt").is_file()


def test_files_present_when_training_resumes_but_never_recorded_stay_unrecorded(tmp_path):
    out = tmp_path / "train"
    _a_run_wrote(out, "checkpoint_epoch=1.pt", kind="training")
    (out / "mine.txt").write_text("the user's")
    claimed = claim(out, kind="training")
    (out / "checkpoint_epoch=2.pt").write_text("new")
    claimed.release()
    assert _recorded(out) == {"checkpoint_epoch=1.pt", "checkpoint_epoch=2.pt"}


def _epochs(folder: Path, max_epochs: int, resume: bool) -> None:
    net = torch.nn.Linear(1, 1)
    objects = {"model": net, "optimizer": torch.optim.SGD(net.parameters(), lr=0.1)}
    engine = Engine(lambda engine, batch: None)
    if resume:
        ResumeFromLatest(folder, objects).attach(engine)
    SaveForResume(folder, objects, n_saved=1).attach(engine)
    engine.run([0], max_epochs=max_epochs)


def test_resuming_keeps_one_checkpoint_not_one_per_run(tmp_path):
    """Issue 29, case 11: each resume left the previous run's checkpoint_epoch=N.pt behind."""
    out = tmp_path / "train"
    prepare_training_dir(out)
    _epochs(out, 2, resume=False)
    prepare_training_dir(out)  # the next run of the same process resumes
    _epochs(out, 4, resume=True)
    assert sorted(p.name for p in out.glob("checkpoint*.pt")) == ["checkpoint_epoch=4.pt"]
    assert "checkpoint_epoch=4.pt" in _recorded(out)


def test_a_checkpoint_nobody_recorded_is_not_removed(tmp_path):
    out = tmp_path / "train"
    out.mkdir()
    torch.save({}, out / "checkpoint_epoch=0.pt")  # not in a claimed folder: not ours to remove
    _epochs(out, 2, resume=False)
    assert sorted(p.name for p in out.glob("checkpoint*.pt")) == ["checkpoint_epoch=0.pt", "checkpoint_epoch=2.pt"]


def test_model_selection_is_saved_atomically_with_its_settings(tmp_path, monkeypatch):
    """Issue 29, case 11: a kill while writing model.pt left a truncated file."""
    net = torch.nn.Linear(2, 1)
    out = tmp_path / "train"
    prepare_training_dir(out)
    best = BestPerLevel(net, ["val_l1"], out / "model.pt", higher_is_better=False, settings={"spatial_size": (8, 8)})
    engine = Engine(lambda engine, batch: None)
    engine.state.metrics = {"val_l1": 1.0}
    engine.state.epoch = 1
    best(engine)
    saved = (out / "model.pt").read_bytes()
    assert json.loads((out / "model.json").read_text())["settings"] == {"spatial_size": [8, 8]}
    assert {"model.pt", "model.json", "model_selection.json"} <= _recorded(out)

    def killed(obj, file, *args, **kwargs):
        file.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    engine.state.metrics, engine.state.epoch = {"val_l1": 0.5}, 2
    with pytest.raises(KeyboardInterrupt):
        best(engine)
    assert (out / "model.pt").read_bytes() == saved
    assert sorted(p.name for p in out.iterdir() if p.name.endswith(".tmp")) == []


def test_resuming_with_a_truncated_model_names_the_file(tmp_path):
    out = tmp_path / "train"
    (out / "model.pt").parent.mkdir()
    (out / "model.pt").write_bytes(b"PK truncated")
    (out / "model_selection.json").write_text(json.dumps({"metrics": ["val_l1"], "best": [1.0], "epochs": [1]}))
    torch.save({}, out / "checkpoint_epoch=1.pt")
    best = BestPerLevel(torch.nn.Linear(2, 1), ["val_l1"], out / "model.pt")
    with pytest.raises(RuntimeError, match=r"'.*model\.pt' cannot be read"):
        best.attach(Engine(lambda engine, batch: None))


# ---------------------------------------------------------------- case 10: one folder, one run at a time

HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from monai_ext.data.output_folder import claim
    claim(sys.argv[1])
    (Path(sys.argv[1]) / "a_seg.nii.gz").write_text("first run")
    print("claimed", flush=True)
    if sys.argv[2] == "kill":
        (Path(sys.argv[1]) / "b_seg.nii.gz").write_text("never recorded")
        import os, signal
        os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(60)
    """
)


def _holder(out: Path, mode: str) -> subprocess.Popen:
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), mode], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "claimed"
    return process


def test_a_second_run_into_a_folder_being_written_is_refused(tmp_path):
    """Issue 29, case 10: two inferences into one empty folder both passed the emptiness check."""
    out = tmp_path / "out"
    first = _holder(out, "hold")
    try:
        for overwrite in (False, True):
            with pytest.raises(FileExistsError, match=rf"being written by another run \(pid {first.pid}"):
                prepare_output_dir(out, overwrite)
        assert (out / "a_seg.nii.gz").read_text() == "first run"
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait()


def test_a_forked_child_does_not_keep_the_folder_locked(tmp_path):
    """A DataLoader worker or a process pool forked while a folder is claimed inherits the lock's file; the folder
    must be free again once the claiming process releases it, while the child still runs."""
    out = tmp_path / "out"
    first = claim(out)
    context = multiprocessing.get_context("fork")
    started, stop = context.Event(), context.Event()
    child = context.Process(target=_wait, args=(started, stop))
    child.start()
    try:
        assert started.wait(30)
        first.release()
        claim(out, overwrite=True).release()  # free, although the child is alive
    finally:
        stop.set()
        child.join(30)


def _wait(started, stop) -> None:
    started.set()
    stop.wait(30)


def test_the_lock_is_taken_before_the_folder_is_checked(tmp_path):
    """Two claims that both found the folder empty: the second one to lock is refused."""
    out = tmp_path / "out"
    first = claim(out)
    try:
        with pytest.raises(FileExistsError, match="being written by another run"):
            OutputFolder(out).claim()
    finally:
        first.release()


def test_a_killed_run_frees_the_folder_and_leaves_its_last_files_unrecorded(tmp_path):
    out = tmp_path / "out"
    killed = _holder(out, "kill")
    killed.wait()
    assert killed.returncode == -signal.SIGKILL
    with pytest.raises(FileExistsError, match=r"holds a_seg\.nii\.gz, b_seg\.nii\.gz, which no monai-ext run"):
        prepare_output_dir(out, overwrite=True)
    assert (out / "b_seg.nii.gz").is_file()


def test_every_file_is_recorded_when_the_process_ends_with_an_error(tmp_path):
    out = tmp_path / "out"
    script = f"from monai_ext.data.output_folder import claim\nclaim({str(out)!r})\n"
    script += f"open({str(out / 'x.nii.gz')!r}, 'w').write('x')\nraise ValueError('bad input')\n"
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert run.returncode == 1 and "bad input" in run.stderr
    assert _recorded(out) == {"x.nii.gz"}
    prepare_output_dir(out, overwrite=True)
    assert [p.name for p in out.iterdir()] == [MANIFEST]


def test_record_outputs_outside_a_claimed_folder_does_nothing(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    record_outputs(tmp_path / "a.txt")
    assert not (tmp_path / MANIFEST).exists()


# ---------------------------------------------------------------- case 14: MONAI's executed config


@pytest.mark.parametrize(
    "executed_config",
    [
        "{out}/config_20261206_120000.json",  # output_dir given as an expression
        "{out} + '/config_20261206_120000.json'",  # MONAI's value when output_dir is given as a plain path
    ],
)
def test_the_config_monai_tracking_writes_before_the_run_is_taken_as_the_runs(tmp_path, executed_config):
    """Issue 29, case 14: --tracking mlflow writes config_<timestamp>.json into output_dir before initialize, and
    the guard refused the folder as not written by monai-ext."""
    out = tmp_path / "train"
    out.mkdir()
    (out / "config_20261206_120000.json").write_text("{}")
    prepare_training_dir(out, False, [], executed_config.format(out=out))
    (out / "model.pt").write_text("w")
    record_outputs(out)
    assert _recorded(out) == {"config_20261206_120000.json", "model.pt"}
    (out / "config_20261206_130000.json").write_text("{}")  # the next tracked run's
    prepare_training_dir(out, True, [], f"{out}/config_20261206_130000.json")
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "config_20261206_130000.json"]


# ---------------------------------------------------------------- torch.distributed


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
    assert (tmp_path / "fresh" / MANIFEST).is_file() and handed_on == [[None]]
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "model.pt").write_bytes(b"weights")
    with pytest.raises(FileExistsError, match="no monai-ext run recorded"):
        prepare_training_dir(tmp_path / "foreign")
    assert isinstance(handed_on[1][0], FileExistsError), "rank 0 did not hand its error to the other ranks"


def test_under_torch_distributed_other_ranks_wait_and_touch_nothing(tmp_path, monkeypatch):
    def broadcast(objects: list, src: int) -> None:  # what rank 0 sends when the folder is refused
        assert src == 0 and objects == [None]
        objects[0] = FileExistsError("output folder 'x' holds model.pt (from rank 0)")

    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda *args: 1)
    monkeypatch.setattr(dist, "broadcast_object_list", broadcast)
    for prepare in (prepare_training_dir, prepare_output_dir):
        with pytest.raises(FileExistsError, match="from rank 0"):
            prepare(tmp_path / "out", overwrite=True)
        assert not (tmp_path / "out").exists(), "a rank other than 0 touched the file system"


def test_claim_output_dir_releases_the_folder(tmp_path):
    with claim_output_dir(tmp_path / "out") as folder:
        (folder / "a.txt").write_text("a")
    assert _recorded(tmp_path / "out") == {"a.txt"}
    again = claim(tmp_path / "out", overwrite=True)  # free again, in this process or any other
    again.release()

"""The diffusion_pretraining bundle end to end on a tiny network: train, resume, evaluate, sample."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_support import bundle_workflow
from ignite.engine import Events
from monai.bundle import ConfigParser, ConfigWorkflow

from monai_ext.bundle import require_file, resolve_bundle_root
from monai_ext.data.output_folder import prepare_training_dir
from monai_ext.data.phantoms import make_phantoms
from monai_ext.engines import latest_checkpoint
from monai_ext.inferers.diffusion import noise_datalist

BUNDLE = Path(__file__).resolve().parents[1] / "bundles" / "diffusion_pretraining"
CONFIGS = BUNDLE / "configs"
TRAIN = str(CONFIGS / "train.json")
EVALUATE = str(CONFIGS / "evaluate.json")
INFERENCE = str(CONFIGS / "inference.json")
TRAIN_PAPER = str(CONFIGS / "train_paper.json")
SIZE = [16, 16, 16]

# a network small enough for seconds per run; norm_num_groups must divide every channel count
TINY = {
    "bundle_root": str(BUNDLE),
    "image_size": SIZE,
    "network_def#channels": [8, 8, 16],
    "network_def#attention_levels": [False, False, False],
    "network_def#num_res_blocks": 1,
    "network_def#norm_num_groups": 8,
}
TINY_TRAIN = {**TINY, "crop_size": SIZE, "num_crops": 1, "batch_size": 1, "val_interval": 1}


def workflow(config_file: str | list[str], workflow_type: str, **override) -> ConfigWorkflow:
    """An initialized workflow with this bundle's metadata and logging config."""
    return bundle_workflow(CONFIGS, config_file, workflow_type, **override)


def root_cause(error: BaseException) -> BaseException:
    """MONAI wraps errors of config expressions in RuntimeError; return the original one."""
    while error.__cause__ is not None:
        error = error.__cause__
    return error


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three 24^3 phantoms (one per split) and one training epoch of the tiny network, with validation."""
    root = tmp_path_factory.mktemp("diffusion_pretraining")
    data = root / "phantoms"
    make_phantoms(str(data), variant="regular", n=3, seed=0, size=24, workers=1)
    out = root / "train"
    wf = workflow(TRAIN, "train", dataset_dir=str(data), output_dir=str(out), max_epochs=1, **TINY_TRAIN)
    assert wf.check_properties() == []
    wf.run()
    wf.finalize()
    return {"root": root, "data": data, "train": out}


def test_train_writes_resume_checkpoint_and_model(trained):
    checkpoints = sorted(p.name for p in trained["train"].glob("checkpoint*.pt"))
    assert checkpoints == ["checkpoint_epoch=1.pt"]
    state = torch.load(trained["train"] / "checkpoint_epoch=1.pt", weights_only=True)
    assert {"model", "optimizer", "trainer"} <= set(state)
    assert state["trainer"]["iteration"] == state["trainer"]["epoch_length"] == 1  # Ignite stores no epoch
    # the best-validation weights are a plain state dict, the file published as models/model.pt
    weights = torch.load(trained["train"] / "model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in weights.values())
    assert any(k.startswith("conv_in") for k in weights)


def test_train_resumes_from_latest_checkpoint(trained, tmp_path):
    out = prepare_training_dir(tmp_path / "resume")  # a folder a training run owns
    (out / "checkpoint_epoch=1.pt").write_bytes((trained["train"] / "checkpoint_epoch=1.pt").read_bytes())
    wf = workflow(TRAIN, "train", dataset_dir=str(trained["data"]), output_dir=str(out), max_epochs=2, **TINY_TRAIN)
    epochs_run = []
    wf.trainer.add_event_handler(Events.EPOCH_COMPLETED, lambda engine: epochs_run.append(engine.state.epoch))
    wf.run()
    assert epochs_run == [2], "training restarted from scratch instead of resuming after epoch 1"
    state = torch.load(out / "checkpoint_epoch=2.pt", weights_only=True)
    assert state["trainer"]["iteration"] == 2 * state["trainer"]["epoch_length"] == 2
    assert latest_checkpoint(out) == str(out / "checkpoint_epoch=2.pt")  # what the next run resumes from


def test_evaluate_reports_one_l1_per_timestep(trained, tmp_path):
    out = tmp_path / "evaluate"
    override = {**TINY, "dataset_dir": str(trained["data"]), "output_dir": str(out)}
    wf = workflow([TRAIN, EVALUATE], "train", ckpt_path=str(trained["train"] / "model.pt"), **override)
    assert wf.check_properties() == []
    wf.run()
    report = json.loads((out / "metrics.json").read_text())
    assert report["split"] == "test"
    metrics = report["metrics"]
    assert set(metrics) == {"val_denoising_l1"} | {f"val_denoising_l1_t{t}" for t in (25, 100, 200)}
    assert all(np.isfinite(v) and 0 < v < 2 for v in metrics.values())
    per_t = [metrics[f"val_denoising_l1_t{t}"] for t in (25, 100, 200)]
    assert metrics["val_denoising_l1"] == pytest.approx(np.mean(per_t), rel=1e-5)
    saved = dict(line.split(",") for line in (out / "metrics.csv").read_text().splitlines())
    assert float(saved["val_denoising_l1_t25"]) == pytest.approx(metrics["val_denoising_l1_t25"])
    raw = (out / "val_denoising_l1_t100_raw.csv").read_text().splitlines()
    assert len(raw) == 2 and "phantom_002_image.nii.gz" in raw[1]  # one test volume, named


def test_inference_writes_samples(trained, tmp_path):
    out = tmp_path / "samples"
    override = {"ckpt_path": str(trained["train"] / "model.pt"), "output_dir": str(out)}
    wf = workflow(INFERENCE, "infer", num_samples=1, num_inference_steps=2, progress=False, **TINY, **override)
    assert wf.check_properties() == []
    wf.run()
    files = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))  # but the run's manifest
    assert files == ["sample_000.nii.gz"]
    image = np.asarray(nib.load(out / files[0]).dataobj)
    assert image.shape == tuple(SIZE)
    assert np.isfinite(image).all() and image.min() >= 0.0 and image.max() <= 1.0
    # a second run does not write into the now non-empty folder unless told to
    with pytest.raises(RuntimeError) as error:
        workflow(INFERENCE, "infer", **TINY, **override)
    assert isinstance(root_cause(error.value), FileExistsError)
    workflow(INFERENCE, "infer", overwrite=True, **TINY, **override)


def test_missing_checkpoint_names_file_and_command(tmp_path):
    missing = tmp_path / "models" / "model.pt"
    out = tmp_path / "samples"
    for config in (INFERENCE, [TRAIN, EVALUATE]):
        with pytest.raises(RuntimeError) as error:
            workflow(config, "infer", ckpt_path=str(missing), output_dir=str(out), **TINY)
        cause = root_cause(error.value)
        assert isinstance(cause, FileNotFoundError)
        assert str(missing) in str(cause)
        assert "configs/train.json" in str(cause) and "models/model.pt" in str(cause)
        assert not out.exists(), "the output folder must not be created before the checkpoint is found"


def test_checkpoint_of_another_network_is_named(tmp_path):
    wrong = tmp_path / "model.pt"
    torch.save({"not_a_unet.weight": torch.zeros(1)}, wrong)
    for index, config in enumerate((INFERENCE, [TRAIN, EVALUATE])):
        with pytest.raises(RuntimeError) as error:
            workflow(config, "infer", ckpt_path=str(wrong), output_dir=str(tmp_path / f"out{index}"), **TINY).run()
        messages = []
        cause: BaseException | None = error.value
        while cause is not None:
            messages.append(str(cause))
            cause = cause.__cause__
        assert any(f"checkpoint '{wrong}' does not fit the configured DiffusionModelUNet" in m for m in messages)


def test_default_checkpoint_path_is_bundle_models():
    for config in (INFERENCE, [TRAIN, EVALUATE]):
        parser = ConfigParser()
        parser.read_config(config)
        parser["bundle_root"] = str(BUNDLE)
        assert parser.get_parsed_content("ckpt_path") == str(BUNDLE) + "/models/model.pt"


def test_paper_setting_layers_on_train_and_inference():
    expected = {
        "channels": [64, 128, 256, 512],
        "attention_levels": [False, False, False, True],
        "num_head_channels": 64,
        "num_res_blocks": 2,
        "norm_num_groups": 32,
    }
    for base in (TRAIN, INFERENCE):
        parser = ConfigParser()
        parser.read_config([base, TRAIN_PAPER])
        parser["bundle_root"] = str(BUNDLE)
        network = {k: parser[f"network_def#{k}"] for k in expected}
        assert network == expected
        assert parser.get_parsed_content("image_size") == [64, 64, 64]
        assert parser.get_parsed_content("num_train_timesteps") == 250
        assert parser["scheduler#schedule"] == "cosine" and parser["scheduler#prediction_type"] == "sample"
    parser = ConfigParser()
    parser.read_config([TRAIN, TRAIN_PAPER])
    parser["bundle_root"] = str(BUNDLE)
    assert parser.get_parsed_content("crop_size") == [64, 64, 64]
    assert parser["num_crops"] == 1 and parser["batch_size"] == 4 and parser["learning_rate"] == 1e-4
    assert parser["max_epochs"] * 80 // parser["batch_size"] == 50_000  # 50k iterations on 80 training volumes
    assert parser.get_parsed_content("output_dir") != str(BUNDLE) + "/runs/train"  # never resumes the CPU recipe


def test_inference_scheduler_matches_training():
    train, infer = ConfigParser(), ConfigParser()
    train.read_config(TRAIN)
    infer.read_config(INFERENCE)
    assert infer["scheduler#_target_"].endswith("DDIMScheduler")
    for key in ("schedule", "prediction_type"):
        assert infer[f"scheduler#{key}"] == train[f"scheduler#{key}"]
    assert infer["num_train_timesteps"] == train["num_train_timesteps"]
    assert infer["network_def"] == train["network_def"]
    assert infer["image_size"] == train["image_size"]


def test_noise_datalist_is_seeded_per_sample():
    first = noise_datalist(3, [1, 4, 4, 4], seed=5)
    again = noise_datalist(1, [1, 4, 4, 4], seed=5)
    assert [item["image"].meta["filename_or_obj"] for item in first] == ["sample_000", "sample_001", "sample_002"]
    assert torch.equal(first[0]["image"], again[0]["image"])
    assert not torch.equal(first[0]["image"], first[1]["image"])
    with pytest.raises(ValueError, match="num_samples"):
        noise_datalist(0, [1, 4, 4, 4])
    with pytest.raises(ValueError, match="shape"):
        noise_datalist(1, [4])


def test_require_file(tmp_path):
    present = tmp_path / "model.pt"
    present.write_bytes(b"x")
    assert require_file(present, "make it") == str(present)
    with pytest.raises(FileNotFoundError, match="run the trainer"):
        require_file(tmp_path / "absent.pt", "run the trainer")
    with pytest.raises(ValueError, match="how_to_make"):
        require_file(present, "")


def test_bundle_root_from_repository_or_own_folder_only(monkeypatch):
    monkeypatch.chdir(BUNDLE.parents[1])
    assert resolve_bundle_root("diffusion_pretraining") == str(Path("bundles") / "diffusion_pretraining")
    monkeypatch.chdir(BUNDLE)
    assert resolve_bundle_root("diffusion_pretraining") == "."
    with pytest.raises(FileNotFoundError, match="cannot find bundle 'structure_discovery'"):
        resolve_bundle_root("structure_discovery")  # another bundle's folder is not this bundle


def test_bundle_root_of_a_copy_under_another_name(monkeypatch, tmp_path):
    """Issue 29, case 15: an unzipped download renamed structure_discovery_v0.4.0 or 'my bundle' did not run from
    inside itself without --bundle_root."""
    for folder in ("diffusion_pretraining_v0.4.0", "my bundle"):
        shutil.copytree(BUNDLE / "configs", tmp_path / folder / "configs")
        monkeypatch.chdir(tmp_path / folder)
        assert resolve_bundle_root("diffusion_pretraining") == "."
        with pytest.raises(FileNotFoundError, match="cannot find bundle 'cuts'"):
            resolve_bundle_root("cuts")


def test_brain_config_pretrains_on_flair_alone(tiny_brains, tmp_path):
    """configs/brain.json reads datalist_flair.json: one-channel FLAIR volumes, whose records also carry the
    label keys the diffusion model never reads (they once collided with its validation copy of the image)."""
    out = tmp_path / "train"
    wf = workflow(
        [TRAIN, str(CONFIGS / "brain.json")], "train", dataset_dir=str(tiny_brains), output_dir=str(out),
        max_epochs=1, **TINY_TRAIN,
    )  # fmt: skip
    assert wf.parser.get_parsed_content("datalist") == str(tiny_brains / "datalist_flair.json")
    wf.run()
    wf.finalize()
    assert (out / "model.pt").is_file()
    batch = wf.parser.get_parsed_content("validate#dataset")[0]
    assert sorted(batch) == ["image", "label"] and batch["image"].shape == (1, *SIZE)
    assert torch.equal(batch["image"], batch["label"]), "validation compares the model's output with the image"

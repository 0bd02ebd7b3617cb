"""The structure_discovery bundle's configs run end to end on a tiny setting (24^3 phantoms, tiny networks)."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from bundle_support import error_messages
from ignite.engine import Events
from monai.bundle import ConfigParser, ConfigWorkflow

from monai_ext.baselines import kmeans_segment
from monai_ext.bundle import bundle_component, merge_denoiser
from monai_ext.metrics import matched_dice
from monai_ext.networks import DiffusionDenoiser

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "bundles" / "structure_discovery"
CONFIGS = BUNDLE / "configs"
TINY_DIFFUSION = {
    "network_def#channels": [8, 8, 16],
    "network_def#num_res_blocks": 1,
    "network_def#norm_num_groups": 8,
    "image_size": [16, 16, 16],
}
TINY = {
    "spatial_size": [24, 24, 24],
    "network_def#channels": [4, 8, 8],
    "network_def#strides": [1, 2],
    "batch_size": 2,
    "feature_cache_draws": 1,
}
# the trained fixture's schedule: 6 warm-start epochs then 2 of the objective, at a rate that makes the tiny network's
# 8 parts confident enough for the merged levels (a merged part's probability is the sum of its members') to hold
# more than one part
FIXTURE_SCHEDULE = {"max_epochs": 8, "learning_rate": 0.03}
# the paper's hierarchy: three levels trained, none merged (configs/paper.json)
TRAINED_LEVELS = {"num_parts": [2, 4, 8], "merged_parts": [], "merge_by": "image", "feature_stages": [1, 2, 3]}


@pytest.fixture(scope="module")
def diffusion(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A tiny diffusion configuration layered on the real bundle's train.json, and random weights for it."""
    folder = tmp_path_factory.mktemp("diffusion")
    override = folder / "tiny.json"
    override.write_text(json.dumps(TINY_DIFFUSION))
    configs = ["configs/diffusion.json", str(override)]
    torch.manual_seed(0)
    net = bundle_component(str(BUNDLE), "network_def", configs)
    for parameter in net.out.parameters():  # MONAI zero-initialises the output layer: the x0 prediction
        torch.nn.init.normal_(parameter, std=0.1)  # (x0 + k-means baseline) would be constant
    ckpt = folder / "model.pt"
    torch.save(net.state_dict(), ckpt)
    return {"diffusion_configs": configs, "diffusion_ckpt": str(ckpt)}


def _workflow(config_files, workflow_type: str, **overrides) -> ConfigWorkflow:
    files = [str(CONFIGS / f) for f in config_files]
    workflow = ConfigWorkflow(
        config_file=files if len(files) > 1 else files[0],
        workflow_type=workflow_type,
        meta_file=str(CONFIGS / "metadata.json"),
        logging_file=str(CONFIGS / "logging.conf"),
        bundle_root=str(BUNDLE),
        **overrides,
    )
    return workflow


def _train_workflow(tiny_phantoms, diffusion, output_dir, configs=("train.json",), **overrides) -> ConfigWorkflow:
    """The initialised train workflow of ``configs`` on the tiny phantoms with the tiny settings and ``overrides``."""
    workflow = _workflow(
        list(configs),
        "train",
        dataset_dir=str(tiny_phantoms),
        output_dir=str(output_dir),
        **diffusion,
        **{**TINY, **overrides},
    )
    workflow.initialize()
    return workflow


def _train(tiny_phantoms, diffusion, output_dir, **overrides) -> ConfigWorkflow:
    workflow = _train_workflow(tiny_phantoms, diffusion, output_dir, **overrides)
    assert workflow.check_properties() in (None, [])
    workflow.run()
    workflow.finalize()
    return workflow


def _evaluate(tiny_phantoms, diffusion, ckpt: Path, eval_output_dir: Path, **overrides) -> ConfigWorkflow:
    """Run evaluate.json (layered on train.json) on the tiny phantoms with the checks of a zoo evaluation."""
    workflow = _workflow(
        ["train.json", "evaluate.json"],
        "eval",
        dataset_dir=str(tiny_phantoms),
        ckpt_path=str(ckpt),
        eval_output_dir=str(eval_output_dir),
        **diffusion,
        **TINY,
        **overrides,
    )
    workflow.initialize()
    assert workflow.check_properties() in (None, [])
    workflow.run()
    workflow.finalize()
    return workflow


@pytest.fixture(scope="module")
def trained(tiny_phantoms, diffusion, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("train")
    workflow = _train(tiny_phantoms, diffusion, output_dir, **FIXTURE_SCHEDULE)
    return output_dir, workflow


def test_train_writes_selected_model_and_checkpoint(trained):
    """The default trains the finest level only (K = 8; levels 1 and 2 are merged from it at evaluation and
    inference), selected among the objective's epochs; its validation reads the finest level's label alone."""
    output_dir, workflow = trained
    assert (output_dir / "model.pt").is_file() and (output_dir / "checkpoint_epoch=8.pt").is_file()
    selection = json.loads((output_dir / "model_selection.json").read_text())
    assert selection["metrics"] == ["mean_max_prob_l1"] and selection["epochs"][0] in (7, 8)
    state = torch.load(output_dir / "model.pt", weights_only=True)
    assert any(k.startswith("levels.0.") for k in state) and not any(k.startswith("levels.1.") for k in state)
    assert workflow.parser.get_parsed_content("validation_label_keys") == ["label_l3"]
    cache = workflow.parser.get_parsed_content("feature_cache")
    assert cache.misses == 4, "one feature computation per training volume and draw"


def test_training_resumes_from_the_last_checkpoint(tiny_phantoms, diffusion, trained, tmp_path):
    trained_dir, first = trained
    output_dir = tmp_path / "train"
    shutil.copytree(trained_dir, output_dir)  # the module's trained run stays as it is for the other tests
    iterations = first.parser.get_parsed_content("train#trainer").state.iteration
    resumed = _train(tiny_phantoms, diffusion, output_dir, **{**FIXTURE_SCHEDULE, "max_epochs": 9})
    state = resumed.parser.get_parsed_content("train#trainer").state
    assert state.epoch == 9 and state.iteration == iterations // 8 * 9
    assert (output_dir / "checkpoint_epoch=9.pt").is_file()


def test_evaluate_reports_matched_dice_hierarchy_and_figure(tiny_phantoms, diffusion, trained, tmp_path):
    _evaluate(tiny_phantoms, diffusion, trained[0] / "model.pt", tmp_path / "eval")
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert [len(level) for level in report["matched_dice"]["ours"]] == [3, 3, 3]
    assert all(0 <= level["mean"] <= 1 for level in report["matched_dice"]["ours"])
    assert report["matched_hd95"][0]["n"] == 1
    hierarchy = json.loads((tmp_path / "eval" / "hierarchy.json").read_text())
    assert hierarchy["num_parts"] == [2, 4, 8] and len(hierarchy["volumes"]) == 1
    assert (tmp_path / "eval" / "discovery.png").stat().st_size > 0
    assert (tmp_path / "eval" / "metrics.csv").is_file()
    labels = sorted((tmp_path / "eval" / "labels").glob("*.nii.gz"))
    assert len(labels) == 3 and nib.load(labels[0]).shape == (24, 24, 24)


def test_evaluate_compares_with_every_baseline_in_the_same_run(tiny_phantoms, diffusion, trained, tmp_path):
    """--compare_baselines true: k-means, BM4D, smoothing, and k-means on the diffusion model's features and on its
    x0 prediction, and smoothing or x0 + k-means merged from the finest K, every level, on the evaluated volumes; the
    diffusion model is read from the bundle's own ids."""
    output_dir, _ = trained
    workflow = _workflow(
        ["train.json", "evaluate.json"], "eval", dataset_dir=str(tiny_phantoms), ckpt_path=str(output_dir / "model.pt"),
        eval_output_dir=str(tmp_path / "eval"), compare_baselines=True, **{"baseline_diffusion#num_draws": 2},
        **diffusion, **TINY,
    )  # fmt: skip
    workflow.initialize()
    workflow.run()
    workflow.finalize()
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    columns, hd95 = report["matched_dice"], report["matched_hd95_first_level"]
    expected = ["ours", "kmeans", "bm4d_kmeans", "smooth_kmeans", "smooth_kmeans_merged", "features_kmeans"]
    expected += ["x0_kmeans", "x0_kmeans_merged"]
    assert list(columns) == list(hd95) == expected and report["hd95_unit"] == "voxels"
    assert all(len(columns[m]) == 3 and all(0 < level["mean"] <= 1 for level in columns[m]) for m in expected)
    assert all(hd95[m]["n"] == 1 and hd95[m]["mean"] >= 0 for m in expected)
    assert hd95["ours"] == report["matched_hd95"][0]
    per_volume = report["matched_dice_per_volume"]  # one volume: each level's value is its mean
    assert list(per_volume) == expected
    for method in expected:
        assert [level["mean"] for level in columns[method]] == pytest.approx([v for (v,) in per_volume[method]])
    built = workflow.parser.get_parsed_content("baseline_diffusion")
    assert built.ckpt == diffusion["diffusion_ckpt"] and list(built.feature_stages) == [3]


def test_inference_serves_one_label_map_of_the_served_level(tiny_phantoms, diffusion, trained, tmp_path):
    """``pred`` is one integer label map on the input's grid, of level ``serve_level`` (the finest, trained one by
    default), with the values that metadata.json's channel_def names; ``--serve_level 1`` serves the coarse level,
    merged from the finest by the diffusion model's x0 prediction, instead."""
    output_dir, _ = trained
    channel_def = json.loads((CONFIGS / "metadata.json").read_text())["network_data_format"]["outputs"]["pred"]
    overrides = {
        **diffusion,
        "dataset_dir": str(tiny_phantoms),
        "ckpt_path": str(output_dir / "model.pt"),
        "spatial_size": TINY["spatial_size"],
        **{k: v for k, v in TINY.items() if k.startswith("network_def")},
    }
    for level, parts in ((None, 8), (1, 2)):
        out = tmp_path / f"out_{level}"
        workflow = _workflow(
            ["inference.json"], "infer", output_dir=str(out), **overrides, **({"serve_level": level} if level else {})
        )
        workflow.initialize()
        assert workflow.check_properties() in (None, [])
        workflow.run()
        written = sorted(p.name for p in out.glob("*.nii.gz"))
        assert written == [f"phantom_005_image_l{level or 3}.nii.gz"]
        label = nib.load(out / written[0])
        values = set(np.unique(np.asarray(label.dataobj)).tolist())
        assert label.shape == (24, 24, 24) and label.get_data_dtype() == np.uint8
        assert values <= set(range(parts)) and len(values) > 1
    served = channel_def["num_channels"]
    assert sorted(int(k) for k in channel_def["channel_def"]) == list(range(served)) == list(range(8))
    with pytest.raises(RuntimeError) as error:
        _workflow(["inference.json"], "infer", output_dir=str(tmp_path / "out_None")).initialize()
    assert "FileExistsError" in error_messages(error.value) and "--overwrite" in error_messages(error.value)


def test_inference_through_the_monai_bundle_command_line(tiny_phantoms, trained, tmp_path):
    output_dir, _ = trained
    command = [
        sys.executable, "-m", "monai.bundle", "run",
        "--config_file", str(CONFIGS / "inference.json"),
        "--dataset_dir", str(tiny_phantoms),
        "--ckpt_path", str(output_dir / "model.pt"),
        "--output_dir", str(tmp_path / "cli"),
        "--spatial_size", "[24, 24, 24]",
        "--network_def#channels", "[4, 8, 8]",
        "--network_def#strides", "[1, 2]",
    ]  # fmt: skip
    completed = subprocess.run(command, cwd=BUNDLE, capture_output=True, text=True, check=False)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert len(list((tmp_path / "cli").glob("*_l3.nii.gz"))) == 1


def test_missing_diffusion_checkpoint_names_file_and_command(tiny_phantoms, tmp_path):
    workflow = _workflow(
        ["train.json"],
        "train",
        dataset_dir=str(tiny_phantoms),
        output_dir=str(tmp_path / "run"),
        diffusion_ckpt=str(tmp_path / "nowhere.pt"),
    )
    with pytest.raises(RuntimeError) as error:
        workflow.initialize()
        workflow.parser.get_parsed_content("diffusion_unet")
    message = error_messages(error.value)
    assert "nowhere.pt" in message and "diffusion_pretraining bundle" in message and "--diffusion_ckpt" in message


def test_checkpoint_that_does_not_fit_is_rejected(tiny_phantoms, diffusion, tmp_path):
    workflow = _workflow(
        ["train.json"],
        "train",
        dataset_dir=str(tiny_phantoms),
        output_dir=str(tmp_path / "run"),
        diffusion_ckpt=diffusion["diffusion_ckpt"],
    )
    workflow.initialize()
    with pytest.raises(RuntimeError) as error:
        workflow.parser.get_parsed_content("diffusion_unet")
    assert "does not fit the configured DiffusionModelUNet" in error_messages(error.value)


def test_feature_stage_that_does_not_exist_is_rejected(tiny_phantoms, diffusion, tmp_path):
    workflow = _workflow(
        ["train.json"],
        "train",
        dataset_dir=str(tiny_phantoms),
        output_dir=str(tmp_path / "run"),
        feature_stages=[1, 2, 5],
        **diffusion,
    )
    workflow.initialize()
    with pytest.raises(RuntimeError) as error:
        workflow.parser.get_parsed_content("feature_extractor")
    assert "feature_stages) must be decoder stages in 1..3" in error_messages(error.value)


def test_shipped_diffusion_definition_is_the_diffusion_bundles():
    """configs/diffusion.json copies the diffusion_pretraining bundle's definition, and the shipped weights are that
    bundle's, so the folder stays self-contained without the two drifting apart."""
    own = json.loads((CONFIGS / "diffusion.json").read_text())
    source = json.loads((ROOT / "bundles" / "diffusion_pretraining" / "configs" / "train.json").read_text())
    assert own == {key: source[key] for key in own}
    shipped = BUNDLE / "models" / "diffusion_pretraining" / "model.pt"
    published = ROOT / "bundles" / "diffusion_pretraining" / "models" / "model.pt"
    assert shipped.read_bytes() == published.read_bytes()


def test_brain_config_trains_evaluates_and_serves_k3_on_flair(tiny_brains, diffusion, tmp_path):
    """configs/brain.json, layered last: 6 parts trained on the FLAIR datalist after a warm start, merged to 3 by
    their means in the diffusion model's x0 prediction; whole-tumour Dice and HD95 in mm of both levels, and one
    3-part label map served on the phantom's 96^3 grid (the benchmarks/brain.py setting, tiny networks)."""
    tiny = {**TINY, "dataset_dir": str(tiny_brains), "diffusion_image_size": [16, 16, 16]}
    train = _workflow(
        ["train.json", "brain.json"], "train", output_dir=str(tmp_path / "run"), max_epochs=2, warm_start_epochs=1,
        **diffusion, **tiny,
    )  # fmt: skip
    train.initialize()
    train.run()
    train.finalize()
    assert json.loads((tmp_path / "run" / "model_selection.json").read_text())["metrics"] == ["mean_max_prob_l1"]
    assert train.parser.get_parsed_content("datalist").endswith("datalist_flair.json")
    ckpt = str(tmp_path / "run" / "model.pt")

    files = ["train.json", "evaluate.json", "brain.json"]
    evaluate = _workflow(
        files, "eval", ckpt_path=ckpt, eval_output_dir=str(tmp_path / "eval"), compare_baselines=True,
        baseline_methods=["kmeans", "smooth_kmeans_merged"], **diffusion, **tiny,
    )  # fmt: skip
    evaluate.initialize()
    evaluate.run()
    evaluate.finalize()
    assert isinstance(evaluate.parser.get_parsed_content("network").merge_values, DiffusionDenoiser)
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["num_parts"] == [3, 6] and all(0 <= d["mean"] <= 1 for d in report["matched_dice"]["ours"])
    assert len(report["matched_hd95"]) == 2 and report["hd95_unit"] == "mm"  # empty where no part is the tumour
    assert (tmp_path / "eval" / "matched_hd95_l1_raw.csv").is_file()
    # the baselines read the FLAIR datalist and score the whole tumour only, as the evaluator does (report_classes)
    (item,) = json.loads((tiny_brains / "datalist_flair.json").read_text())["test"]
    flair, label = (np.asarray(nib.load(tiny_brains / item[key]).dataobj) for key in ("image", "label"))
    tumour = matched_dice(kmeans_segment(flair, 3), label.astype(np.int64)).per_class[1]
    assert report["matched_dice"]["kmeans"][0]["mean"] == pytest.approx(tumour)
    assert 0 <= report["matched_dice"]["smooth_kmeans_merged"][0]["mean"] <= 1

    network = {k: v for k, v in TINY.items() if k.startswith("network_def") or k == "spatial_size"}
    infer = _workflow(
        ["inference.json", "brain.json"], "infer", dataset_dir=str(tiny_brains), ckpt_path=ckpt,
        output_dir=str(tmp_path / "infer"), diffusion_image_size=[16, 16, 16], **diffusion, **network,
    )  # fmt: skip
    infer.initialize()
    infer.run()
    (written,) = (tmp_path / "infer").rglob("*.nii.gz")  # data_root_dir keeps the subject folder
    assert written.relative_to(tmp_path / "infer").as_posix() == "brain_005/flair_l1.nii.gz"
    label = np.asarray(nib.load(written).dataobj)
    assert label.shape == (96, 96, 96) and set(np.unique(label).tolist()) <= {0, 1, 2}


def test_brain_configs_of_both_bundles_agree_on_the_diffusion_grid():
    """structure_discovery's brain.json feeds the diffusion model the grid it was pretrained on by
    diffusion_pretraining's brain.json, and reads the same dataset."""
    ours = json.loads((CONFIGS / "brain.json").read_text())
    theirs = json.loads((ROOT / "bundles" / "diffusion_pretraining" / "configs" / "brain.json").read_text())
    assert ours["diffusion_image_size"] == theirs["image_size"]
    assert (ours["dataset_dir"], ours["datalist_name"]) == (theirs["dataset_dir"], theirs["datalist_name"])


def test_shipped_brain_weights_load_into_the_brain_networks():
    """models/brain/model.pt is a K = 6 segmenter (served merged to 3) and the diffusion copy beside it is
    diffusion_pretraining's own brain weights; the brain configs build networks that take them as they are."""
    diffusion_bundle = ROOT / "bundles" / "diffusion_pretraining"
    shipped = BUNDLE / "models" / "brain" / "diffusion_pretraining" / "model.pt"
    assert shipped.read_bytes() == (diffusion_bundle / "models" / "brain" / "model.pt").read_bytes()
    for bundle, config in ((BUNDLE, "inference.json"), (diffusion_bundle, "inference.json")):
        parser = ConfigParser()
        parser.read_config([str(bundle / "configs" / config), str(bundle / "configs" / "brain.json")])
        parser["bundle_root"] = str(bundle)
        network = parser.get_parsed_content("network_def")
        state = torch.load(parser.get_parsed_content("ckpt_path"), map_location="cpu", weights_only=True)
        network.load_state_dict(state)  # strict: every key and shape


def test_defaults_beyond_the_paper_train_through_the_bundle(tiny_phantoms, diffusion, tmp_path):
    """The default objective: visual term on the denoised image, reflect-padded features, the nesting term and
    normalised consistency terms, end to end."""
    workflow = _train_workflow(tiny_phantoms, diffusion, tmp_path / "train", max_epochs=1, denoise_draws=1)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.visual_denoiser is not None and trainer.feature_extractor.padding == 4
    assert trainer.visual_denoiser.padding == 4 and trainer.visual_denoiser.timestep == 50
    assert trainer.loss_function.lambda_nest == 1.0 and trainer.loss_function.consistency.normalize
    workflow.run()
    assert (tmp_path / "train" / "model.pt").is_file()
    assert len(trainer._denoised) == len(trainer.data_loader.dataset)  # one denoising per training volume
    assert trainer.state.output[0]["loss_f"] > 0  # decollated: every item carries the loss terms


@pytest.mark.parametrize(("max_epochs", "warm_start_epochs"), [(None, 10), (5, 3), (1, 0)])
def test_default_recipe_warm_starts_all_but_the_last_objective_epochs(
    tiny_phantoms, diffusion, tmp_path, max_epochs, warm_start_epochs
):
    """The variant study's winner is the default: 10 of 12 epochs fitted to the x0 + k-means partitions, then 2 of
    eq. 4, at a learning rate of 3e-3; a shorter run keeps its last 2 epochs (all, if fewer) on eq. 4."""
    overrides = {} if max_epochs is None else {"max_epochs": max_epochs}
    workflow = _train_workflow(tiny_phantoms, diffusion, tmp_path / "train", **overrides)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.warm_start_epochs == warm_start_epochs
    assert trainer.state.max_epochs == (max_epochs or 12)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(3e-3)


def test_paper_config_restores_the_papers_objective(tiny_phantoms, diffusion, tmp_path):
    workflow = _train_workflow(tiny_phantoms, diffusion, tmp_path / "train", ("train.json", "paper.json"))
    trainer = workflow.parser.get_parsed_content("train#trainer")
    assert trainer.warm_start_epochs == 0 and trainer.state.max_epochs == 15
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(3e-4)  # sec. 4.2
    loss = trainer.loss_function
    assert trainer.visual_denoiser is None and trainer.feature_extractor.padding == 0
    assert (loss.lambda_v, loss.lambda_f, loss.lambda_inv, loss.lambda_nest) == (1.0, 1.0, 1.0, 0.0)
    assert not loss.consistency.normalize


def test_unknown_visual_target_names_the_config_id(tiny_phantoms, diffusion, tmp_path):
    workflow = _train_workflow(tiny_phantoms, diffusion, tmp_path / "train", visual_target="denoise")
    with pytest.raises(Exception) as error:
        workflow.parser.get_parsed_content("train#trainer")
    assert "visual_target must be one of ('image', 'denoised'), got 'denoise'" in error_messages(error.value)


def test_evaluate_with_nested_levels_writes_label_maps_that_nest(tiny_phantoms, diffusion, trained, tmp_path):
    _evaluate(tiny_phantoms, diffusion, trained[0] / "model.pt", tmp_path / "eval", nested_levels=True)
    hierarchy = json.loads((tmp_path / "eval" / "hierarchy.json").read_text())
    assert [pair["break_share"] for pair in hierarchy["dataset"]["pairs"]] == [0.0, 0.0]
    maps = [np.asarray(nib.load(p).dataobj) for p in sorted((tmp_path / "eval" / "labels").glob("*.nii.gz"))]
    for coarse, fine in itertools.pairwise(maps):  # l1, l2, l3 in name order
        assert all(len(np.unique(coarse[fine == part])) == 1 for part in np.unique(fine))


def test_merged_levels_evaluate_and_serve_as_unions_of_the_finest_parts(tiny_phantoms, diffusion, tmp_path):
    """Over-clustering then merging through the configs: one level of K = 4 trained, ``merged_parts [2]`` at
    evaluation and inference. The report scores both levels (the merged one first), its label map is a union of the
    finest level's parts with ``nested_levels`` (without it, only where one finest part holds more than half of the
    probability, which one epoch does not give everywhere), and ``serve_level 1`` serves the merged 2 parts from the
    same weights."""
    levels = {"num_parts": [4], "merged_parts": [2], "feature_stages": [2], "label_keys": ["label_l2"]}  # one label
    train = _train_workflow(tiny_phantoms, diffusion, tmp_path / "run", max_epochs=1, **levels)
    train.run()
    train.finalize()
    ckpt = tmp_path / "run" / "model.pt"
    _evaluate(tiny_phantoms, diffusion, ckpt, tmp_path / "eval", nested_levels=True, **levels)
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["num_parts"] == [2, 4] and len(report["matched_dice"]["ours"]) == 2
    assert (tmp_path / "eval" / "discovery.png").stat().st_size > 0
    coarse, fine = (np.asarray(nib.load(p).dataobj) for p in sorted((tmp_path / "eval" / "labels").glob("*.nii.gz")))
    assert all(len(np.unique(coarse[fine == part])) == 1 for part in np.unique(fine))

    network = {k: v for k, v in TINY.items() if k.startswith("network_def") or k == "spatial_size"}
    infer = _workflow(
        ["inference.json"], "infer", dataset_dir=str(tiny_phantoms), ckpt_path=str(ckpt), num_parts=[4],
        merged_parts=[2], serve_level=1, output_dir=str(tmp_path / "infer"), **network,
    )  # fmt: skip
    infer.initialize()
    infer.run()
    (written,) = (tmp_path / "infer").glob("*_l1.nii.gz")
    assert set(np.unique(np.asarray(nib.load(written).dataobj)).tolist()) <= {0, 1}


def test_a_merged_level_between_trained_levels_evaluates_in_its_place(tiny_phantoms, diffusion, tmp_path):
    """K = 2 and 8 trained, 4 merged from the 8: training's validation scores the trained levels against label_l1 and
    label_l3, and the evaluation reports the levels 2 / 4 / 8 against all three labels."""
    levels = {"num_parts": [2, 8], "feature_stages": [1, 3], "merged_parts": [4], "merge_by": "image"}
    train = _train_workflow(tiny_phantoms, diffusion, tmp_path / "run", max_epochs=1, **levels)
    assert train.parser.get_parsed_content("validation_label_keys") == ["label_l1", "label_l3"]
    train.run()
    train.finalize()
    _evaluate(tiny_phantoms, diffusion, tmp_path / "run" / "model.pt", tmp_path / "eval", **levels)
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["num_parts"] == [2, 4, 8] and len(report["matched_dice"]["ours"]) == 3


def test_selection_on_the_objective_keeps_each_levels_lowest_epoch(tiny_phantoms, diffusion, tmp_path):
    """``selection_metric objective``: the evaluator reports ``objective_l<level>`` and each level keeps the epoch
    where it was lowest (``model_selection.json``)."""
    workflow = _train_workflow(
        tiny_phantoms, diffusion, tmp_path / "train", max_epochs=2, selection_metric="objective", **TRAINED_LEVELS
    )
    seen: list[list[float]] = []
    evaluator = workflow.parser.get_parsed_content("validate#evaluator")
    names = ["objective_l1", "objective_l2", "objective_l3"]
    evaluator.add_event_handler(Events.COMPLETED, lambda e: seen.append([e.state.metrics[n] for n in names]))
    workflow.run()
    record = json.loads((tmp_path / "train" / "model_selection.json").read_text())
    assert record["metrics"] == names and len(seen) == 2
    assert record["best"] == [min(epoch[level] for epoch in seen) for level in range(3)]
    assert record["epochs"] == [1 + min(range(2), key=lambda e: seen[e][level]) for level in range(3)]


def test_unknown_selection_metric_names_the_config_id(tiny_phantoms, diffusion, tmp_path):
    workflow = _train_workflow(tiny_phantoms, diffusion, tmp_path / "train", selection_metric="loss")
    with pytest.raises(Exception) as error:
        workflow.parser.get_parsed_content("validate#handlers")
    assert "selection_metric must be one of ['mean_max_prob', 'objective'], got 'loss'" in error_messages(error.value)


def test_merge_by_denoised_merges_by_the_visual_target_training_read(tiny_phantoms, diffusion, tmp_path):
    """``merge_by denoised`` builds, from the ``merge_denoiser`` ids alone, the denoiser whose x0 prediction
    training's visual term read (same weights, timestep, draws, seed and padding): same output on the same input."""
    workflow = _workflow(
        ["train.json", "evaluate.json"], "eval", dataset_dir=str(tiny_phantoms), merge_by="denoised",
        denoise_draws=2, eval_output_dir=str(tmp_path / "eval"), **diffusion, **TINY,
    )  # fmt: skip
    merge_values = workflow.parser.get_parsed_content("network_def").merge_values
    visual_target = workflow.parser.get_parsed_content("visual_denoiser")
    image = torch.rand(1, 1, 24, 24, 24, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(merge_values(image), visual_target(image))
    assert merge_values is not visual_target  # built apart: inference.json has no training components


def test_merge_by_image_serves_without_reading_the_diffusion_weights(tiny_phantoms, trained, tmp_path):
    """``merge_by image`` builds no denoiser: inference runs with no diffusion checkpoint at all."""
    network = {k: v for k, v in TINY.items() if k.startswith("network_def") or k == "spatial_size"}
    infer = _workflow(
        ["inference.json"], "infer", dataset_dir=str(tiny_phantoms), ckpt_path=str(trained[0] / "model.pt"),
        diffusion_ckpt=str(tmp_path / "absent.pt"), output_dir=str(tmp_path / "infer"), merge_by="image", **network,
    )  # fmt: skip
    infer.initialize()
    infer.run()
    assert infer.parser.get_parsed_content("network").merge_values is None
    assert list((tmp_path / "infer").rglob("*_l3.nii.gz"))


def test_unknown_merge_by_names_the_config_id(tiny_phantoms, diffusion, tmp_path):
    workflow = _workflow(
        ["train.json", "evaluate.json"], "eval", dataset_dir=str(tiny_phantoms), merge_by="x0",
        eval_output_dir=str(tmp_path / "eval"), **diffusion, **TINY,
    )  # fmt: skip
    with pytest.raises(Exception) as error:
        workflow.parser.get_parsed_content("network_def")
    assert "config id 'merge_by' must be one of ('image', 'denoised'), got 'x0'" in error_messages(error.value)


def test_merge_denoiser_names_missing_keys_and_a_missing_checkpoint(diffusion, tmp_path):
    with pytest.raises(ValueError, match=r"config id 'merge_denoiser' lacks \['hint', 'seed'\]"):
        merge_denoiser("denoised", {"bundle": str(BUNDLE), "configs": [], "ckpt": "", "timestep": 50,
                                    "num_draws": 1, "input_size": None, "padding": 0}, "cpu")  # fmt: skip
    options = {"timestep": 50, "num_draws": 1, "input_size": None, "seed": 0, "padding": 0}
    missing = {"bundle": str(BUNDLE), "configs": diffusion["diffusion_configs"], "ckpt": str(tmp_path / "no.pt")}
    with pytest.raises(FileNotFoundError, match=r"no\.pt' does not exist; train it first"):
        merge_denoiser("denoised", {**missing, "hint": "train it first", **options}, "cpu")

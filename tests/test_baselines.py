from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_ext.baselines import DiffusionBaselines, bm4d_denoise, estimate_noise_std, gaussian_smooth, kmeans_segment
from monai_ext.baselines.evaluate import format_table, kmeans_levels, run_baselines
from monai_ext.bundle import bundle_component
from monai_ext.metrics import matched_dice
from monai_ext.transforms import merge_by_means
from monai_ext.weights import save_weights

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"


def _blocks(noise: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    labels = np.zeros((16, 16, 16), dtype=np.int64)
    labels[4:12, 4:12, 4:12] = 1
    labels[6:10, 6:10, 6:10] = 2
    image = labels / 2.0 + noise * np.random.default_rng(seed).standard_normal(labels.shape)
    return image.astype(np.float32), labels


def test_kmeans_recovers_separable_intensities():
    image, labels = _blocks(noise=0.02)
    assert matched_dice(kmeans_segment(image, 3), labels).mean == 1.0


def test_kmeans_on_channel_first_features():
    _, labels = _blocks(noise=0.0)
    features = np.stack([labels == k for k in range(3)]).astype(np.float32)
    assert matched_dice(kmeans_segment(features, 3, channel_first=True), labels).mean == 1.0


@pytest.mark.parametrize(
    ("values", "k", "message"),
    [
        (np.zeros((4, 4, 4)), 2, "constant"),
        (np.random.rand(2, 2, 2), 9, "between 2 and the number of voxels"),
        (np.random.rand(4, 4, 4), 1, "between 2"),
        (np.full((4, 4, 4), np.nan), 2, "NaN"),
        (np.zeros((0, 4)), 2, "empty"),
    ],
)
def test_kmeans_rejects_bad_input(values, k, message):
    with pytest.raises(ValueError, match=message):
        kmeans_segment(values, k)


def test_bm4d_reduces_the_error_and_noise_estimate_is_close():
    image, labels = _blocks(noise=0.15, seed=1)
    clean = labels / 2.0
    assert estimate_noise_std(image) == pytest.approx(0.15, rel=0.2)
    denoised = bm4d_denoise(image, 0.15)
    assert np.abs(denoised - clean).mean() < 0.5 * np.abs(image - clean).mean()
    with pytest.raises(ValueError, match="3D"):
        bm4d_denoise(image[0], 0.1)
    with pytest.raises(ValueError, match="noise_std"):
        bm4d_denoise(image, 0.0)


def test_run_baselines_writes_results_and_refuses_to_overwrite(tiny_phantoms, tmp_path, capsys):
    out = tmp_path / "results.json"
    result = run_baselines(str(tiny_phantoms), split="test", out=str(out))
    printed = capsys.readouterr().out
    assert "label_l3" in printed and "(paper 0.949)" in printed
    saved = json.loads(out.read_text())
    assert saved["volumes"] == 1 and saved["levels"] == {"label_l1": 2, "label_l2": 4, "label_l3": 8}
    for method in ("kmeans", "bm4d_kmeans"):
        for key in saved["levels"]:
            assert 0.0 <= saved["matched_dice"][method][key]["mean"] <= 1.0
    assert result["matched_dice"] == saved["matched_dice"]
    assert saved["machine"]["cores"] >= 1 and "monai" in saved["versions"]
    with pytest.raises(FileExistsError, match="--overwrite"):
        run_baselines(str(tiny_phantoms), split="test", out=str(out), methods="kmeans")


def test_run_baselines_rejects_unknown_method_and_mode(tiny_phantoms):
    with pytest.raises(ValueError, match="unknown methods"):
        run_baselines(str(tiny_phantoms), methods="svm")
    with pytest.raises(ValueError, match="noise_std"):
        run_baselines(str(tiny_phantoms), noise_std="guess")


def test_format_table_places_paper_values():
    summary = {"kmeans": {"label_l1": {"mean": 0.5, "sd": 0.1}}}
    table = format_table(summary, {"label_l1": 2}, "irregular")
    assert "0.500 ± 0.100 (paper 0.771)" in table


def test_cli_reports_bad_option_without_traceback(tmp_path):
    command = [sys.executable, "-m", "monai_ext", "make-phantoms", "--out", str(tmp_path / "x"), "--variant", "wavy"]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    assert completed.returncode == 2
    assert "error: variant must be one of" in completed.stderr and "Traceback" not in completed.stderr


def test_default_output_goes_to_benchmarks_results_without_replacing(tiny_phantoms, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        run_baselines(str(tiny_phantoms), split="test", methods="kmeans", verbose=False)
    written = sorted(p.name for p in (tmp_path / "benchmarks" / "results").iterdir())
    assert written == ["baselines_regular_test.json", "baselines_regular_test_1.json"]


def test_smoothing_before_kmeans_rescues_noisy_blocks():
    """With noise that k-means on raw intensities cannot separate, a sigma-1 Gaussian makes the blocks separable."""
    image, labels = _blocks(noise=0.2)
    raw = matched_dice(kmeans_segment(image, 3), labels).mean
    smoothed = matched_dice(kmeans_segment(gaussian_smooth(image, 1.0), 3), labels).mean
    assert raw < 0.5 and smoothed > 0.7
    with pytest.raises(ValueError, match="sigma must be > 0"):
        gaussian_smooth(image, 0.0)


@pytest.fixture(scope="module")
def tiny_diffusion(tmp_path_factory) -> DiffusionBaselines:
    """The diffusion bundle's own definition, shrunk, with random weights: the diffusion baselines' plumbing."""
    folder = tmp_path_factory.mktemp("tiny_diffusion")
    tiny = folder / "tiny.json"
    tiny.write_text(json.dumps({"network_def#channels": [8, 8, 16], "network_def#norm_num_groups": 8}))
    bundle = str(BUNDLES / "diffusion_pretraining")
    configs = ["configs/train.json", str(tiny)]
    torch.manual_seed(0)
    unet = bundle_component(bundle, "network_def", configs)
    for parameter in unet.out.parameters():  # MONAI zero-initialises the output layer: x0 would be constant
        torch.nn.init.normal_(parameter, std=0.1)
    torch.save(unet.state_dict(), folder / "model.pt")
    return DiffusionBaselines(bundle, configs, str(folder / "model.pt"), image_size=(16, 16, 16), num_draws=2)


def test_default_baselines_need_no_diffusion_model_and_its_methods_ask_for_one(tiny_phantoms):
    result = run_baselines(str(tiny_phantoms), split="test", out=None, verbose=False)
    assert list(result["matched_dice"]) == list(result["matched_hd95_first_level"]) == [
        "kmeans", "bm4d_kmeans", "smooth_kmeans", "smooth_kmeans_merged",
    ]  # fmt: skip
    in_mm = run_baselines(str(tiny_phantoms), split="test", methods="kmeans", out=None, verbose=False, hd95_spacing=2.0)
    voxels, mm = (
        result["matched_hd95_first_level"]["kmeans"]["mean"],
        in_mm["matched_hd95_first_level"]["kmeans"]["mean"],
    )
    assert in_mm["hd95_unit"] == "mm" and mm == pytest.approx(2 * voxels)
    with pytest.raises(ValueError, match=r"\['x0_kmeans'\] need the diffusion model"):
        run_baselines(str(tiny_phantoms), methods=["kmeans", "x0_kmeans"], out=None)


def test_diffusion_baselines_run_with_the_bundles_model_and_repeat_exactly(tiny_phantoms, tiny_diffusion):
    methods = ["features_kmeans", "x0_kmeans"]
    runs = [
        run_baselines(
            str(tiny_phantoms), split="test", methods=methods, out=None, verbose=False, diffusion=tiny_diffusion
        )
        for _ in range(2)
    ]
    for method in methods:
        scores = [runs[0]["matched_dice"][method][key]["mean"] for key in ("label_l1", "label_l2", "label_l3")]
        assert all(0.0 < score <= 1.0 for score in scores)
    assert runs[0]["matched_dice"] == runs[1]["matched_dice"], "seeded noise draws"
    extractor, denoiser = tiny_diffusion.build()
    assert extractor.stages == [3] and extractor.num_draws == denoiser.num_draws == 2 and denoiser.timestep == 50


def test_diffusion_baselines_refuse_weights_trained_with_other_settings(tiny_diffusion, tmp_path):
    """Regression: the baselines loaded the U-Net without the settings check the bundles' own loaders make."""
    ckpt = tmp_path / "model.pt"
    save_weights(torch.load(tiny_diffusion.ckpt, weights_only=True), ckpt, {"num_train_timesteps": 10})
    with pytest.raises(ValueError, match=r"config id 'num_train_timesteps' is 250, but weights .* = 10"):
        dataclasses.replace(tiny_diffusion, ckpt=str(ckpt)).build()


def test_merged_kmeans_levels_are_one_kmeans_merged_closest_means_first():
    rng = np.random.default_rng(0)
    image = rng.normal(size=(10, 10, 10)) * 0.05 + np.repeat([0.0, 0.2, 0.4, 0.6, 3.0], 2)[:, None, None]
    levels = kmeans_levels(image, False, {2, 3, 5}, merged=True)
    finest = kmeans_segment(image, 5)
    np.testing.assert_array_equal(levels[5], finest)
    for k in (2, 3):
        expected, _ = merge_by_means(torch.as_tensor(finest), torch.as_tensor(image[None]), k)
        np.testing.assert_array_equal(levels[k], expected.numpy())
        assert all(len(np.unique(levels[k][finest == part])) == 1 for part in range(5))  # unions of the finest
    assert len(np.unique(levels[2][8:])) == 1 and set(np.unique(levels[2][:8])).isdisjoint(np.unique(levels[2][8:]))

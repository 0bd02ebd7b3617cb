"""Scoring of segmentation ensembles in the layout of Wolleb et al. (MIDL 2022, Table 1)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from ignite.engine import Engine

from monai_ext.engines import EnsembleReport, ensemble_table, slice_scores
from monai_ext.engines.ensemble_report import summarize_scores


def test_slice_scores_count_overlaps_and_empty_predictions() -> None:
    label = np.zeros((10, 10))
    label[2:6, 2:6] = 1  # 16 pixels
    mask = np.zeros((10, 10))
    mask[2:6, 4:8] = 1  # 16 pixels, 8 shared
    scores = slice_scores(mask, label)
    assert scores["dice"] == pytest.approx(2 * 8 / 32) and scores["jaccard"] == pytest.approx(8 / 24)
    assert scores["hd95"] == pytest.approx(2.0) and not scores["empty"]
    empty = slice_scores(np.zeros((10, 10)), label)
    assert empty == {"dice": 0.0, "jaccard": 0.0, "hd95": None, "empty": True}
    with pytest.raises(ValueError, match="non-empty label"):
        slice_scores(mask, np.zeros((10, 10)))
    summary = summarize_scores([scores, empty])
    assert summary["dice"]["mean"] == pytest.approx(0.25) and summary["dice_without_empty"]["mean"] == 0.5
    assert summary["hd95"]["n"] == 1 and summary["empty_predictions"] == 1 and summary["slices"] == 2


def test_report_handler_pools_every_slice(tmp_path: Path) -> None:
    label = torch.zeros(1, 8, 8)
    label[0, 2:6, 2:6] = 1
    samples = torch.stack([label[0], torch.roll(label[0], 1, 0)])  # two samples that disagree on one edge
    mean, variance = samples.mean(0, keepdim=True), samples.var(0, unbiased=False, keepdim=True)
    image = torch.ones(4, 8, 8)
    items = [
        {
            "image": image,
            "label": label,
            "pred": (mean > 0.5).float(),
            "pred_mean": mean,
            "pred_variance": variance,
            "pred_samples": samples,
        },
        {
            "image": image,
            "label": torch.zeros(1, 8, 8),
            "pred": label.clone(),
            "pred_mean": label.clone(),
            "pred_variance": torch.zeros(1, 8, 8),
            "pred_samples": label.repeat(2, 1, 1),
        },
    ]
    engine = Engine(lambda e, batch: batch)
    handler = EnsembleReport(tmp_path)
    handler.attach(engine)
    engine.run([items], max_epochs=1)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ensemble"]["slices"] == 1 and report["empty_label_slices"] == 1
    assert report["false_positive_slices"] == 1  # the second slice has no tumour but the ensemble marks some
    assert report["single_sample"]["dice"]["mean"] == pytest.approx(1.0)  # sample 1 is the label itself
    # the ensemble keeps rows 3-5 of the label's rows 2-5: 12 of 16 pixels, none outside
    assert report["ensemble"]["dice"]["mean"] == pytest.approx(24 / 28)
    assert report["ensemble"]["jaccard"]["mean"] == pytest.approx(12 / 16)
    u = report["uncertainty"]
    assert u["boundary_variance_ratio"] == float("inf")  # the samples disagree only next to the boundary
    # errors: 4 pixels of variance 0.25 and 16 of 0 (slice 2); correct: 4 of 0.25, 104 of 0 -> pair counting
    assert u["variance_error_auroc"] == pytest.approx((4 * 104 + 0.5 * (4 * 4 + 16 * 104)) / (20 * 108))
    # mean 1 on 28 pixels of which 12 are tumour, 0.5 on 8 of which 4, 0 on 92 without tumour
    assert u["mean_map_ece"] == pytest.approx(16 / 128)
    assert "ensemble" in ensemble_table(report)
    with pytest.raises(FileExistsError):
        EnsembleReport(tmp_path).attach(Engine(lambda e, b: b))


def test_panels_follow_the_dataset_folders(tmp_path: Path) -> None:
    from monai.data import MetaTensor

    from monai_ext.engines import EnsembleWriter
    from monai_ext.visualize import ensemble_panel

    item = {
        "image": MetaTensor(
            torch.rand(4, 8, 8), meta={"filename_or_obj": str(tmp_path / "data" / "s1" / "z010.nii.gz")}
        ),
        "label": torch.zeros(1, 8, 8),
        "pred": torch.zeros(1, 8, 8),
        "pred_samples": torch.rand(3, 8, 8),
        "pred_mean": torch.rand(1, 8, 8),
        "pred_variance": torch.rand(1, 8, 8) / 4,
    }
    writer = EnsembleWriter(tmp_path / "out", data_root_dir=tmp_path / "data")
    engine = Engine(lambda e, b: [item, {**item, "image": torch.rand(4, 8, 8)}])  # the second built in memory
    writer.attach(engine)
    engine.run([0])
    assert (tmp_path / "out" / "s1" / "z010_panel.png").stat().st_size > 0
    assert (tmp_path / "out" / "item_001_panel.png").is_file()
    assert sorted(p.name for p in (tmp_path / "out").rglob("*.png")) == ["item_001_panel.png", "z010_panel.png"]
    for kind, dtype in (
        ("mask", np.uint8),
        ("mean", np.float32),
        ("variance", np.float32),
    ):  # 2D maps, the slice's grid
        written = nib.load(tmp_path / "out" / "s1" / f"z010_{kind}.nii.gz")
        assert written.shape == (8, 8) and written.get_data_dtype() == dtype
    assert np.allclose(np.asarray(nib.load(tmp_path / "out" / "s1" / "z010_mean.nii.gz").dataobj), item["pred_mean"][0])
    with pytest.raises(ValueError, match="max_samples"):
        ensemble_panel(
            tmp_path / "x.png",
            item["image"],
            item["pred_samples"],
            item["pred_mean"],
            item["pred_variance"],
            max_samples=0,
        )
    # regression: the bundle squeezes the mask's channel (SqueezeDimd) before the writer; it was written transposed
    mean = torch.zeros(1, 8, 8)
    mean[0, 1:3, 5:8] = 1.0  # not symmetric
    squeezed = {**item, "pred": (mean[0] > 0.5).to(torch.uint8), "pred_mean": mean}
    stem = EnsembleWriter(tmp_path / "again", data_root_dir=tmp_path / "data").write(squeezed)
    mask = np.asarray(nib.load(f"{stem}_mask.nii.gz").dataobj)
    assert np.array_equal(mask, mean[0].numpy() > 0.5)
    assert np.array_equal(np.asarray(nib.load(f"{stem}_mean.nii.gz").dataobj), mean[0].numpy())
    with pytest.raises(ValueError, match=r"2D \(C, H, W\) or 3D \(C, X, Y, Z\) images"):
        EnsembleWriter(tmp_path / "again").write({**item, "image": torch.rand(4, 8)})


def test_writer_takes_volumes_and_several_mask_channels(tmp_path: Path) -> None:
    from monai_ext.engines import EnsembleWriter
    from monai_ext.visualize import panel_views

    mean = torch.zeros(3, 8, 8, 6)
    mean[1, 2:5, 2:5, 5] = 1.0  # all the mass in the last axial slice, in the second mask channel
    item = {
        "image": torch.rand(4, 4, 4, 3),  # the network's grid: coarser than the maps'
        "label": torch.zeros(3, 8, 8, 6),
        "pred": (mean > 0.5).float(),
        "pred_samples": torch.rand(2 * 3, 8, 8, 6),
        "pred_mean": mean,
        "pred_variance": torch.rand(3, 8, 8, 6) / 4,
    }
    stem = EnsembleWriter(tmp_path).write(item)
    for kind in ("mask", "mean", "variance"):
        assert nib.load(f"{stem}_{kind}.nii.gz").shape == (8, 8, 6, 3)  # spatial axes first, channels last
    assert np.array_equal(np.asarray(nib.load(f"{stem}_mean.nii.gz").dataobj)[..., 1], mean[1].numpy())
    assert Path(f"{stem}_panel.png").stat().st_size > 0
    image, samples, union, variance, label = panel_views(
        item["image"], [item["pred_samples"], mean, item["pred_variance"], item["label"]], channels=3
    )
    assert torch.equal(torch.as_tensor(image), item["image"][..., 2])  # the last slice of the coarser grid too
    assert samples.shape == (2, 8, 8) and union.shape == variance.shape == label.shape == (1, 8, 8)
    assert np.array_equal(union[0], mean[1, :, :, 5].numpy())
    expected = item["pred_samples"].reshape(2, 3, 8, 8, 6).amax(dim=1)[..., 5]
    assert np.allclose(samples, expected.numpy())

"""The evaluation of segmentation ensembles in the layout of Wolleb et al. (MIDL 2022, Table 1), with scores of
the uncertainty map (``monai_ext.metrics.uncertainty``)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine
from monai.metrics import compute_dice, compute_iou
from monai.utils import convert_to_numpy

from monai_ext.engines.handlers import EndOfRunWriter
from monai_ext.metrics import boundary_variance_ratio, error_auroc, expected_calibration_error, finite_stats
from monai_ext.metrics.surface import hausdorff_distance
from monai_ext.provenance import environment, write_json
from monai_ext.transforms.hierarchy import output_items


def slice_scores(mask: np.ndarray | torch.Tensor, label: np.ndarray | torch.Tensor, spacing: float = 1.0) -> dict:
    """Dice, Jaccard and HD95 of one binary 2D/3D ``mask`` against a non-empty ``label`` (same shape).

    An empty mask scores Dice and Jaccard 0 and has no HD95 (None), as Wolleb et al. count it (Table 1: "This
    results in a Dice of zero, and HD95 cannot be computed").
    """
    y_pred = torch.as_tensor(convert_to_numpy(mask) > 0.5).float()[None, None]
    y = torch.as_tensor(convert_to_numpy(label) > 0.5).float()[None, None]
    if y_pred.shape != y.shape:
        raise ValueError(f"mask and label shapes differ: {tuple(y_pred.shape[2:])} and {tuple(y.shape[2:])}.")
    if not y.any():
        raise ValueError("slice_scores needs a non-empty label; count empty labels separately.")
    empty = not bool(y_pred.any())
    dice = 0.0 if empty else float(compute_dice(y_pred, y, include_background=True))
    jaccard = 0.0 if empty else float(compute_iou(y_pred, y, include_background=True))
    hd95 = None if empty else float(hausdorff_distance(y_pred, y, percentile=95, spacing=spacing))
    return {"dice": dice, "jaccard": jaccard, "hd95": hd95, "empty": empty}


def summarize_scores(scores: Sequence[dict]) -> dict:
    """Mean ± sd of Dice, Jaccard (all slices, and without empty predictions as the paper's brackets), HD95 (over
    the non-empty predictions) and the count of empty predictions."""
    kept = [s for s in scores if not s["empty"]]
    return {
        "dice": finite_stats([s["dice"] for s in scores]),
        "dice_without_empty": finite_stats([s["dice"] for s in kept]),
        "jaccard": finite_stats([s["jaccard"] for s in scores]),
        "jaccard_without_empty": finite_stats([s["jaccard"] for s in kept]),
        "hd95": finite_stats([s["hd95"] for s in kept]),
        "empty_predictions": len(scores) - len(kept),
        "slices": len(scores),
    }


def _cell(stats: dict[str, float], digits: int = 3) -> str:
    return f"{stats['mean']:.{digits}f}" if stats else "-"


def ensemble_table(report: dict) -> str:
    """The report in the layout of Wolleb et al., Table 1: Dice [without empty], HD95, Jaccard [without empty],
    empty predictions; then the empty-label slices and the uncertainty scores."""
    lines = [f"{'method':<22}{'Dice':<18}{'HD95':<9}{'Jaccard':<18}empty"]
    for name, key in (("1 sampling run", "single_sample"), ("ensemble", "ensemble")):
        s = report[key]
        dice = f"{_cell(s['dice'])} [{_cell(s['dice_without_empty'])}]"
        jaccard = f"{_cell(s['jaccard'])} [{_cell(s['jaccard_without_empty'])}]"
        lines.append(
            f"{name:<22}{dice:<18}{_cell(s['hd95'], 2):<9}{jaccard:<18}{s['empty_predictions']} / {s['slices']}"
        )
    u = report["uncertainty"]
    lines.append(
        f"slices without tumour: {report['empty_label_slices']}, of which the ensemble marks tumour in "
        f"{report['false_positive_slices']}"
    )
    lines.append(
        f"uncertainty: boundary/elsewhere variance {u['boundary_variance_ratio']:.2f}, variance-error AUROC "
        f"{u['variance_error_auroc']:.3f}, ECE of the mean map {u['mean_map_ece']:.4f}"
    )
    return "\n".join(lines)


class EnsembleReport(EndOfRunWriter):
    """Ignite handler that scores every evaluated slice and writes ``report.json`` when the run completes.

    Per item (after ``monai_ext.transforms.SplitEnsembled``): the ensemble mask ``pred`` and the first sample
    thresholded at ``threshold`` are scored against ``label`` on the slices whose label is not empty (the paper's
    test set), with Dice, Jaccard, HD95 and the empty-prediction count (``slice_scores``); slices with an empty
    label count how often the ensemble still predicts tumour. Over all slices, inside ``image > 0`` (the brain),
    it pools the variance, the mean map and the ensemble's errors for the boundary/elsewhere variance ratio, the
    variance-error AUROC and the ECE of the mean map.

    Args:
        output_dir: folder of ``report.json``.
        pred_key: key of the ensemble outputs (``{pred_key}_mean``, ``_variance``, ``_samples`` beside it).
        label_key: key of the binary ground truth.
        image_key: key of the image; the region scored for uncertainty is where any channel is > 0.
        threshold: threshold of a single sample.
        boundary_width: half-width in pixels of the ground-truth boundary band.
        output_transform: maps ``engine.state.output`` to the decollated items; identity by default.
        overwrite: replace an existing report; when False, ``attach`` refuses an existing one.
    """

    def __init__(
        self,
        output_dir: str | Path,
        pred_key: str = "pred",
        label_key: str = "label",
        image_key: str = "image",
        threshold: float = 0.5,
        boundary_width: float = 2.0,
        output_transform: Callable[[Any], Any] = lambda x: x,
        overwrite: bool = False,
    ) -> None:
        if not 0 < threshold < 1:
            raise ValueError(f"threshold must be in (0, 1), got {threshold}.")
        if not boundary_width > 0:
            raise ValueError(f"boundary_width must be > 0 pixels, got {boundary_width}.")
        self.pred_key, self.label_key, self.image_key = pred_key, label_key, image_key
        self.threshold = threshold
        self.boundary_width = boundary_width
        super().__init__(Path(output_dir) / "report.json", output_transform, overwrite)

    def reset(self) -> None:
        self.ensemble: list[dict] = []
        self.single: list[dict] = []
        self.false_positives = 0
        self.empty_labels = 0
        self.pixels: dict[str, list[np.ndarray]] = {"variance": [], "mean": [], "label": [], "region": [], "error": []}

    def __call__(self, engine: Engine) -> None:
        for item in output_items(self.output_transform(engine.state.output)):
            label = convert_to_numpy(item[self.label_key])[0] > 0.5
            mask = convert_to_numpy(item[self.pred_key])[0] > 0.5
            sample = convert_to_numpy(item[f"{self.pred_key}_samples"])[0] > self.threshold
            mean = convert_to_numpy(item[f"{self.pred_key}_mean"])[0]
            variance = convert_to_numpy(item[f"{self.pred_key}_variance"])[0]
            region = convert_to_numpy(item[self.image_key]).max(axis=0) > 0
            if label.any():
                self.ensemble.append(slice_scores(mask, label))
                self.single.append(slice_scores(sample, label))
            else:
                self.empty_labels += 1
                self.false_positives += int(mask.any())
            for name, values in (("variance", variance), ("mean", mean), ("label", label), ("region", region)):
                self.pixels[name].append(values)
            self.pixels["error"].append(mask != label)

    def uncertainty(self) -> dict[str, float]:
        """The three uncertainty scores over the pooled pixels of the run."""
        p = self.pixels

        def inside(name: str) -> list[np.ndarray]:  # the pixels of each slice within its region
            return [values[region] for values, region in zip(p[name], p["region"], strict=True)]

        return {
            "boundary_variance_ratio": boundary_variance_ratio(
                p["variance"], p["label"], p["region"], self.boundary_width
            ),
            "variance_error_auroc": error_auroc(inside("variance"), inside("error")),
            "mean_map_ece": expected_calibration_error(inside("mean"), inside("label")),
        }

    def report(self) -> dict:
        return {
            "single_sample": summarize_scores(self.single),
            "ensemble": summarize_scores(self.ensemble),
            "empty_label_slices": self.empty_labels,
            "false_positive_slices": self.false_positives,
            "uncertainty": self.uncertainty(),
        }

    def write(self) -> None:
        if not self.pixels["label"]:
            self.logger.warning(f"no item evaluated: '{self.path}' not written.")
            return
        report = self.report()
        print(ensemble_table(report))
        write_json(self.path, {**environment(), **report}, overwrite=self.overwrite)
        self.logger.info(f"report written to '{self.path}'.")

"""Whether an uncertainty map can be trusted: scores of a per-pixel variance and a mean probability map.

Wolleb et al. (MIDL 2022, Fig. 3 and 5) show the variance of their implicit ensembles only as pictures, high at
the tumour boundary. These pool the pixels of a whole test set and put numbers on it:

- :func:`boundary_variance_ratio`: the mean variance within ``width`` pixels of the ground-truth boundary over
  the mean variance elsewhere in a region (the brain);
- :func:`error_auroc`: the area under the ROC curve of the variance as a predictor of the ensemble's pixel errors;
- :func:`expected_calibration_error`: the ECE of the mean map read as the probability of the foreground (binary
  calibration of that probability, not the top-label confidence of Guo et al., ICML 2017, eq. 3; equal-width
  bins). MONAI 1.6 has ``CalibrationErrorMetric``, MONAI 1.5 (which MONAI Label runs with) does not.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.stats import rankdata


def boundary_band(label: np.ndarray, width: float = 2.0) -> np.ndarray:
    """Pixels at most ``width`` pixels (Euclidean) from the boundary of a binary ``label``, on either side.

    A foreground pixel's distance to the boundary is its distance to the nearest background pixel, and the other
    way round; an empty or full label has no boundary (an all-False band).
    """
    label = np.asarray(label).astype(bool)
    if not label.any() or label.all():
        return np.zeros(label.shape, dtype=bool)
    inside = ndimage.distance_transform_edt(label)
    outside = ndimage.distance_transform_edt(~label)
    return np.where(label, inside, outside) <= width


def _pooled(arrays: list[np.ndarray] | np.ndarray) -> np.ndarray:
    if isinstance(arrays, np.ndarray):
        return arrays.ravel()
    return np.concatenate([np.asarray(a).ravel() for a in arrays]) if len(arrays) else np.zeros(0)


def boundary_variance_ratio(
    variances: list[np.ndarray], labels: list[np.ndarray], regions: list[np.ndarray], width: float = 2.0
) -> float:
    """Mean variance in the ground-truth boundary band over the mean variance elsewhere, pooled over images.

    Args:
        variances: per image, the ensemble's per-pixel variance.
        labels: per image, the binary ground truth (same shape).
        regions: per image, where to look (e.g. the brain: image > 0); pixels outside are ignored.
        width: half-width of the band in pixels (the default 2 is the issue's choice, about the boundary's blur).

    Returns:
        the ratio; infinite when the variance is zero away from the band only; NaN when the band or the rest of
        the region is empty, or the variance is zero everywhere.
    """
    if not len(variances) == len(labels) == len(regions):
        raise ValueError(
            f"need as many variances, labels and regions, got {len(variances)}, {len(labels)}, {len(regions)}."
        )
    band_values, other_values = [], []
    for variance, label, region in zip(variances, labels, regions, strict=False):
        variance, region = np.asarray(variance, dtype=np.float64), np.asarray(region).astype(bool)
        if variance.shape != np.shape(label) or variance.shape != region.shape:
            raise ValueError(
                f"variance, label and region must share one shape, got {variance.shape}, {np.shape(label)}, "
                f"{region.shape}."
            )
        band = boundary_band(label, width)
        band_values.append(variance[band & region])
        other_values.append(variance[~band & region])
    band_all, other_all = _pooled(band_values), _pooled(other_values)
    if band_all.size == 0 or other_all.size == 0 or band_all.mean() == other_all.mean() == 0:
        return float("nan")
    return float(band_all.mean() / other_all.mean()) if other_all.mean() > 0 else float("inf")


def error_auroc(scores: list[np.ndarray] | np.ndarray, errors: list[np.ndarray] | np.ndarray) -> float:
    """AUROC of ``scores`` (e.g. the variance) as a predictor of the binary ``errors``, pooled over images.

    The Mann-Whitney form: the probability that an error pixel scores above a correct pixel, ties counting
    one half. NaN when there are no errors or no correct pixels.
    """
    s, e = _pooled(scores).astype(np.float64), _pooled(errors).astype(bool)
    if s.shape != e.shape:
        raise ValueError(f"scores and errors must hold as many pixels, got {s.size} and {e.size}.")
    positives, negatives = int(e.sum()), int((~e).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    ranks = rankdata(s)  # average ranks: ties count one half
    return float((ranks[e].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def expected_calibration_error(
    probabilities: list[np.ndarray] | np.ndarray, labels: list[np.ndarray] | np.ndarray, num_bins: int = 10
) -> float:
    """ECE of the foreground probabilities: sum_b |B_b| / N * |frequency of foreground in B_b - mean p in B_b|.

    Bins are ``num_bins`` equal-width intervals of [0, 1] (the last one closed); pooled over all pixels. NaN when
    there is no pixel.
    """
    if num_bins < 1:
        raise ValueError(f"num_bins must be >= 1, got {num_bins}.")
    p, y = _pooled(probabilities).astype(np.float64), _pooled(labels).astype(np.float64)
    if p.shape != y.shape:
        raise ValueError(f"probabilities and labels must hold as many pixels, got {p.size} and {y.size}.")
    if p.size == 0:
        return float("nan")
    if p.min() < 0 or p.max() > 1:
        raise ValueError(f"probabilities must lie in [0, 1], got [{p.min()}, {p.max()}].")
    bins = np.minimum((p * num_bins).astype(np.int64), num_bins - 1)
    gaps = np.abs(np.bincount(bins, weights=y, minlength=num_bins) - np.bincount(bins, weights=p, minlength=num_bins))
    return float(gaps.sum() / p.size)

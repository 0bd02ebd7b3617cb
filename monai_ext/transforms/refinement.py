"""Label-map boundaries sharpened on the image: iterated conditional modes on a Potts model (Besag, "On the
statistical analysis of dirty pictures", 1986). A learned embedding describes each pixel by its neighbourhood, so
the segments it gives spill over their true edges (by about half the CUTS reconstruction patch); the image itself
puts the edges back."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from itertools import product

import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform
from monai.utils import convert_to_tensor

from monai_ext.transforms.persistence import relabel_by_first_appearance
from monai_ext.transforms.validation import check_integer_labels

__all__ = ["PottsRefinement", "PottsRefinementd", "potts_refinement"]

OUTSIDE = -1  # label of the padding around the image: never a candidate, never a neighbour


def _neighbourhoods(labels: torch.Tensor) -> torch.Tensor:
    """(3^D, *spatial) labels of every pixel's 3^D neighbourhood (the pixel itself in the middle),
    ``OUTSIDE`` beyond the border."""
    padded = F.pad(labels, (1, 1) * labels.ndim, value=OUTSIDE)
    shape = labels.shape
    return torch.stack(
        [
            padded[tuple(slice(o, o + n) for o, n in zip(offset, shape, strict=True))]
            for offset in product(range(3), repeat=labels.ndim)
        ]
    )


def _label_means(image: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(k,) pixel count and (k, C) mean intensity of every label 0 .. k - 1 (zero for a label without pixels)."""
    flat, pixels = labels.reshape(-1), image.reshape(len(image), -1)
    count = torch.bincount(flat, minlength=int(labels.max()) + 1).to(image.dtype)
    means = torch.zeros(len(count), len(image), dtype=image.dtype).index_add_(0, flat, pixels.T)
    return count, means / count.clamp(min=1)[:, None]


def _unary(image: torch.Tensor, count: torch.Tensor, means: torch.Tensor, variance: torch.Tensor) -> torch.Tensor:
    """(k, *spatial) Gaussian data cost of every label (``count`` and ``means`` of :func:`_label_means`) at every
    pixel: sum over channels of (x - mean of the label)^2 / (2 variance); labels without pixels cost infinity."""
    pixels = image.reshape(len(image), -1)
    cost = (((pixels.T[None] - means[:, None]) ** 2) / (2 * variance)).sum(-1)
    cost[count == 0] = torch.inf
    return cost.reshape(len(count), *image.shape[1:])


def _pooled_variance(image: torch.Tensor, labels: torch.Tensor, means: torch.Tensor) -> torch.Tensor:
    """(C,) within-label variance of every channel around the label ``means``, pooled over the labels (floored to
    stay positive)."""
    pixels = image.reshape(len(image), -1)
    variance = ((pixels - means[labels.reshape(-1)].T) ** 2).mean(dim=1)
    return variance.clamp(min=1e-6 * float(pixels.var(dim=1, correction=0).max().clamp(min=1e-12)))


def potts_refinement(
    labels: torch.Tensor, image: torch.Tensor, smoothness: float = 0.5, max_iterations: int = 30
) -> torch.Tensor:
    """Labels moved to the neighbouring label that fits the image best, by iterated conditional modes.

    Energy: the negative log-likelihood of one Gaussian per label, with a diagonal covariance shared by the labels,
    sum over pixels of |x_i - m_l(i)|^2 / (2 s^2) + (N / 2) sum over channels of log s^2, with m_l the mean
    intensity of label l and s^2 the per-channel variance, plus ``smoothness`` times the number of neighbouring
    pixel pairs (all 3^D - 1 neighbours) with different labels. Each iteration first sets the means and variances
    to their estimates from the current labels (the within-label variance, pooled), then visits the pixels in the
    2^D interleaved classes of the parity of their coordinates (no two pixels of a class are neighbours): every
    pixel of a class takes, at once, the label among those of its 3^D neighbourhood with the lowest energy, keeping
    its own on a tie. Each step lowers or keeps the energy, so the iterations stop at a local minimum: no pixel can
    lower it by taking a neighbour's label. A label is never created and can disappear.

    Args:
        labels: (*spatial) integer labels >= 0.
        image: (C, *spatial) intensities on the same grid.
        smoothness: the Potts weight, >= 0 (0: each pixel takes the nearest-mean label of its neighbourhood).
        max_iterations: at most this many iterations, >= 1.

    Returns:
        (*spatial) int64 labels renumbered 0 .. k - 1 by first appearance in raster order.
    """
    _check_refinement_options(smoothness, max_iterations)
    labels, image = _checked_inputs(labels, image)
    coordinates = torch.meshgrid(*(torch.arange(n) for n in labels.shape), indexing="ij")
    classes = [
        torch.stack([c % 2 == bit for c, bit in zip(coordinates, bits, strict=True)]).all(0)
        for bits in product((0, 1), repeat=labels.ndim)
    ]
    middle = 3**labels.ndim // 2  # the pixel itself in its neighbourhood
    for _ in range(max_iterations):
        count, means = _label_means(image, labels)
        unary = _unary(image, count, means, _pooled_variance(image, labels, means))
        changed = False
        for members in classes:  # each class's pixels only: (3^D, M) candidates for its M pixels
            candidates, own = _neighbourhoods(labels)[:, members], labels[members]
            valid = candidates != OUTSIDE
            disagree = torch.stack([((candidates != c) & valid).sum(0) - (c != own).long() for c in candidates])
            data_cost = unary[:, members].gather(0, candidates.clamp(min=0))
            cost = torch.where(valid, data_cost + smoothness * disagree, torch.inf)
            lowest, best = cost.min(0)
            update = lowest < cost[middle]  # strictly better: a tie keeps the pixel's own label
            if update.any():
                labels[members] = torch.where(update, candidates.gather(0, best[None])[0], own)
                changed = True
        if not changed:
            break
    return relabel_by_first_appearance(labels)


def _check_refinement_options(smoothness: float, max_iterations: int) -> None:
    if smoothness < 0 or max_iterations < 1:
        raise ValueError(f"smoothness must be >= 0 and max_iterations >= 1, got {smoothness} and {max_iterations}.")


def _checked_inputs(labels: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(*spatial) int64 labels (a copy) and (C, *spatial) float64 intensities, after checking that they match."""
    labels, image = convert_to_tensor(labels, track_meta=False), convert_to_tensor(image, track_meta=False)
    if image.ndim != labels.ndim + 1 or tuple(image.shape[1:]) != tuple(labels.shape):
        raise ValueError(
            f"image must be (C, *spatial) on the labels' grid {tuple(labels.shape)}, got shape {tuple(image.shape)}."
        )
    check_integer_labels(labels)
    if not torch.isfinite(image).all():
        raise ValueError("image has NaN or infinite values.")
    return labels.long().clone(), image.to(torch.float64)


class PottsRefinement(Transform):
    """Array form of :func:`potts_refinement`: a (1, *spatial) label map and the (C, *spatial) image it labels ->
    the refined (1, *spatial) label map (the label map's metadata kept).

    Args:
        smoothness: the Potts weight, >= 0.
        max_iterations: at most this many iterations, >= 1.
    """

    def __init__(self, smoothness: float = 0.5, max_iterations: int = 30) -> None:
        _check_refinement_options(smoothness, max_iterations)
        self.smoothness = smoothness
        self.max_iterations = max_iterations

    def __call__(self, labels: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        if labels.ndim != image.ndim or len(labels) != 1:
            raise ValueError(f"labels must be (1, *spatial), got shape {tuple(labels.shape)}.")
        labels = torch.as_tensor(labels)
        image = torch.as_tensor(image).detach().cpu()
        refined = potts_refinement(labels[0].cpu(), image, self.smoothness, self.max_iterations)
        meta = dict(getattr(labels, "meta", {}))
        return MetaTensor(refined[None].to(device=labels.device, dtype=labels.dtype), meta=meta)


class PottsRefinementd(MapTransform):
    """Dictionary form of :class:`PottsRefinement`: the label maps under ``keys`` refined on the image under
    ``image_key``.

    Args:
        keys: keys of (1, *spatial) label maps.
        image_key: key of the (C, *spatial) image on the same grid.
        smoothness: the Potts weight, >= 0.
        max_iterations: at most this many iterations, >= 1.
        allow_missing_keys: skip an absent key.
    """

    def __init__(
        self,
        keys: KeysCollection,
        image_key: str = "image",
        smoothness: float = 0.5,
        max_iterations: int = 30,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.image_key = image_key
        self.refinement = PottsRefinement(smoothness, max_iterations)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if self.image_key not in d:
            raise KeyError(f"PottsRefinementd needs the image under {self.image_key!r}; keys: {sorted(map(str, d))}.")
        for key in self.key_iterator(d):
            try:
                d[key] = self.refinement(d[key], d[self.image_key])
            except ValueError as error:
                raise ValueError(f"PottsRefinementd, key {key!r} on image {self.image_key!r}: {error}") from error
        return d

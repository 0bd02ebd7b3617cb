"""Figures: discovered hierarchical parts (Tursynbek & Niethammer, MICCAI 2023, Fig. 3 style) and segmentation
ensembles (Wolleb et al., MIDL 2022, Fig. 3 style).

Discovery: one PNG, one row per volume: the image slice, the predicted part map of each level and, when given,
the ground truth of each level. Ensembles: one PNG per image: the image, a few samples, the mean, the variance
and, when given, the ground truth. Written with matplotlib's Agg canvas (no display, no pyplot state).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from monai.utils import convert_to_numpy

from monai_ext.metrics import matched_dice, relabel

__all__ = ["channels_last", "discovery_figure", "ensemble_panel", "panel_views"]

ArrayLike = np.ndarray | torch.Tensor


def _resize(volume: np.ndarray, shape: tuple[int, ...], labels: bool) -> np.ndarray:
    """Resize a channel-first ``(C, *spatial)`` volume to ``shape``: nearest for labels, (bi/tri)linear else."""
    if volume.shape[1:] == shape:
        return volume
    mode = "nearest-exact" if labels else ("bilinear" if len(shape) == 2 else "trilinear")
    t = torch.as_tensor(volume, dtype=torch.float32)[None]
    out = torch.nn.functional.interpolate(t, size=shape, mode=mode)[0].numpy()
    return np.rint(out).astype(np.int64) if labels else out


def _level_stack(maps: Sequence[ArrayLike] | ArrayLike, spatial_dims: int, name: str) -> np.ndarray:
    """Per-level maps, each ``(*spatial)`` or ``(1, *spatial)``, or one ``(L, *spatial)`` array -> ``(L, *spatial)``."""
    arrays = [convert_to_numpy(m) for m in maps]
    arrays = [a[0] if a.ndim == spatial_dims + 1 and a.shape[0] == 1 else a for a in arrays]
    if not arrays or len({a.shape for a in arrays}) > 1 or arrays[0].ndim != spatial_dims:
        raise ValueError(
            f"{name} must hold one {spatial_dims}D map per level, all of one shape, got shapes "
            f"{[a.shape for a in arrays]}."
        )
    return np.stack(arrays)


def _centre_slice(volume: np.ndarray) -> np.ndarray:
    """The 2D ``(H, W)`` slice of a ``(C, H, W[, D])`` volume's channels: the axial centre ``D // 2`` in 3D."""
    return volume[..., volume.shape[-1] // 2] if volume.ndim == 4 else volume


def _recolour(pred: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, float]:
    """Parts -> matched ground-truth labels; unmatched part ``p`` -> ``max(label) + 1 + p``. Returns map, Dice."""
    result = matched_dice(pred, label)
    matched = relabel(pred, result, unmatched=-1)
    return np.where(matched < 0, int(label.max()) + 1 + pred, matched), result.mean


def _row(
    i: int, image: ArrayLike, level_maps: Sequence[ArrayLike] | ArrayLike, label: ArrayLike | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, list[float] | None]:
    """Slices of one volume: image ``(H, W)``, (recoloured) maps ``(L, H, W)``, labels or None, Dice or None."""
    image = convert_to_numpy(image).astype(np.float32)
    if image.ndim not in (3, 4):
        raise ValueError(f"image {i} must be channel-first (C, H, W[, D]), got shape {image.shape}.")
    maps = _level_stack(level_maps, image.ndim - 1, f"level_maps[{i}]").astype(np.int64)
    shape = maps.shape[1:]
    image = _centre_slice(_resize(image[:1], shape, labels=False))[0]
    if label is None:
        return image, _centre_slice(maps), None, None
    label = convert_to_numpy(label).astype(np.int64)
    if label.ndim != maps.ndim or label.shape[0] not in (1, maps.shape[0]):
        raise ValueError(
            f"labels[{i}] must be (L, *spatial) with one channel per level (L = {maps.shape[0]}) or one channel "
            f"for every level, got shape {label.shape}."
        )
    label = np.repeat(label, maps.shape[0] // label.shape[0], axis=0)
    label = _resize(label, shape, labels=True)
    recoloured = [_recolour(p, g) for p, g in zip(maps, label, strict=True)]
    maps = np.stack([m for m, _ in recoloured])
    return image, _centre_slice(maps), _centre_slice(label), [d for _, d in recoloured]


def show(axis: Axes, array: ArrayLike, raster: bool = False, **options: object) -> None:
    """Draw a 2D array: a scan's ``(x, y)`` transposed with the origin at the lower left, a picture's ``(rows,
    columns)`` (``raster``) as it is, first row at the top. ``options`` go to ``imshow``."""
    array = np.asarray(array)
    axis.imshow(array if raster else array.T, origin="upper" if raster else "lower", **options)


def discovery_figure(
    path: str | Path,
    images: Sequence[ArrayLike],
    level_maps: Sequence[Sequence[ArrayLike] | ArrayLike],
    labels: Sequence[ArrayLike | None] | None = None,
    titles: Sequence[str] | None = None,
    level_titles: Sequence[str] | None = None,
    raster: bool = False,
) -> Path:
    """Write one PNG of discovered part maps: one row per volume, one column per image / level.

    Columns: the image, the predicted part map of each level, then (when ``labels`` are given) the ground truth
    of each level. 3D volumes show their axial slice through the centre, index ``D // 2`` of the last spatial
    axis (MONAI's RAS ``(H, W, D)`` layout), the same index for the image, prediction and ground truth;
    slices are drawn transposed with the origin at the lower left (a picture's, ``raster``: as they are, first row
    at the top).

    Colours are categorical (``tab20``, cycled beyond 20 labels), one colour per label value across the figure.
    Without ground truth a part's colour is its index. With ground truth, each level's parts are first matched
    to the ground-truth classes over the whole volume (:func:`monai_ext.metrics.matched_dice`) and recoloured
    to them (:func:`monai_ext.metrics.relabel`), so that a part shares the colour of its class; parts matched to
    no class get colours after the classes'. The matched Dice is printed under each predicted map.

    A volume whose image or ground truth is on another grid than its predicted maps is resized to the maps'
    grid (linear for the image, nearest for labels); this assumes the same field of view. Pass the image on the
    prediction's grid (e.g. the original image when the prediction was inverted) when they differ.

    Args:
        path: PNG file to write (its folder is created); an existing file is replaced.
        images: one channel-first image ``(C, H, W[, D])`` per volume; channel 0 is shown.
        level_maps: per volume, the predicted part map of each level (a sequence of ``(H, W[, D])`` or
            ``(1, H, W[, D])`` integer maps, or one ``(L, H, W[, D])`` array), the same number of levels for
            every volume.
        labels: per volume, the ground truth ``(L, H, W[, D])`` with one channel per level, or None for a
            volume without ground truth; None: no ground truth at all.
        titles: one row title per volume (e.g. file names); default ``volume 1``, ``volume 2``, ...
        level_titles: one column title per level; default ``parts, level 1``, ``parts, level 2``, ...
        raster: the 2D arrays are (rows, columns) of a picture (a PNG input), not (x, y) of a scan.

    Returns:
        the path written.

    Raises:
        ValueError: no volume, sequences of different lengths, an image that is not ``(C, H, W[, D])``, maps of
            different shapes or level counts, or ground truth without one channel per level.
    """
    n = len(images)
    if n == 0 or len(level_maps) != n or (labels is not None and len(labels) != n) or (titles and len(titles) != n):
        raise ValueError(
            f"images, level_maps, labels and titles need one entry per volume (at least one), got "
            f"{n}, {len(level_maps)}, {None if labels is None else len(labels)}, "
            f"{None if titles is None else len(titles)}."
        )
    labels = list(labels) if labels is not None else [None] * n
    titles = list(titles) if titles else [f"volume {i + 1}" for i in range(n)]
    rows = [_row(i, images[i], level_maps[i], labels[i]) for i in range(n)]
    num_levels = {r[1].shape[0] for r in rows}
    if len(num_levels) > 1:
        raise ValueError(f"every volume needs the same number of levels, got {sorted(num_levels)}.")
    (num_levels,) = num_levels
    with_labels = any(r[2] is not None for r in rows)

    top = max(int(r[1].max()) for r in rows)
    top = max([top] + [int(r[2].max()) for r in rows if r[2] is not None])
    tab20 = colormaps["tab20"]
    cmap = ListedColormap([tab20(i % 20) for i in range(top + 1)])
    if level_titles is not None and len(level_titles) != num_levels:
        raise ValueError(f"level_titles needs one title per level ({num_levels}), got {len(level_titles)}.")
    columns = ["image", *(level_titles or [f"parts, level {k + 1}" for k in range(num_levels)])]
    columns += [f"ground truth, level {k + 1}" for k in range(num_levels)] if with_labels else []

    fig = Figure(figsize=(2.2 * len(columns), 2.2 * n), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, len(columns), squeeze=False)
    for r, (image, maps, label, dice) in enumerate(rows):
        panels = [image, *maps, *(label if label is not None else [None] * (len(columns) - 1 - num_levels))]
        for c, (ax, panel) in enumerate(zip(axes[r], panels, strict=True)):
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(columns[c], fontsize=8)
            if panel is None:
                ax.set_frame_on(False)
                continue
            if c == 0:
                show(ax, panel, raster, cmap="gray")
                ax.set_ylabel(titles[r], fontsize=8)
            else:
                show(ax, panel, raster, cmap=cmap, vmin=-0.5, vmax=top + 0.5, interpolation="nearest")
            if dice is not None and 1 <= c <= num_levels:
                ax.set_xlabel(f"matched Dice {dice[c - 1]:.2f}", fontsize=7)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def channels_last(array: ArrayLike) -> np.ndarray:
    """A channel-first (C, *spatial) array in the NIfTI layout: the spatial axes, then the channels when C > 1."""
    data = np.moveaxis(convert_to_numpy(array), 0, -1)
    return data[..., 0] if data.shape[-1] == 1 else data


def panel_views(image: ArrayLike, maps: Sequence[ArrayLike], channels: int) -> list[np.ndarray]:
    """2D views of an ensemble item for :func:`ensemble_panel`: the image (C, H, W), then each of ``maps``
    (samples (n * ``channels``, ...), mean, variance, label (``channels``, ...)) as the maximum over its mask
    channels, (n, H, W) for the samples and (1, H, W) for the others. A volume (C, X, Y, Z) is cut at the axial
    slice where the mean (``maps[1]``) has most mass, at the same relative depth on every grid."""
    arrays = [convert_to_numpy(image)] + [convert_to_numpy(m) for m in maps]
    arrays[1:] = [a.reshape(-1, channels, *a.shape[1:]).max(axis=1) for a in arrays[1:]]
    if arrays[0].ndim == 4:
        mass = arrays[2].sum(axis=(0, 1, 2))
        depth = int(np.argmax(mass)) / max(mass.shape[0] - 1, 1)
        arrays = [a[..., round(depth * (a.shape[-1] - 1))] for a in arrays]
    return arrays


def ensemble_panel(
    path: str | Path,
    image: ArrayLike,
    samples: ArrayLike,
    mean: ArrayLike,
    variance: ArrayLike,
    label: ArrayLike | None = None,
    max_samples: int = 3,
    title: str = "",
    raster: bool = False,
) -> Path:
    """Draw one 2D image with its sampled masks, their mean and variance, and the ground truth when given.

    Args:
        path: PNG file to write.
        image: (C, H, W); its last channel is shown (FLAIR for the BraTS order T1, T1ce, T2, FLAIR).
        samples: (n, H, W) sampled masks in [0, 1]; the first ``max_samples`` are shown.
        mean: (1, H, W) or (H, W) mean map.
        variance: (1, H, W) or (H, W) variance map.
        label: (1, H, W) or (H, W) ground truth, or None.
        max_samples: samples drawn, >= 1.
        title: figure title (e.g. the file name).
        raster: the arrays are (rows, columns) of a picture (a PNG input), not (x, y) of a scan.
    """
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}.")
    maps = [np.squeeze(convert_to_numpy(x)) for x in (mean, variance)]
    shown = [convert_to_numpy(s) for s in convert_to_numpy(samples)[:max_samples]]
    panels = [(convert_to_numpy(image)[-1], "image", "gray", None)]
    panels += [(s, f"sample {i + 1}", "gray", (0, 1)) for i, s in enumerate(shown)]
    panels += [(maps[0], "mean", "gray", (0, 1)), (maps[1], "variance", "magma", (0, 0.25))]
    if label is not None:
        panels.append((np.squeeze(convert_to_numpy(label)), "ground truth", "gray", (0, 1)))
    figure = Figure(figsize=(2.2 * len(panels), 2.6))
    FigureCanvasAgg(figure)
    for index, (array, name, cmap, limits) in enumerate(panels):
        axis = figure.add_subplot(1, len(panels), index + 1)
        vmin, vmax = limits if limits else (None, None)
        show(axis, array, raster, cmap=cmap, vmin=vmin, vmax=vmax)
        axis.set_title(name, fontsize=9)
        axis.axis("off")
    if title:
        figure.suptitle(title, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    return path

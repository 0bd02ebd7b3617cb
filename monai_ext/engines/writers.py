"""Ignite handlers that write what an evaluation run produced: the discovered hierarchy (``hierarchy.json``), the
discovery figure (Tursynbek & Niethammer, MICCAI 2023), the maps and panels of segmentation ensembles (Wolleb et
al., MIDL 2022) and the condensation levels of CUTS (Liu, Amodio et al.). The drawing itself is in
``monai_ext.visualize``; these attach it to an engine."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.transforms import LoadImage
from monai.utils import convert_to_numpy
from PIL import Image

from monai_ext.engines.handlers import EndOfRunWriter
from monai_ext.transforms.hierarchy import (
    HierarchyAccumulator,
    level_label_maps,
    output_items,
    parse_num_parts,
    tree_from_tables,
)
from monai_ext.visualize import channels_last, discovery_figure, ensemble_panel, panel_views

__all__ = [
    "DiscoveryFigureWriter",
    "EnsembleWriter",
    "HierarchyWriter",
    "LevelsWriter",
    "MapsWriter",
    "PerItemWriter",
]


class HierarchyWriter(EndOfRunWriter):
    """Ignite handler that writes the discovered hierarchy tree of an evaluation run to ``hierarchy.json``.

    Attach it to an evaluator. After each iteration it reads every item's concatenated per-level probabilities
    (key ``pred_key`` of the engine output passed through ``output_transform``; place it after any ``Invertd``
    so the counts are on the original grid), takes the per-level argmax and adds the item to a
    :class:`HierarchyAccumulator`; it also keeps the tree of each volume, named by its
    ``pred.meta["filename_or_obj"]`` (or its index in the run when there is none; a repeated name gets
    ``#index`` appended). On COMPLETED it writes ``output_dir/filename``::

        {
          "num_parts": [2, 4, 8],
          "dataset": <tree of all voxels of the run>,
          "volumes": {"<filename_or_obj>": <tree of that volume>, ...}
        }

    with trees in the format of :func:`hierarchy_tree`: for each fine part, the coarse part that contains most
    of it, and the share of voxels that break the nesting. The counts restart at each run (STARTED), so an
    evaluator run every few epochs rewrites the file with its latest run. One process only: under distributed
    evaluation each rank would count only its own shard.

    Args:
        output_dir: folder of the JSON file, created if needed.
        num_parts: number of parts ``K_l`` of each level, coarse to fine; at least two levels, each >= 2.
        pred_key: key of the concatenated probabilities in each item.
        output_transform: maps ``engine.state.output`` to the decollated items (a list of dicts); identity by
            default. A batched dict is decollated.
        filename: name of the JSON file.
        overwrite: replace an existing non-empty file; when False, ``attach`` raises FileExistsError.
    """

    def __init__(
        self,
        output_dir: str | Path,
        num_parts: Sequence[int] = (2, 4, 8),
        pred_key: str = "pred",
        output_transform: Callable[[Any], Any] = lambda x: x,
        filename: str = "hierarchy.json",
        overwrite: bool = False,
    ) -> None:
        if not filename or Path(filename).name != filename:
            raise ValueError(f"filename must be a plain file name without folders, got {filename!r}.")
        self.accumulator = HierarchyAccumulator(num_parts)
        self.num_parts = self.accumulator.num_parts
        self.pred_key = pred_key
        super().__init__(Path(output_dir) / filename, output_transform, overwrite)

    def reset(self) -> None:
        """Forget the volumes counted so far."""
        self.accumulator.reset()
        self.volumes: dict[str, dict[str, Any]] = {}

    def __call__(self, engine: Engine) -> None:
        """Count the items of the current iteration."""
        for item in output_items(self.output_transform(engine.state.output)):
            pred = item[self.pred_key]
            tables = self.accumulator.add(level_label_maps(pred, self.num_parts))
            index = len(self.volumes)
            name = str(getattr(pred, "meta", {}).get("filename_or_obj", index))
            self.volumes[name if name not in self.volumes else f"{name}#{index}"] = tree_from_tables(
                tables, self.num_parts
            )

    def write(self) -> None:
        """Write the dataset tree and the per-volume trees to the JSON file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        content = {"num_parts": self.num_parts, "dataset": self.accumulator.tree(), "volumes": self.volumes}
        self.path.write_text(json.dumps(content, indent=1))
        self.logger.info(f"hierarchy of {len(self.volumes)} volume(s) written to '{self.path}'.")


class DiscoveryFigureWriter(EndOfRunWriter):
    """Ignite handler that draws the first volumes of an evaluation run with :func:`discovery_figure`.

    Attach it to an evaluator. It keeps the first ``num_volumes`` items of each run (STARTED restarts the
    collection): the image (key ``image_key``), the per-level argmax of the concatenated probabilities (key
    ``pred_key``, see :func:`monai_ext.transforms.level_label_maps`) and, when the item has it, the ground truth
    (key ``label_key``, one channel per level). On COMPLETED it writes ``output_dir/filename``. Rows are named
    by ``pred.meta["filename_or_obj"]`` (file name only) when present.

    After ``Invertd`` the prediction is on the original grid while ``"image"`` may still be the preprocessed
    one; :func:`discovery_figure` then resizes the image to the prediction's grid, which assumes the same field
    of view. Name a key holding the image on the prediction's grid in ``image_key`` when they differ.

    Args:
        output_dir: folder of the PNG, created if needed.
        num_parts: number of parts ``K_l`` of each level, coarse to fine; each >= 2.
        num_volumes: number of volumes drawn (rows), >= 1.
        image_key: key of the image ``(C, *spatial)``; None reads the original image from the file named in the
            prediction's meta (the figure then shows the volume as stored, not as resized for the network).
        pred_key: key of the concatenated probabilities ``(sum(num_parts), *spatial)``.
        label_key: key of the ground truth ``(L, *spatial)``; None: never draw ground truth.
        output_transform: maps ``engine.state.output`` to the decollated items (a list of dicts); identity by
            default. A batched dict is decollated.
        filename: name of the PNG file.
        overwrite: replace an existing non-empty file; when False, ``attach`` raises FileExistsError.
    """

    def __init__(
        self,
        output_dir: str | Path,
        num_parts: Sequence[int] = (2, 4, 8),
        num_volumes: int = 4,
        image_key: str = "image",
        pred_key: str = "pred",
        label_key: str | None = "label",
        output_transform: Callable[[Any], Any] = lambda x: x,
        filename: str = "discovery.png",
        overwrite: bool = False,
    ) -> None:
        if isinstance(num_volumes, bool) or not isinstance(num_volumes, int) or num_volumes < 1:
            raise ValueError(f"num_volumes must be an integer >= 1, got {num_volumes!r}.")
        if not filename.endswith(".png") or Path(filename).name != filename:
            raise ValueError(f"filename must be a plain file name ending in '.png', got {filename!r}.")
        self.num_parts = parse_num_parts(num_parts)
        self.num_volumes = num_volumes
        self.image_key = image_key
        self.pred_key = pred_key
        self.label_key = label_key
        super().__init__(Path(output_dir) / filename, output_transform, overwrite)

    def reset(self) -> None:
        """Forget the volumes collected so far."""
        self.images: list[np.ndarray] = []
        self.level_maps: list[np.ndarray] = []
        self.labels: list[np.ndarray | None] = []
        self.titles: list[str] = []

    def __call__(self, engine: Engine) -> None:
        """Keep the items of the current iteration until ``num_volumes`` are collected."""
        for item in output_items(self.output_transform(engine.state.output)):
            if len(self.images) >= self.num_volumes:
                return
            pred = item[self.pred_key]
            name = getattr(pred, "meta", {}).get("filename_or_obj")
            label = item.get(self.label_key) if self.label_key is not None else None
            image = item[self.image_key] if self.image_key is not None else self._load(name)
            self.images.append(convert_to_numpy(image))
            self.level_maps.append(np.stack([convert_to_numpy(m[0]) for m in level_label_maps(pred, self.num_parts)]))
            self.labels.append(None if label is None else convert_to_numpy(label))
            self.titles.append(Path(str(name)).name if name else f"volume {len(self.images)}")

    @staticmethod
    def _load(name: object) -> np.ndarray:
        """The image as stored on disk (channel first), for ``image_key=None``."""
        if not name:
            raise ValueError("image_key=None needs the prediction's meta 'filename_or_obj' to read the image from.")
        return LoadImage(image_only=True, ensure_channel_first=True)(str(name))

    def write(self) -> None:
        """Draw the collected volumes (nothing when the run had no item)."""
        if not self.images:
            self.logger.warning(f"no item collected: '{self.path}' not written.")
            return
        discovery_figure(self.path, self.images, self.level_maps, self.labels, self.titles)
        self.logger.info(f"{len(self.images)} volume(s) drawn to '{self.path}'.")


PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")  # read by MONAI's PILReader, which reverses the pixel axes


def strip_image_suffix(name: str) -> str:
    """A file name without its image extension, the rest kept: ``sub1.z048.nii.gz`` -> ``sub1.z048``."""
    stem, suffix = os.path.splitext(name)
    if suffix == ".gz":
        stem = os.path.splitext(stem)[0]
    return stem


def _reverse_pixel_axes(value: Any) -> Any:
    """An array or tensor of two or more dimensions with its last two axes swapped; anything else as it is."""
    if isinstance(value, torch.Tensor | np.ndarray) and value.ndim >= 2:
        return convert_to_numpy(value).swapaxes(-1, -2)
    return value


class PerItemWriter:
    """Base of the handlers that write files for every item of an evaluation run, named after the item's image.

    Files go into ``output_dir`` as ``<image name><suffix>``, where the image name is the input's file name without
    its extension (``sub1.z048.nii.gz`` -> ``sub1.z048``), under the input's sub-folder relative to
    ``data_root_dir`` (so slices of different subjects with the same file name do not collide). Two inputs that
    would still share a name (``a.nii`` and ``a.nii.gz``, or inputs outside ``data_root_dir`` in different
    folders) are told apart by a short hash of the input's full path: ``<image name>_<hash>``. One input written
    twice in a run is an error, never an overwrite. An image built in memory is named ``item_001``, ``item_002``...

    A PNG (or JPEG, BMP) input is read by MONAI with its pixel axes reversed; its outputs are written in the
    input's own row / column order, so they overlay it: label maps as PNG (8 or 16 bit), other maps as NIfTI whose
    first axis is the PNG's rows; the panels show the image as the input does.

    A handler rather than a postprocessing transform, so that clients that run only a bundle's preprocessing,
    inferer and postprocessing (MONAI Label) never write these files. Subclasses define ``write_item(item, image,
    name, stem)`` and write through :meth:`save_labels` and :meth:`save_map`.

    Args:
        output_dir: folder of the files.
        data_root_dir: the dataset folder the image paths are relative to ("" keeps only the file name).
        image_key: key of the image (C, H, W) or (C, X, Y, Z).
        output_transform: maps ``engine.state.output`` to the decollated items; identity by default.
    """

    def __init__(
        self,
        output_dir: str | Path,
        data_root_dir: str | Path = "",
        image_key: str = "image",
        output_transform: Callable[[Any], Any] = lambda x: x,
    ) -> None:
        self.output_dir = Path(output_dir)
        self.data_root_dir = Path(data_root_dir).resolve() if str(data_root_dir) else None
        self.image_key = image_key
        self.output_transform = output_transform
        self.unnamed = 0
        self.written: dict[Path, str] = {}  # output stem -> the input it was written for, in this run
        self.pil_input = False

    def attach(self, engine: Engine) -> None:
        """Register on ITERATION_COMPLETED; a new run starts with no names taken."""
        engine.add_event_handler(Events.STARTED, lambda _: self.written.clear())
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        """Write the files of every item of the current iteration."""
        for item in output_items(self.output_transform(engine.state.output)):
            self.write(item)

    def stem(self, name: str) -> Path:
        """The path, without suffix, of the outputs of input ``name``: unique in this run.

        Raises:
            ValueError: ``name`` was written already in this run.
        """
        source = Path(name).resolve()  # one file under two spellings is one input
        folder = Path()
        if self.data_root_dir is not None and source.is_relative_to(self.data_root_dir):
            folder = source.parent.relative_to(self.data_root_dir)
        stem = self.output_dir / folder / strip_image_suffix(source.name)
        if stem in self.written and self.written[stem] != str(source):
            digest = hashlib.sha1(str(source).encode()).hexdigest()[:8]
            stem = stem.with_name(f"{stem.name}_{digest}")
        if stem in self.written:
            raise ValueError(
                f"'{name}' would be written twice to '{stem}*' in one run: an input listed twice (perhaps under two "
                "spellings of its path); list each input once."
            )
        self.written[stem] = str(source)
        return stem

    def write(self, item: dict) -> Path:
        """Write the files of one item; return the path stem they share (``<folder>/<image name>``).

        Raises:
            ValueError: the image is neither 2D (C, H, W) nor 3D (C, X, Y, Z), or its input was written already.
        """
        image = item[self.image_key]
        name = getattr(image, "meta", {}).get("filename_or_obj")
        if not name:  # an image built in memory: number it
            self.unnamed += 1
            name = f"item_{self.unnamed:03d}"
        name = str(name)
        if image.ndim not in (3, 4):
            raise ValueError(
                f"{type(self).__name__} takes 2D (C, H, W) or 3D (C, X, Y, Z) images; '{name}' has shape "
                f"{tuple(image.shape)}."
            )
        stem = self.stem(name)
        stem.parent.mkdir(parents=True, exist_ok=True)
        self.pil_input = image.ndim == 3 and name.lower().endswith(PIL_SUFFIXES)
        if self.pil_input:
            item = {key: _reverse_pixel_axes(value) for key, value in item.items()}
        self.write_item(item, item[self.image_key], name, stem)
        return stem

    def write_item(self, item: dict, image: Any, name: str, stem: Path) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define write_item.")

    def affine(self, array: Any) -> np.ndarray:
        """The affine to write ``array`` with: its own (a MetaTensor's), the identity for a PNG input's outputs."""
        return np.eye(4) if self.pil_input else convert_to_numpy(getattr(array, "affine", np.eye(4)))

    def save_labels(self, labels: np.ndarray, path: Path, affine: np.ndarray) -> Path:
        """Write a label map (spatial axes, then any channels): a PNG for a PNG input (8-bit, or 16-bit above 255),
        else ``<path>.nii.gz`` (uint8, or uint16 above 255). Returns the file written."""
        labels = np.asarray(labels)
        wide = labels.size > 0 and labels.max() > 255
        if self.pil_input and labels.ndim == 2:
            target = path.with_name(f"{path.name}.png")
            Image.fromarray(labels.astype(np.uint16 if wide else np.uint8)).save(target)
            return target
        return self.save_map(labels.astype(np.uint16 if wide else np.uint8), path, affine)

    @staticmethod
    def save_map(array: np.ndarray, path: Path, affine: np.ndarray) -> Path:
        """Write ``array`` as ``<path>.nii.gz`` with ``affine``. Returns the file written."""
        target = path.with_name(f"{path.name}.nii.gz")
        nib.save(nib.Nifti1Image(np.asarray(array), affine), str(target))
        return target


class MapsWriter(PerItemWriter):
    """Ignite handler that writes, for every item of an evaluation run, the maps under ``maps`` named after the item's
    image (:class:`PerItemWriter`): ``<image name>_<suffix>`` for each ``suffix -> key``. A map of integers is a
    label map (uint8, or uint16 above 255; a PNG for a PNG input), any other a float32 NIfTI; a channel-first map
    ``(C, *spatial)`` is written with its spatial axes first and its channels last (one channel: none).

    Args:
        output_dir: folder of the files.
        maps: file suffix -> key of the map in the item (keys absent from an item are skipped).
        data_root_dir: the dataset folder the image paths are relative to ("" keeps only the file name).
        image_key: key of the image (C, H, W) or (C, X, Y, Z).
        output_transform: maps ``engine.state.output`` to the decollated items; identity by default.
    """

    def __init__(
        self,
        output_dir: str | Path,
        maps: Mapping[str, str],
        data_root_dir: str | Path = "",
        image_key: str = "image",
        output_transform: Callable[[Any], Any] = lambda x: x,
    ) -> None:
        if not maps:
            raise ValueError("maps must name at least one suffix -> key.")
        super().__init__(output_dir, data_root_dir, image_key, output_transform)
        self.maps = dict(maps)

    def write_item(self, item: dict, image: Any, name: str, stem: Path) -> None:
        """The maps of one item."""
        for suffix, key in self.maps.items():
            if key not in item:
                continue
            array = item[key]
            spatial = channels_last(array) if array.ndim == image.ndim else convert_to_numpy(array)
            path = stem.with_name(f"{stem.name}_{suffix}")
            if np.issubdtype(spatial.dtype, np.integer) or spatial.dtype == bool:
                self.save_labels(spatial, path, self.affine(array))
            else:
                self.save_map(spatial.astype(np.float32), path, self.affine(array))


class EnsembleWriter(PerItemWriter):
    """Ignite handler that writes, for every item of an evaluation run, the ensemble's maps as NIfTI and its
    :func:`ensemble_panel` as PNG, named after the item's image (:class:`PerItemWriter`).

    Attach it to an evaluator after the postprocessing that splits the ensemble
    (``monai_ext.transforms.SplitEnsembled``) and inverts it to the image's grid. For each item it writes:

    - ``<image name>_mask.nii.gz`` (uint8), ``_mean.nii.gz`` and ``_variance.nii.gz`` (float32): the spatial
      arrays (H, W) or (X, Y, Z) (a map given without its channel axis, e.g. the mask after ``SqueezeDimd``, is
      written as it is), with the mask channels last when there are several, and the affine of
      ``{pred_key}_mean``. MONAI's ``SaveImaged`` writes a (1, H, W) mask of an image read from an H x W x C file as
      a 3D (1, H, W) volume, off the image's axes (MONAI 1.6.1 refuses every other layout);
    - ``<image name>_panel.png`` when ``save_panels``: the image, samples, mean, variance and, when the item has it,
      the label (each drawn on its own grid: the maps may be on the original grid, the image the network's input).
      A volume is drawn at the axial slice where the mean map has most mass (at the same relative depth on
      each grid); several mask channels are drawn as their maximum (their union: the whole tumour for the nested
      BraTS regions).

    Args:
        output_dir: folder of the files.
        data_root_dir: the dataset folder the image paths are relative to ("" keeps only the file name).
        pred_key: the ensemble output key (``"pred"``), with ``{pred_key}_mean``, ``_variance``, ``_samples``.
        image_key: key of the image (C, H, W).
        label_key: key of the ground truth; None never draws it.
        save_panels: also write the PNG panels.
        output_transform: maps ``engine.state.output`` to the decollated items; identity by default.
    """

    def __init__(
        self,
        output_dir: str | Path,
        data_root_dir: str | Path = "",
        pred_key: str = "pred",
        image_key: str = "image",
        label_key: str | None = "label",
        save_panels: bool = True,
        output_transform: Callable[[Any], Any] = lambda x: x,
    ) -> None:
        super().__init__(output_dir, data_root_dir, image_key, output_transform)
        self.pred_key = pred_key
        self.label_key = label_key
        self.save_panels = save_panels

    def write_item(self, item: dict, image: Any, name: str, stem: Path) -> None:
        """The three maps and the panel of one item."""
        key = self.pred_key
        mean = item[f"{key}_mean"]
        affine = self.affine(mean)
        for suffix, array in (("mask", item[key]), ("mean", mean), ("variance", item[f"{key}_variance"])):
            spatial = channels_last(array) if array.ndim == image.ndim else convert_to_numpy(array)  # no channel
            path = stem.with_name(f"{stem.name}_{suffix}")
            if suffix == "mask":
                self.save_labels(spatial, path, affine)
            else:
                self.save_map(spatial.astype(np.float32), path, affine)
        if self.save_panels:
            label = item.get(self.label_key) if self.label_key else None
            maps = [item[f"{key}_samples"], mean, item[f"{key}_variance"]] + ([label] if label is not None else [])
            views = panel_views(image, maps, channels=mean.shape[0])
            panel = stem.with_name(f"{stem.name}_panel.png")
            label_view = views[4] if label is not None else None
            ensemble_panel(panel, *views[:4], label_view, title=Path(name).name, raster=self.pil_input)


class LevelsWriter(PerItemWriter):
    """Ignite handler that writes, for every item of an evaluation run, a segmentation and the fine-to-coarse series
    of label maps it was read from (CUTS, Liu, Amodio et al., sec. 3.2: the levels of diffusion condensation and
    their persistent structures), named after the item's image (:class:`PerItemWriter`):

    - ``<image name>_seg.nii.gz``: the label map ``pred_key`` (uint16, spatial (H, W));
    - ``<image name>_levels.nii.gz``: the levels ``levels_key`` as an (H, W, L) uint16 stack, fine to coarse;
    - ``<image name>_levels.png`` when ``save_panels``: the image, the segmentation and up to ``max_drawn`` levels
      evenly spaced from the finest to the coarsest, each titled with its number of clusters.

    Args:
        output_dir: folder of the files.
        data_root_dir: the dataset folder the image paths are relative to ("" keeps only the file name).
        pred_key: key of the label map (1, H, W) or (H, W).
        levels_key: key of the levels (L, H, W).
        image_key: key of the image (C, H, W).
        save_panels: also write the PNG panels.
        max_drawn: the most levels drawn in a panel, >= 1.
        output_transform: maps ``engine.state.output`` to the decollated items; identity by default.
    """

    def __init__(
        self,
        output_dir: str | Path,
        data_root_dir: str | Path = "",
        pred_key: str = "pred",
        levels_key: str = "pred_levels",
        image_key: str = "image",
        save_panels: bool = True,
        max_drawn: int = 6,
        output_transform: Callable[[Any], Any] = lambda x: x,
    ) -> None:
        if max_drawn < 1:
            raise ValueError(f"max_drawn must be >= 1, got {max_drawn}.")
        super().__init__(output_dir, data_root_dir, image_key, output_transform)
        self.pred_key = pred_key
        self.levels_key = levels_key
        self.save_panels = save_panels
        self.max_drawn = max_drawn

    def write_item(self, item: dict, image: Any, name: str, stem: Path) -> None:
        """The segmentation, the level stack and the panel of one item."""
        pred, levels = item[self.pred_key], convert_to_numpy(item[self.levels_key])
        segmentation = convert_to_numpy(pred).reshape(levels.shape[1:])
        affine = self.affine(pred)
        self.save_labels(segmentation, stem.with_name(f"{stem.name}_seg"), affine)
        self.save_map(np.moveaxis(levels, 0, -1).astype(np.uint16), stem.with_name(f"{stem.name}_levels"), affine)
        if self.save_panels:
            drawn = np.unique(np.linspace(0, len(levels) - 1, min(self.max_drawn, len(levels))).round().astype(int))
            titles = [f"segmentation ({len(np.unique(segmentation))})"]
            titles += [f"level {i + 1} ({len(np.unique(levels[i]))})" for i in drawn]
            maps = [segmentation, *levels[drawn]]
            panel = stem.with_name(f"{stem.name}_levels.png")
            discovery_figure(
                panel, [image], [maps], titles=[Path(name).name], level_titles=titles, raster=self.pil_input
            )

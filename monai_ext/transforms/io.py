"""Image loading whose failures name the key and the file, and the reading steps of a labelled datalist record."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

from monai.config import KeysCollection
from monai.data import ImageReader, MetaTensor
from monai.transforms import ConcatItemsd, EnsureChannelFirstd, LoadImaged, MapTransform, SelectItemsd


class ReadImaged(LoadImaged):
    """MONAI's ``LoadImaged`` whose read errors name the key and the file; same arguments as ``LoadImaged``.

    ``LoadImaged`` lets a reader's error through as it is: a truncated ``.nii.gz`` stops a run with "EOFError:
    Compressed file ended before the end-of-stream marker was reached" and no file name. Here such an error is
    re-raised as ``ValueError`` naming the key and the path, with the reader's error chained. To find which file
    failed, the files are read again one by one, only after a failure; an error that does not come from reading
    a file (e.g. a missing key) passes through unchanged.
    """

    def __call__(self, data: Mapping[Hashable, object], reader: ImageReader | None = None) -> dict[Hashable, object]:
        try:
            return super().__call__(data, reader)
        except Exception:
            self._raise_for_unreadable(data, reader)
            raise

    def _raise_for_unreadable(self, data: Mapping[Hashable, object], reader: ImageReader | None) -> None:
        """Raise ``ValueError`` naming the first of the data's files under ``self.keys`` that cannot be read."""
        for key in (key for key in self.keys if key in data):
            try:
                self._loader(data[key], reader)
            except Exception as error:  # readers raise many types (EOFError, OSError, RuntimeError, ...)
                raise ValueError(f"'{key}' file '{data[key]}' could not be read as an image: {error}") from error


class SetSpatialShaped(MapTransform):
    """Set ``meta["spatial_shape"]`` of the images under ``keys`` to the spatial shape of the item under ``like``.

    For the end of a 2D bundle's postprocessing, after its own writers. An image read from an H x W x C file (a
    multi-contrast slice) keeps the file's shape (H, W, C) there, and MONAI Label's ``Restored``, run after the
    postprocessing, resizes the prediction to the last entries of the image's ``spatial_shape``: a 2D mask would
    become (W, C). The shape cannot be set earlier: MONAI 1.6's NIfTI writers need the file's 3-entry shape.

    Args:
        keys: keys of the images whose metadata is set.
        like: key of the channel-first item whose spatial shape is copied (e.g. ``"pred"``).
        allow_missing_keys: do not raise on a missing key.
    """

    def __init__(self, keys: KeysCollection, like: str, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.like = like

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        shape = tuple(d[self.like].shape[1:])
        for key in self.key_iterator(d):
            if isinstance(d[key], MetaTensor):
                d[key].meta["spatial_shape"] = shape
        return d


def read_image_and_labels(label_keys: Sequence[str] = ()) -> list[MapTransform]:
    """The reading steps of a datalist record whose ``image`` is read with the label maps under ``label_keys``.

    Keeps only ``image`` and the label keys (a record's other keys, e.g. paths a run never reads, would otherwise
    reach the later transforms as strings), reads them with :class:`ReadImaged`, and stacks the label maps into one
    channel-first ``label`` (one channel per key, in order). A missing key fails in :class:`ReadImaged`, naming it.
    The image's channel handling is left to the caller.

    Args:
        label_keys: datalist keys of the label maps, e.g. ``["label_l1", "label_l2", "label_l3"]``; empty for
            label-free reading.
    """
    keys = ["image", *label_keys]
    steps: list[MapTransform] = [
        SelectItemsd(keys=keys, allow_missing_keys=True),
        ReadImaged(keys=keys, image_only=True),
    ]
    if label_keys:
        steps += [
            EnsureChannelFirstd(keys=list(label_keys), allow_missing_keys=True),
            ConcatItemsd(keys=list(label_keys), name="label"),
        ]
    return steps

"""Image loading whose failures name the key and the file."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

from monai.data import ImageReader
from monai.transforms import LoadImaged


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

"""Input checks that fail early with the file, the key and the expected form."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")  # PIL image modes that carry a transparency channel


def _source(data: Mapping[Hashable, object], key: Hashable) -> str:
    meta = getattr(data[key], "meta", {}) or {}
    return str(meta.get("filename_or_obj", "<in memory>"))


class ValidateImaged(MapTransform):
    """Check channel-first images: number of spatial dimensions and channels, finite values in a range float32 can
    scale, not constant, no transparency channel, and the same spatial shape as their labels.

    A PNG with transparency (RGBA, LA) is refused: MONAI reads its alpha as one more channel, so an RGBA picture
    would pass as four MR contrasts.

    Place it right after ``EnsureChannelFirstd``; a failure raises ``ValueError`` naming the file and key.

    Args:
        keys: keys of the images to check.
        spatial_dims: required number of spatial dimensions (2 or 3).
        channels: required channel count (the network's ``in_channels``), or None for any.
        match_keys: keys (e.g. labels) that must have each image's spatial shape; absent ones are skipped.
        allow_missing_keys: skip keys absent from the data.
        channels_config_id: the config id that sets ``channels``, named in the error.
        min_size: smallest size of every spatial axis, >= 1 (e.g. the patch size of a patch-based loss); 2 by default:
            an axis of one pixel makes a line, not an image.
        min_size_config_id: the config id that sets ``min_size``, named in the error.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spatial_dims: int = 3,
        channels: int | None = 1,
        match_keys: Sequence[Hashable] = (),
        allow_missing_keys: bool = False,
        channels_config_id: str = "network_def#in_channels",
        min_size: int = 2,
        min_size_config_id: str = "patch_size",
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if channels is not None and channels < 1:
            raise ValueError(f"channels must be >= 1 or None, got {channels}.")
        if min_size < 1:
            raise ValueError(f"min_size must be >= 1, got {min_size}.")
        self.min_size = min_size
        self.min_size_config_id = min_size_config_id
        self.spatial_dims = spatial_dims
        self.channels = channels
        self.match_keys = list(match_keys)
        self.channels_config_id = channels_config_id

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = torch.as_tensor(d[key])
            where = f"'{key}' of '{_source(d, key)}'"
            expected = "(C, H, W, D)" if self.spatial_dims == 3 else "(C, H, W)"
            mode = (getattr(d[key], "meta", None) or {}).get("mode")
            if mode in ALPHA_MODES:
                raise ValueError(
                    f"{where} is a {mode} picture: its alpha (transparency) channel is not image data, and the "
                    f"network expects {self.channels or 'image'} channels of intensities (config id "
                    f"{self.channels_config_id}); save it without transparency, or as NIfTI."
                )
            if image.ndim != self.spatial_dims + 1:
                raise ValueError(
                    f"{where} has shape {tuple(image.shape)}; expected {self.spatial_dims} spatial dimensions "
                    f"after the channel: {expected}."
                )
            if self.channels is not None and image.shape[0] != self.channels:
                raise ValueError(
                    f"{where} has {image.shape[0]} channels; the network (config id {self.channels_config_id}) "
                    f"expects {self.channels}."
                )
            if min(image.shape[1:]) < self.min_size:
                why = f" (config id {self.min_size_config_id})" if self.min_size > 2 else " (a line is no image)"
                raise ValueError(
                    f"{where} has spatial shape {tuple(image.shape[1:])}, smaller than {self.min_size} pixels{why} "
                    "along an axis."
                )
            if not torch.isfinite(image).all():
                raise ValueError(f"{where} contains NaN or infinite values.")
            if not torch.isfinite(torch.amax(image).float() - torch.amin(image).float()):
                raise ValueError(
                    f"{where} spans {float(torch.amin(image)):.3g} to {float(torch.amax(image)):.3g}, a range that "
                    "overflows float32 when the intensities are scaled; rescale the image first."
                )
            if torch.amax(image) == torch.amin(image):
                raise ValueError(f"{where} is constant: min-max normalisation and clustering need contrast.")
            check_same_spatial_shape(d, [key, *self.match_keys])  # absent keys are skipped there
        return d


def check_integer_labels(labels: torch.Tensor) -> None:
    """Refuse a label map that is not integers >= 0: of an integer or boolean dtype, or of a floating one holding
    whole numbers only (NaN and infinity are refused).

    Raises:
        ValueError: a label is negative, fractional or not finite.
    """
    whole = not labels.is_floating_point() or bool(torch.isfinite(labels).all() and torch.equal(labels, labels.round()))
    if not whole or (labels < 0).any():
        raise ValueError("labels must be integers >= 0.")


def check_same_spatial_shape(data: Mapping[Hashable, torch.Tensor], keys: Sequence[Hashable]) -> None:
    """Raise ``ValueError`` naming the file when the images under ``keys`` differ in spatial shape."""
    shapes = {key: tuple(torch.as_tensor(data[key]).shape[1:]) for key in keys if key in data}
    if len(set(shapes.values())) > 1:
        raise ValueError(
            f"image and label spatial shapes differ for '{_source(data, keys[0])}': {shapes}; they must be equal."
        )


class ValidateMaskd(MapTransform):
    """Check channel-first binary masks: the channel count, values in {0, ``foreground_value``} only, finite; the
    masks leave scaled to {0, 1}.

    A mask that is empty (all 0) is valid: training sets of axial slices hold many (Wolleb et al., MIDL 2022, train
    on every slice of their range). A failure raises ``ValueError`` naming the file and key.

    Args:
        keys: keys of the masks to check.
        channels: required channel count (the network's mask channels).
        allow_missing_keys: skip keys absent from the data.
        channels_config_id: the config id that sets ``channels``, named in the error.
        foreground_value: the value of a foreground pixel in the files (255 for 8-bit PNG masks), > 0.
        foreground_config_id: the config id that sets ``foreground_value``, named in the error.
    """

    def __init__(
        self,
        keys: KeysCollection,
        channels: int = 1,
        allow_missing_keys: bool = False,
        channels_config_id: str = "mask_channels",
        foreground_value: float = 1,
        foreground_config_id: str = "mask_foreground_value",
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}.")
        if not foreground_value > 0:
            raise ValueError(f"foreground_value must be > 0, got {foreground_value}.")
        self.channels = channels
        self.channels_config_id = channels_config_id
        self.foreground_value = foreground_value
        self.foreground_config_id = foreground_config_id

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            mask = d[key]
            where = f"'{key}' of '{_source(d, key)}'"
            if mask.shape[0] != self.channels:
                raise ValueError(
                    f"{where} has {mask.shape[0]} channels; expected {self.channels} binary masks "
                    f"(config id {self.channels_config_id})."
                )
            values = torch.unique(torch.as_tensor(mask))
            allowed = torch.tensor([0, self.foreground_value], dtype=values.dtype, device=values.device)
            if not torch.isin(values, allowed).all():
                shown = values[:8].tolist()
                raise ValueError(
                    f"{where} must be a binary mask (values 0 and {self.foreground_value}, config id "
                    f"{self.foreground_config_id}), got values {shown}."
                )
            if self.foreground_value != 1:
                d[key] = (mask == self.foreground_value).to(mask.dtype)
        return d

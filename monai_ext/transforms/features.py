"""Features for diffusion condensation beyond the learned embedding: each pixel's position, scaled to the
embedding's spread, so that condensation groups pixels alike and near, as SLIC groups colour and position (Achanta
et al., "SLIC superpixels compared to state-of-the-art superpixel methods", 2012, eq. 3)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

__all__ = ["AppendCoordinates", "AppendCoordinatesd", "standardised_coordinates", "total_sd"]


def total_sd(features: torch.Tensor) -> torch.Tensor:
    """The spread of a (C, *spatial) map: the norm of its per-channel standard deviations."""
    return features.reshape(len(features), -1).std(dim=1).norm()


def standardised_coordinates(shape: tuple[int, ...]) -> torch.Tensor:
    """(D, *shape) coordinates of every pixel, each centred, with total standard deviation 1 (:func:`total_sd`)."""
    grid = torch.meshgrid(*(torch.arange(n, dtype=torch.float32) for n in shape), indexing="ij")
    coordinates = torch.stack(grid).reshape(len(shape), -1)
    coordinates = coordinates - coordinates.mean(dim=1, keepdim=True)
    return (coordinates / coordinates.std(dim=1).norm()).reshape(len(shape), *shape)


class AppendCoordinates(Transform):
    """(C, *spatial) features -> (C + D, *spatial): the D pixel coordinates appended, centred and scaled so that
    their total standard deviation is ``weight`` times the features' (:func:`total_sd`). The weight trades feature
    similarity for compactness, as SLIC's m / S.

    Args:
        weight: the coordinates' spread relative to the features', > 0.
    """

    def __init__(self, weight: float = 0.5) -> None:
        if not weight > 0:
            raise ValueError(f"weight must be > 0, got {weight}.")
        self.weight = weight

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim < 2:
            raise ValueError(f"features must be (C, *spatial), got shape {tuple(features.shape)}.")
        values = torch.as_tensor(features).float()
        if not torch.isfinite(values).all():
            raise ValueError("features have NaN or infinite values.")
        coordinates = standardised_coordinates(tuple(values.shape[1:])).to(values.device)
        appended = torch.cat([values, self.weight * total_sd(values) * coordinates])
        return MetaTensor(appended, meta=dict(getattr(features, "meta", {})))


class AppendCoordinatesd(MapTransform):
    """Dictionary form of :class:`AppendCoordinates`.

    Args:
        keys: keys of (C, *spatial) feature maps.
        weight: the coordinates' spread relative to the features', > 0.
        allow_missing_keys: skip an absent key.
    """

    def __init__(self, keys: KeysCollection, weight: float = 0.5, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = AppendCoordinates(weight)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                d[key] = self.transform(d[key])
            except ValueError as error:
                raise ValueError(f"AppendCoordinatesd, key {key!r}: {error}") from error
        return d

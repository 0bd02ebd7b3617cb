"""Segmentation ensembles: the mask as a diffused signal and back, and the unpacking of an ensemble inferer's
output (``monai_ext.inferers.DiffusionEnsembleInferer``, ``MonteCarloDropoutInferer``) into its maps."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.transforms import MapTransform


def mask_to_signal(mask: torch.Tensor) -> torch.Tensor:
    """A {0, 1} mask as the diffused signal in {-1, 1}."""
    return mask.float() * 2.0 - 1.0


def signal_to_probability(signal: torch.Tensor) -> torch.Tensor:
    """A sampled signal mapped back to [0, 1] (the inverse of ``mask_to_signal``, clipped)."""
    return ((signal + 1.0) / 2.0).clamp(0.0, 1.0)


class SplitEnsembled(MapTransform):
    """Split an ensemble inferer's output into the mask (kept under its key), mean, variance and samples.

    The ``DiffusionEnsembleInferer`` returns channel blocks of C channels: mask, mean, variance, then n samples
    (Wolleb et al., MIDL 2022). This puts the mask back under ``keys`` (the ``pred`` a MONAI Label viewer
    shows) and the others under ``{key}_mean``, ``{key}_variance`` and ``{key}_samples`` (n * C channels), so
    that writers and metrics read each by name. Works on one item (channel-first, no batch axis), as
    postprocessing after decollation.

    A NaN or infinite value anywhere in the ensemble (from NaN weights, or an input whose values overflow when
    scaled) is an error naming the input and the weights: the mask, thresholded from a NaN mean, would otherwise
    be empty and read as "nothing found".

    Args:
        keys: keys of the ensemble outputs.
        num_samples: n, the inferer's ensemble size, >= 1.
        mask_channels: C, >= 1.
        allow_missing_keys: skip absent keys.
        weights: the weights file of the network that sampled the ensemble, named in the error.
        image_key: key of the input image, whose file is named in the error.
    """

    def __init__(
        self,
        keys: str | list[str],
        num_samples: int,
        mask_channels: int = 1,
        allow_missing_keys: bool = False,
        weights: str | None = None,
        image_key: str = "image",
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if num_samples < 1 or mask_channels < 1:
            raise ValueError(f"num_samples and mask_channels must be >= 1, got {num_samples} and {mask_channels}.")
        self.num_samples = num_samples
        self.mask_channels = mask_channels
        self.weights = weights
        self.image_key = image_key

    def _check_finite(self, data: Mapping[Hashable, torch.Tensor], key: Hashable, output: torch.Tensor) -> None:
        if torch.isfinite(output).all():
            return
        meta = getattr(data.get(self.image_key), "meta", None) or getattr(output, "meta", None) or {}
        source = meta.get("filename_or_obj", "<in memory>")
        weights = f"weights '{self.weights}'" if self.weights else "the network's weights"
        raise ValueError(
            f"the ensemble '{key}' of '{source}' holds NaN or infinite values (from {weights}, or an input whose "
            "values overflow when scaled); no mask is written, since a mask thresholded from NaN would be empty."
        )

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        c = self.mask_channels
        expected = (3 + self.num_samples) * c
        for key in self.key_iterator(d):
            output = d[key]
            if output.shape[0] != expected:
                raise ValueError(
                    f"'{key}' has {output.shape[0]} channels; an ensemble of {self.num_samples} samples of a "
                    f"{c}-channel mask has {expected} (mask, mean, variance, samples)."
                )
            self._check_finite(d, key, output)
            d[key] = output[:c]
            d[f"{key}_mean"] = output[c : 2 * c]
            d[f"{key}_variance"] = output[2 * c : 3 * c]
            d[f"{key}_samples"] = output[3 * c :]
        return d

"""Coloured (power-law) noise fields."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def power_law_noise(
    shape: Sequence[int], rng: np.random.Generator, exponent: float = 1.0, dtype: type = np.float32
) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian noise whose power spectrum falls as ``1 / |f| ** exponent``.

    ``exponent = 1`` gives pink noise, the kind used by the synthetic cryo-ET benchmark of Hsu et al.
    (NeurIPS 2021) and Tursynbek & Niethammer (MICCAI 2023, sec. 4.1); ``exponent = 0`` gives white noise.

    Args:
        shape: spatial shape of the field (any number of dimensions).
        rng: source of randomness.
        exponent: power-law exponent of the power spectrum, >= 0.
        dtype: floating dtype of the result.
    """
    if exponent < 0:
        raise ValueError(f"exponent must be >= 0, got {exponent}.")
    white = rng.standard_normal(tuple(shape))
    spectrum = np.fft.rfftn(white)
    freqs = np.meshgrid(
        *[np.fft.fftfreq(n) for n in shape[:-1]], np.fft.rfftfreq(shape[-1]), indexing="ij", sparse=True
    )
    radius = np.sqrt(sum(f**2 for f in freqs))
    radius.flat[0] = 1.0  # the DC term is removed below; avoid dividing by zero
    spectrum *= radius ** (-exponent / 2.0)
    spectrum.flat[0] = 0.0
    field = np.fft.irfftn(spectrum, s=tuple(shape), axes=tuple(range(len(shape))))
    field /= field.std()
    return field.astype(dtype)

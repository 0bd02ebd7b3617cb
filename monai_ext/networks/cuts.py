"""The CUTS encoder and its patch reconstructor (Liu, Amodio et al., "CUTS: A Framework for Multigranular
Unsupervised Medical Image Segmentation", sec. 3.1, Fig. 1B)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["CUTSEncoder", "PatchAutoencoder", "PatchReconstructor"]


class CUTSEncoder(nn.Module):
    """One embedding per pixel from the pixel-centred patch around it: 2D convolutions with batch norm and
    LeakyReLU, replicate padding and no pooling, so the output keeps the input's H x W (CUTS sec. 3.1: four 5 x 5
    convolutions of 16, 32, 64 and 128 channels; the embedding of pixel (i, j) sees a 17 x 17 window).

    Args:
        in_channels: image channels (1 for an intensity image, 3 for RGB, 4 for the BraTS contrasts), >= 1.
        channels: output channels of each convolution; the last is the embedding dimension d.
        kernel_size: odd kernel size, >= 1.
        negative_slope: of the LeakyReLU.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (16, 32, 64, 128),
        kernel_size: int = 5,
        negative_slope: float = 0.01,
    ) -> None:
        super().__init__()
        if in_channels < 1 or not channels or min(channels) < 1:
            raise ValueError(f"in_channels and every channel count must be >= 1, got {in_channels} and {channels}.")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and >= 1 so that the output keeps H x W, got {kernel_size}.")
        layers: list[nn.Module] = []
        for c_in, c_out in zip((in_channels, *channels[:-1]), channels, strict=True):
            layers += [
                nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2, padding_mode="replicate"),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(negative_slope),
            ]
        self.layers = nn.Sequential(*layers)
        self.in_channels = in_channels
        self.embedding_dim = channels[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> (B, d, H, W)."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, H, W) images, got shape {tuple(x.shape)}.")
        return self.layers(x)


class PatchReconstructor(nn.Module):
    """The P x P x C patch around a pixel from the pixel's embedding: one linear map (the authors' code), the
    reconstruction head of CUTS's loss (sec. 3.1.2).

    Args:
        embedding_dim: d, >= 1.
        out_channels: image channels C, >= 1.
        patch_size: odd P, >= 1 (CUTS: 5).
    """

    def __init__(self, embedding_dim: int, out_channels: int, patch_size: int = 5) -> None:
        super().__init__()
        if embedding_dim < 1 or out_channels < 1 or patch_size < 1 or patch_size % 2 == 0:
            raise ValueError(
                f"embedding_dim and out_channels must be >= 1 and patch_size odd and >= 1, got {embedding_dim}, "
                f"{out_channels} and {patch_size}."
            )
        self.linear = nn.Linear(embedding_dim, out_channels * patch_size**2)
        self.out_channels = out_channels
        self.patch_size = patch_size

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """(..., d) embeddings -> (..., C, P, P) patches."""
        return self.linear(z).unflatten(-1, (self.out_channels, self.patch_size, self.patch_size))


class PatchAutoencoder(nn.Module):
    """The encoder followed by the reconstructor at every pixel: images (B, C, H, W) -> the reconstructed P x P
    patch of every pixel (B, C * P * P, H, W), in the layout of :func:`monai_ext.losses.pixel_patches`. Its mean
    squared error to ``pixel_patches(x, P)`` is CUTS's reconstruction loss (sec. 3.1.2) over all pixels instead of
    the mined anchors: a deterministic, label-free validation score.

    Args:
        encoder: images -> (B, d, H, W) embeddings (:class:`CUTSEncoder`).
        reconstructor: (..., d) -> (..., C, P, P) patches (:class:`PatchReconstructor`).
    """

    def __init__(self, encoder: nn.Module, reconstructor: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        self.reconstructor = reconstructor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        patches = self.reconstructor(self.encoder(x).permute(0, 2, 3, 1))  # (B, H, W, C, P, P)
        return patches.flatten(3).permute(0, 3, 1, 2)

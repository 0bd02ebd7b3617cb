"""One segmentation network per hierarchy level, with per-level softmax outputs in one tensor."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.networks.nets import UNet
from torch import nn

from monai_ext.transforms.hierarchy import parse_num_parts


class HierarchicalSegmenter(nn.Module):
    """Independent MONAI UNets, one per hierarchy level, whose softmax masks are concatenated along channels.

    Tursynbek & Niethammer (MICCAI 2023, sec. 3 and 4.2) train a 3D U-Net f: x0 -> M in [0, 1]^{K x H x W x D}
    with sum_k M_ku = 1 for each level of the hierarchy (K = 2, 4, 8 on the cell phantoms). The levels share
    nothing but the input, so training them together is training them separately, in one pass over the data;
    one module holds them all so a bundle has one network, one checkpoint and one inferer. Level l occupies
    channels sum(num_parts[:l]) .. sum(num_parts[:l + 1]) of the output (see ``split``).

    The defaults are the paper's: channels (8, 16, 16, 32, 32, 64, 64), strides (1, 2, 1, 2, 1, 2), dropout 0.2,
    batch norm. The spatial size of the input must divide by the product of the strides (8).

    ``output_level`` serves one level: the forward pass runs only that level's UNet and returns its K_l
    probabilities (MONAI Label and the model zoo expect one segmentation per network). The state dict keeps
    every level, so the same checkpoint loads either way.

    Args:
        num_parts: K of each level, each >= 2.
        spatial_dims: 2 or 3.
        in_channels: input channels.
        channels: UNet channels per layer.
        strides: UNet strides (one fewer than channels).
        dropout: dropout probability in [0, 1).
        norm: UNet normalisation (MONAI name).
        num_res_units: residual units per UNet layer.
        output_level: 1-based level whose probabilities ``forward`` returns; None returns all levels.
    """

    def __init__(
        self,
        num_parts: Sequence[int] = (2, 4, 8),
        spatial_dims: int = 3,
        in_channels: int = 1,
        channels: Sequence[int] = (8, 16, 16, 32, 32, 64, 64),
        strides: Sequence[int] = (1, 2, 1, 2, 1, 2),
        dropout: float = 0.2,
        norm: str = "batch",
        num_res_units: int = 0,
        output_level: int | None = None,
    ) -> None:
        super().__init__()
        num_parts = parse_num_parts(num_parts)
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if len(strides) != len(channels) - 1:
            raise ValueError(f"strides needs one entry fewer than channels, got {len(strides)} and {len(channels)}.")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        if output_level is not None and (
            isinstance(output_level, bool)
            or not isinstance(output_level, int)
            or not 1 <= output_level <= len(num_parts)
        ):
            raise ValueError(
                f"output_level must be a 1-based level in 1 .. {len(num_parts)} (num_parts {num_parts}) or None, "
                f"got {output_level!r}."
            )
        self.num_parts = num_parts
        self.output_level = output_level
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.divisor = math.prod(strides)
        self.levels = nn.ModuleList(
            UNet(
                spatial_dims=spatial_dims,
                in_channels=in_channels,
                out_channels=k,
                channels=channels,
                strides=strides,
                dropout=dropout,
                norm=norm,
                num_res_units=num_res_units,
            )
            for k in num_parts
        )

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != self.spatial_dims + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"input must have shape (B, {self.in_channels}, *{self.spatial_dims} spatial dims), "
                f"got {tuple(x.shape)}."
            )
        voxels = math.prod(x.shape[2:])
        if max(self.num_parts) > voxels:
            raise ValueError(f"num_parts {self.num_parts} asks for more parts than the input has voxels ({voxels}).")
        if any(s % self.divisor for s in x.shape[2:]):
            raise ValueError(
                f"input spatial size {tuple(x.shape[2:])} must divide by {self.divisor} (the product of the strides); "
                f"resize or pad it (e.g. Resized to 48^3)."
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenated per-level softmax masks (B, sum(num_parts), *spatial), or (B, K_l, *spatial) of
        ``output_level``."""
        self._check(x)
        if self.output_level is not None:
            return torch.softmax(self.levels[self.output_level - 1](x), dim=1)
        return torch.cat([torch.softmax(level(x), dim=1) for level in self.levels], dim=1)

    def split(self, masks: torch.Tensor) -> list[torch.Tensor]:
        """The per-level masks of a batched output (B, sum(num_parts), *spatial)."""
        return list(torch.split(masks, self.num_parts, dim=1))

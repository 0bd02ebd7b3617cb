"""One segmentation network per hierarchy level, with per-level softmax outputs in one tensor."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from monai.networks.nets import UNet
from torch import nn

from monai_ext.transforms.agglomeration import agglomerate_means
from monai_ext.transforms.hierarchy import parse_num_parts


def hierarchy_levels(num_parts: Sequence[int], merged_parts: Sequence[int] = ()) -> list[tuple[int, bool]]:
    """K of every level :class:`HierarchicalSegmenter` outputs, coarse to fine, and whether it is merged.

    Without ``merged_parts`` the levels are the trained ones in the order of ``num_parts``. With them, ``num_parts``
    must increase (coarse to fine) and each merged K lies below the finest trained K and differs from every trained
    K; the merged levels take their places by K, coarser or between the trained levels.

    Args:
        num_parts: K of each trained level, each >= 2.
        merged_parts: K of each level merged from the finest trained one, increasing.

    Returns:
        ``(K, merged)`` per output level.

    Raises:
        ValueError: either list breaks the rules above.
    """
    num_parts = parse_num_parts(num_parts)
    merged_parts = list(merged_parts)
    if not merged_parts:
        return [(k, False) for k in num_parts]
    if num_parts != sorted(set(num_parts)):
        raise ValueError(f"num_parts must increase, coarse to fine, when merged_parts are given, got {num_parts!r}.")
    if any(
        isinstance(k, bool) or not isinstance(k, int) or not 2 <= k < num_parts[-1] or k in num_parts
        for k in merged_parts
    ) or (merged_parts != sorted(set(merged_parts))):
        raise ValueError(
            f"merged_parts must list K >= 2 increasing, coarse to fine, each below the finest trained level's "
            f"{num_parts[-1]} parts and none equal to a trained level's K {num_parts}, got {merged_parts!r}."
        )
    return sorted([(k, False) for k in num_parts] + [(k, True) for k in merged_parts])


def hierarchy_parts(num_parts: Sequence[int], merged_parts: Sequence[int] = ()) -> list[int]:
    """K of every output level of :class:`HierarchicalSegmenter`, coarse to fine (config id ``level_parts``); see
    :func:`hierarchy_levels`."""
    return [k for k, _ in hierarchy_levels(num_parts, merged_parts)]


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

    ``merged_parts`` adds levels made from the finest one, label-free, per volume (over-clustering then
    merging, issue 31): its parts are merged, closest mean input values first (centroid linkage,
    :func:`monai_ext.transforms.agglomerate_means`, soft means weighted by the probabilities), down to each K of
    ``merged_parts``, and a merged part's probability is the sum of its members'. A small, distinct structure (a
    tumour) gets a part of its own among many parts and keeps it while the similar tissues merge. The merged
    levels take their places among the trained ones by K, coarse to fine (:func:`hierarchy_levels`: e.g. K = 2 and 8
    trained with 4 merged give the levels 2 / 4 / 8), and add no weights. Their probabilities are those of unions of
    the finest parts, so their label maps nest in the finest level's wherever a finest part holds more than half of
    a voxel's probability (there its union has the largest sum); elsewhere a merged level takes the union with the
    largest probability, which need not hold the finest level's most probable part. Levels, ``output_level``
    included, count the merged levels in their places. ``merge_values`` sets what the parts' means are taken of: the
    input by default, or e.g. the diffusion model's x0 prediction
    (:class:`~monai_ext.networks.DiffusionDenoiser`, the visual target the parts were trained on), in which CSF and
    tissue are closer to each other than to a tumour (``benchmarks/merge_rule.py``).

    Args:
        num_parts: K of each trained level, each >= 2; increasing when ``merged_parts`` are given.
        spatial_dims: 2 or 3.
        in_channels: input channels.
        channels: UNet channels per layer.
        strides: UNet strides (one fewer than channels).
        dropout: dropout probability in [0, 1).
        norm: UNet normalisation (MONAI name).
        num_res_units: residual units per UNet layer.
        output_level: 1-based level (merged ones included) whose probabilities ``forward`` returns; None returns all.
        merged_parts: K of each level merged from the finest, coarse to fine, each below the finest trained K and
            none equal to a trained K.
        merge_values: maps the input (B, C, *spatial) to the values (B, C', *spatial) whose part means the merge
            compares; None compares the input. It is kept outside this module's children, so its weights are not
            in the state dict (checkpoints are the same either way) and ``.to()`` does not move it: place it on the
            input's device.
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
        merged_parts: Sequence[int] = (),
        merge_values: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        num_parts = parse_num_parts(num_parts)
        merged_parts = list(merged_parts)
        levels = hierarchy_levels(num_parts, merged_parts)
        if merge_values is not None and not callable(merge_values):
            raise TypeError(f"merge_values must be callable or None, got {type(merge_values).__name__}.")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")
        if len(strides) != len(channels) - 1:
            raise ValueError(f"strides needs one entry fewer than channels, got {len(strides)} and {len(channels)}.")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}.")
        if output_level is not None and (
            isinstance(output_level, bool) or not isinstance(output_level, int) or not 1 <= output_level <= len(levels)
        ):
            raise ValueError(
                f"output_level must be a 1-based level in 1 .. {len(levels)} "
                f"(merged_parts {merged_parts}, num_parts {num_parts}) or None, got {output_level!r}."
            )
        self.num_parts = num_parts
        self.merged_parts = merged_parts
        object.__setattr__(self, "merge_values", merge_values)  # a plain attribute: no submodule, no state dict keys
        self.output_parts = [k for k, _ in levels]
        # per output level: whether it is merged, and its index among the trained levels (self.levels) or among the
        # merged ones (merge's output); both keep their own order within the output
        counts = {False: 0, True: 0}
        self._sources: list[tuple[bool, int]] = []
        for _, merged in levels:
            self._sources.append((merged, counts[merged]))
            counts[merged] += 1
        self.trained_levels = [level for level, (merged, _) in enumerate(self._sources) if not merged]
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
        """Concatenated per-level softmax masks (B, sum(output_parts), *spatial), levels ordered by K, or
        (B, K_l, *spatial) of ``output_level``."""
        self._check(x)
        if self.output_level is not None:
            merged, index = self._sources[self.output_level - 1]
            if not merged:
                return torch.softmax(self.levels[index](x), dim=1)
            return self.merge(x, torch.softmax(self.levels[-1](x), dim=1))[index]
        trained = [torch.softmax(level(x), dim=1) for level in self.levels]
        merged_levels = self.merge(x, trained[-1])
        return torch.cat([(merged_levels if merged else trained)[i] for merged, i in self._sources], dim=1)

    def merge(self, x: torch.Tensor, finest: torch.Tensor) -> list[torch.Tensor]:
        """The levels of ``merged_parts`` (B, K, *spatial), in its order, merged from the finest level's masks."""
        if not self.merged_parts:
            return []
        flat = finest.flatten(2)
        with torch.no_grad():
            values = x if self.merge_values is None else self.merge_values(x)
            if values.shape[0] != x.shape[0] or values.shape[2:] != x.shape[2:]:
                raise ValueError(
                    f"merge_values must keep the input's batch and spatial size {(x.shape[0], *x.shape[2:])}, "
                    f"got shape {tuple(values.shape)}."
                )
            sums = torch.einsum("bkn,bcn->bkc", flat.double(), values.flatten(2).double())
            sizes = flat.double().sum(2)
        levels = []
        for k in self.merged_parts:
            mappings = [agglomerate_means(s, n, k).to(finest.device) for s, n in zip(sums, sizes, strict=True)]
            merged = [torch.zeros(k, flat.shape[2], dtype=flat.dtype, device=flat.device) for _ in mappings]
            merged = [m.index_add_(0, mapping, f) for m, mapping, f in zip(merged, mappings, flat, strict=True)]
            levels.append(torch.stack(merged).reshape(finest.shape[0], k, *finest.shape[2:]))
        return levels

    def split(self, masks: torch.Tensor) -> list[torch.Tensor]:
        """The per-level masks of a batched output (B, sum(output_parts), *spatial)."""
        return list(torch.split(masks, self.output_parts, dim=1))

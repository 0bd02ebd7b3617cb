"""Diffusion features read on the image grid without forming them there (Tursynbek & Niethammer, MICCAI 2023, eq. 6)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def interpolation_matrix(size_in: int, size_out: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The (size_out, size_in) matrix of 1D linear interpolation with ``align_corners=False``, as
    ``F.interpolate(..., mode="linear")`` applies it. PyTorch's bilinear and trilinear resizing apply it along each
    axis in turn."""
    basis = torch.eye(size_in, dtype=dtype)[None]  # (1, size_in, size_in): one basis vector per channel
    return F.interpolate(basis, size=size_out, mode="linear", align_corners=False)[0].T


def _along_axes(volume: torch.Tensor, matrices: Sequence[torch.Tensor], transpose: bool) -> torch.Tensor:
    """Apply one matrix per spatial axis of ``volume`` (B, C, *spatial): W (or W^T) along each axis in turn."""
    for axis, matrix in enumerate(matrices, start=2):
        volume = (volume.movedim(axis, -1) @ (matrix if transpose else matrix.T)).movedim(-1, axis)
    return volume


def _column_sums(matrices: Sequence[torch.Tensor]) -> torch.Tensor:
    """U^T 1 on the coarse grid for U = W_x (x) W_y (x) W_z: the outer product of each matrix's column sums."""
    total = matrices[0].sum(0)
    for matrix in matrices[1:]:
        total = total[..., None] * matrix.sum(0)
    return total


class UpsampledFeatures:
    """phi = U f: decoder stage activations f_s on their own (coarse) grids, read as if each were upsampled linearly
    (trilinear / bilinear, ``align_corners=False``, as ``F.interpolate`` does) to the image grid and concatenated.

    The consistency loss of eq. 6 needs phi only through the part sums sum_u M_ku (phi_u - mean phi) and the total sum
    of squares of phi - mean phi. Upsampling is linear and separable, U_s = W_x (x) W_y (x) W_z with one small
    interpolation matrix per axis, so:

    - <m_k, U_s f_s> = <U_s^T m_k, f_s>: the adjoint brings the K masks to the stage's grid and the sums are taken
      there (K channels on the image grid instead of sum_s C_s, and no gradient through an upsampling of features);
    - sum_u ||U_s f_s||^2 = <f_s, (W_x^T W_x (x) W_y^T W_y (x) W_z^T W_z) f_s>, on the stage's grid;
    - each row of an interpolation matrix sums to 1, so U_s (f_s - c) = U_s f_s - c for a constant c per channel: the
      stages are centred once by the mean of phi, which keeps the sums accurate in float32.

    The statistics are computed in float32 with autocast off (under AMP, sums over a volume overflow float16). phi is
    never formed on the image grid (``dense`` forms it, for reference and for other uses).

    Args:
        stages: per decoder stage, activations (B, C_s, *grid_s), 2 or 3 spatial dims, one batch size.
        size: the image grid the features are read on.
    """

    def __init__(self, stages: Sequence[torch.Tensor], size: Sequence[int]) -> None:
        size = tuple(int(s) for s in size)
        if len(size) not in (2, 3) or not stages:
            raise ValueError(f"need at least one stage and a 2D or 3D size, got {len(stages)} stages and {size}.")
        if any(f.ndim != len(size) + 2 or f.shape[0] != stages[0].shape[0] for f in stages):
            shapes = [tuple(f.shape) for f in stages]
            raise ValueError(f"stages must be (B, C_s, *{len(size)} spatial dims) with one B, got {shapes}.")
        self.size = size
        self.device_type = stages[0].device.type
        raw = [f.detach().float() for f in stages]
        self.matrices = [
            [interpolation_matrix(n, m).to(f.device) for n, m in zip(f.shape[2:], size, strict=True)] for f in raw
        ]
        with torch.autocast(self.device_type, enabled=False):
            # the mean of U_s f_s is <U_s^T 1, f_s> / N, and U_s^T 1 is the outer product of the column sums of W
            self.means = [
                (f * _column_sums(w)).flatten(2).sum(-1) / self.num_voxels
                for f, w in zip(raw, self.matrices, strict=True)
            ]
        spatial = (1,) * len(size)
        self.stages = [f - mean.reshape(*mean.shape, *spatial) for f, mean in zip(raw, self.means, strict=True)]

    @property
    def shape(self) -> tuple[int, ...]:
        """(B, sum_s C_s, *size): the shape of phi."""
        return (self.stages[0].shape[0], sum(f.shape[1] for f in self.stages), *self.size)

    @property
    def num_voxels(self) -> int:
        return math.prod(self.size)

    def mean(self) -> torch.Tensor:
        """The mean of phi over the image grid, (B, sum_s C_s)."""
        return torch.cat(self.means, dim=1)

    def dense(self) -> torch.Tensor:
        """phi itself, (B, sum_s C_s, *size)."""
        spatial = (1,) * len(self.size)
        upsampled = [
            _along_axes(f, w, transpose=False) + mean.reshape(*mean.shape, *spatial)
            for f, w, mean in zip(self.stages, self.matrices, self.means, strict=True)
        ]
        return torch.cat(upsampled, dim=1)

    def adjoint(self, masks: torch.Tensor, stage: int) -> torch.Tensor:
        """U_s^T applied to masks (B, K, *size): (B, K, *grid_s), differentiable in ``masks``."""
        return _along_axes(masks.float(), self.matrices[stage], transpose=True)

    def centred_part_sums(self, masks: torch.Tensor) -> torch.Tensor:
        """sum_u M_ku (phi_u - mean phi) for masks (B, K, *size): (B, K, sum_s C_s), differentiable in ``masks``."""
        with torch.autocast(self.device_type, enabled=False):
            sums = [
                torch.einsum("bkn,bcn->bkc", self.adjoint(masks, s).flatten(2), f.flatten(2))
                for s, f in enumerate(self.stages)
            ]
            return torch.cat(sums, dim=-1)

    def centred_sum_of_squares(self) -> torch.Tensor:
        """sum_u ||phi_u - mean phi||^2 per volume, (B,), computed on the stages' grids."""
        with torch.autocast(self.device_type, enabled=False):
            total = torch.zeros(self.shape[0], device=self.stages[0].device)
            for f, matrices in zip(self.stages, self.matrices, strict=True):
                grams = [w.T @ w for w in matrices]
                total = total + (f * _along_axes(f, grams, transpose=False)).flatten(1).sum(1)
            return total

"""The CUTS training objective (Liu, Amodio et al., sec. 3.1): an intra-image patch contrastive loss on pairs mined
without labels, and a local patch reconstruction loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CUTSLoss", "extract_patches", "mine_positive_pairs", "nt_xent", "patch_ssim", "pixel_patches"]


def patch_ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """SSIM (Wang et al. 2004) of patch pairs (..., C, P, P) over one window covering the patch, averaged over
    the channels: ((2 mu_a mu_b + c1)(2 cov + c2)) / ((mu_a^2 + mu_b^2 + c1)(var_a + var_b + c2)),
    c1 = (0.01 L)^2, c2 = (0.03 L)^2 with L = ``data_range``. Returns (...)."""
    a, b = a.flatten(-2), b.flatten(-2)
    mu_a, mu_b = a.mean(-1), b.mean(-1)
    var_a, var_b = a.var(-1, unbiased=False), b.var(-1, unbiased=False)
    cov = ((a - mu_a[..., None]) * (b - mu_b[..., None])).mean(-1)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    ssim = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return ssim.mean(-1)


def extract_patches(x: torch.Tensor, centres: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The P x P patches of ``x`` (B, C, H, W) centred at ``centres`` (B, S, 2) (row, column; every patch inside
    the image). Returns (B, S, C, P, P)."""
    half = patch_size // 2
    offsets = torch.arange(-half, half + 1, device=x.device)
    rows = (centres[..., 0, None] + offsets)[..., :, None]  # (B, S, P, 1)
    cols = (centres[..., 1, None] + offsets)[..., None, :]  # (B, S, 1, P)
    flat = (rows * x.shape[-1] + cols).flatten(1)  # (B, S * P * P)
    gathered = x.flatten(2).gather(2, flat[:, None, :].expand(-1, x.shape[1], -1))  # (B, C, S * P * P)
    return gathered.unflatten(2, (centres.shape[1], patch_size, patch_size)).transpose(1, 2)


def _check_radius(radius: object, name: str) -> None:
    """Refuse a positive-pair radius that is not None or an integer >= 1 (e.g. the string ``"null"`` that a command
    line passes for ``null``; ``None`` is the patch size)."""
    if radius is not None and (not isinstance(radius, int) or isinstance(radius, bool) or radius < 1):
        raise ValueError(f"{name} must be an integer >= 1 or None (the patch size), got {radius!r}.")


def mine_positive_pairs(
    x: torch.Tensor,
    num_anchors: int,
    patch_size: int = 5,
    candidates: int = 10,
    threshold: float = 0.5,
    generator: torch.Generator | None = None,
    radius: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Anchors and positives with no labels (CUTS sec. 3.1.1, Fig. 1C): ``num_anchors`` anchor pixels per image
    (uniform, far enough from the border for their patch); for each, ``candidates`` pixels within ``radius`` rows and
    columns are drawn (clamped to the image; a draw on the anchor itself becomes the offset (1, 1)) and the one whose
    patch has the highest SSIM with the anchor's is its positive, valid when that SSIM reaches ``threshold``. The
    other anchors' positives of the same image are its negatives (:func:`nt_xent`).

    Args:
        x: (B, C, H, W) images.
        num_anchors: anchors per image.
        patch_size: odd P of the compared patches (CUTS: 5).
        candidates: positive candidates drawn per anchor.
        threshold: SSIM a positive needs (CUTS: 0.5).
        generator: of the draws (None: torch's global generator).
        radius: integer >= 1, the largest row and column offset of a candidate; None: ``patch_size``, the paper's
            "nearby" (it does not follow ``patch_size`` otherwise).

    Returns:
        anchors (B, S, 2) and positives (B, S, 2) as (row, column), and valid (B, S) booleans.

    Raises:
        ValueError: an image smaller than the patch, or a radius that is not None or an integer >= 1.
    """
    _check_radius(radius, "radius")
    batch, _, height, width = x.shape
    half = patch_size // 2
    radius = patch_size if radius is None else radius
    if height < patch_size or width < patch_size:
        raise ValueError(f"images of {height} x {width} pixels are smaller than the {patch_size} x {patch_size} patch.")
    device = x.device
    low = torch.tensor([half, half], device=device)
    high = torch.tensor([height - 1 - half, width - 1 - half], device=device)

    def uniform(size: tuple[int, ...], lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
        return lo + (torch.rand(size, generator=generator).to(device) * (hi - lo + 1).float()).long().clamp(max=hi - lo)

    anchors = uniform((batch, num_anchors, 2), low, high)
    offsets = uniform(
        (batch, num_anchors, candidates, 2),
        torch.tensor([-radius] * 2, device=device),
        torch.tensor([radius] * 2, device=device),
    )
    still = (offsets == 0).all(-1, keepdim=True)
    offsets = torch.where(still, torch.ones_like(offsets), offsets)  # never the anchor itself
    options = torch.minimum(torch.maximum(anchors[:, :, None] + offsets, low), high)
    anchor_patches = extract_patches(x, anchors, patch_size)[:, :, None]
    option_patches = extract_patches(x, options.flatten(1, 2), patch_size).unflatten(1, (num_anchors, candidates))
    similarity = patch_ssim(anchor_patches, option_patches)  # (B, S, candidates)
    on_anchor = (options == anchors[:, :, None]).all(-1)  # a candidate clamped back onto its anchor at the border
    similarity = similarity.masked_fill(on_anchor, -torch.inf)
    best = similarity.argmax(-1)
    positives = options.gather(2, best[..., None, None].expand(-1, -1, 1, 2))[:, :, 0]
    valid = (similarity.gather(2, best[..., None])[..., 0] >= threshold) & (positives != anchors).any(-1)
    return anchors, positives, valid


def nt_xent(
    anchors: torch.Tensor, positives: torch.Tensor, temperature: float = 0.5, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """NT-Xent (Chen et al., SimCLR 2020) within each image: for anchor i, cross-entropy of the cosine similarities
    to every positive of its image over ``temperature``, the target being its own positive; the other anchors'
    positives are the negatives (CUTS sec. 3.1.1). Averaged over the valid anchors (0 when none is).

    Args:
        anchors, positives: (B, S, d) embeddings.
        temperature: tau > 0 (CUTS: 0.5).
        valid: (B, S) anchors that take part as anchors (all positives stay negatives); None: all.
    """
    logits = F.cosine_similarity(anchors[:, :, None], positives[:, None, :], dim=-1) / temperature  # (B, S, S)
    target = torch.arange(anchors.shape[1], device=anchors.device).expand(anchors.shape[0], -1)
    losses = F.cross_entropy(logits.flatten(0, 1), target.flatten(), reduction="none")
    if valid is None:
        return losses.mean()
    weights = valid.flatten().to(losses.dtype)
    return (losses * weights).sum() / weights.sum().clamp(min=1)


class CUTSLoss(nn.Module):
    """loss = lambda * contrastive + (1 - lambda) * reconstruction (CUTS sec. 3.1.3).

    Called as ``loss(z, x)`` on the encoder's embeddings z (B, d, H, W) and the images x (B, C, H, W): mines
    anchor / positive pairs in each image (:func:`mine_positive_pairs`), takes :func:`nt_xent` of their embeddings
    and the mean squared error between each anchor's P x P patch and its reconstruction from the anchor's embedding
    by ``reconstructor`` (sec. 3.1.2). The reconstructor is trained with the encoder: give the optimizer both
    networks' parameters (and wrap both in ``DistributedDataParallel`` for multi-GPU training).

    Args:
        reconstructor: maps (..., d) embeddings to (..., C, P, P) patches, e.g.
            :class:`monai_ext.networks.PatchReconstructor`.
        patch_size: odd P of the mined and reconstructed patches (CUTS: 5).
        anchors_per_image: S >= 2 (the paper's version 16; the authors' later code 8).
        candidates: positive candidates drawn per anchor, >= 1.
        ssim_threshold: SSIM a positive needs (CUTS: 0.5).
        temperature: of NT-Xent, > 0 (paper 0.5; later code 0.1).
        contrastive_weight: lambda in [0, 1] (paper 0.01; later code 0.001).
        seed: seed of the mining draws (None: torch's global generator).
        positive_radius: integer >= 1, positives are drawn within this many rows and columns of their anchor (None:
            the paper's ``patch_size``); smaller keeps a thin structure's positives on it.
    """

    def __init__(
        self,
        reconstructor: nn.Module,
        patch_size: int = 5,
        anchors_per_image: int = 16,
        candidates: int = 10,
        ssim_threshold: float = 0.5,
        temperature: float = 0.5,
        contrastive_weight: float = 0.01,
        seed: int | None = None,
        positive_radius: int | None = None,
    ) -> None:
        super().__init__()
        if patch_size < 1 or patch_size % 2 == 0:
            raise ValueError(f"patch_size must be odd and >= 1, got {patch_size}.")
        if anchors_per_image < 2 or candidates < 1:
            raise ValueError(
                f"anchors_per_image must be >= 2 and candidates >= 1, got {anchors_per_image}, {candidates}."
            )
        if not temperature > 0 or not 0 <= contrastive_weight <= 1:
            raise ValueError(
                f"temperature must be > 0 and contrastive_weight in [0, 1], got {temperature}, {contrastive_weight}."
            )
        _check_radius(positive_radius, "positive_radius")
        self.reconstructor = reconstructor
        self.patch_size = patch_size
        self.positive_radius = positive_radius
        self.anchors_per_image = anchors_per_image
        self.candidates = candidates
        self.ssim_threshold = ssim_threshold
        self.temperature = temperature
        self.contrastive_weight = contrastive_weight
        self.generator = None if seed is None else torch.Generator().manual_seed(seed)

    def forward(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if z.shape[0] != x.shape[0] or z.shape[2:] != x.shape[2:]:
            raise ValueError(f"embeddings {tuple(z.shape)} and images {tuple(x.shape)} differ in batch or H x W.")
        with torch.no_grad():
            anchors, positives, valid = mine_positive_pairs(
                x,
                self.anchors_per_image,
                self.patch_size,
                self.candidates,
                self.ssim_threshold,
                self.generator,
                self.positive_radius,
            )
        z_anchors = extract_patches(z, anchors, 1)[..., 0, 0]  # (B, S, d)
        z_positives = extract_patches(z, positives, 1)[..., 0, 0]
        contrastive = nt_xent(z_anchors, z_positives, self.temperature, valid)
        target = extract_patches(x, anchors, self.patch_size)
        reconstruction = self.reconstructor(z_anchors)
        if reconstruction.shape != target.shape:
            raise ValueError(
                f"the reconstructor returned patches of shape {tuple(reconstruction.shape[2:])} for images of "
                f"{x.shape[1]} channels and patch_size {self.patch_size}: expected {tuple(target.shape[2:])}."
            )
        return self.contrastive_weight * contrastive + (1 - self.contrastive_weight) * F.mse_loss(
            reconstruction, target
        )


def pixel_patches(x: torch.Tensor, patch_size: int) -> torch.Tensor:
    """The P x P patch around every pixel of ``x`` (B, C, H, W), the image border repeated (replicate padding):
    (B, C * P * P, H, W), channels in the (C, P, P) order of :func:`extract_patches` flattened, so that inside the
    image ``pixel_patches(x, P)[b, :, i, j]`` is ``extract_patches(x, [[(i, j)]], P)[b, 0].flatten()``."""
    if patch_size < 1 or patch_size % 2 == 0:
        raise ValueError(f"patch_size must be odd and >= 1, got {patch_size}.")
    half = patch_size // 2
    padded = F.pad(x, (half, half, half, half), mode="replicate")
    return F.unfold(padded, patch_size).unflatten(-1, x.shape[-2:])

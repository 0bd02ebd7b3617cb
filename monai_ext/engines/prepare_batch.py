"""Prepare-batch callables for MONAI's engines: diffusion training, and self-supervised training whose target is
the image itself."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from monai.engines import DiffusionPrepareBatch, PrepareBatch

from monai_ext.losses.contrastive import pixel_patches
from monai_ext.transforms.ensemble import mask_to_signal


class SamplePredictionPrepareBatch(DiffusionPrepareBatch):
    """Noise the image at a random timestep and make the clean image x0 the regression target.

    Tursynbek & Niethammer (MICCAI 2023, sec. 4.2) train the diffusion U-Net to predict x0 directly, with an
    L1 loss between prediction and clean image; pair this with ``DDPMScheduler(prediction_type="sample")``
    and ``monai.inferers.DiffusionInferer``, which noises the input with the ``noise`` and ``timesteps``
    this class passes on (Ho et al., NeurIPS 2020, eq. 4: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps).

    Args:
        num_train_timesteps: T, the number of diffusion steps; timesteps are drawn from [0, T).
        condition_name: optional batch key of a conditioning image (see ``DiffusionPrepareBatch``).
    """

    def __init__(self, num_train_timesteps: int, condition_name: str | None = None) -> None:
        if num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be >= 1, got {num_train_timesteps}.")
        super().__init__(num_train_timesteps=num_train_timesteps, condition_name=condition_name)

    def get_target(self, images: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The clean image x0: the network predicts the sample, not the noise."""
        return images


class MaskDiffusionPrepareBatch(DiffusionPrepareBatch):
    """Diffuse the segmentation mask, conditioned on the image concatenated at every step (Wolleb et al., 2022).

    Wolleb et al. (MIDL 2022, "Diffusion Models for Implicit Image Segmentation Ensembles", sec. 2) add noise to
    the mask only and give the network the noisy mask and the image, concatenated along channels. The mask
    {0, 1} is diffused as {-1, 1} (``mask_to_signal``; data in [-1, 1] as in Ho et al.). Returns the mask
    signal as the input, the loss target ``{"x0", "noise", "timesteps"}`` (``HybridDiffusionLoss``), and the
    inferer keyword arguments of ``monai.inferers.DiffusionInferer`` in ``"concat"`` mode (noisy mask first,
    then the image).

    Args:
        num_train_timesteps: T; timesteps are drawn uniformly from [0, T).
        image_key: batch key of the conditioning image.
        mask_key: batch key of the binary mask.
    """

    def __init__(self, num_train_timesteps: int, image_key: str = "image", mask_key: str = "label") -> None:
        if num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be >= 1, got {num_train_timesteps}.")
        super().__init__(num_train_timesteps=num_train_timesteps, condition_name=image_key)
        self.image_key = image_key
        self.mask_key = mask_key

    def __call__(
        self,
        batchdata: Mapping[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], tuple, dict]:
        missing = {self.image_key, self.mask_key} - set(batchdata)
        if missing:
            raise KeyError(f"the batch needs '{self.image_key}' and '{self.mask_key}'; missing {sorted(missing)}.")
        image = batchdata[self.image_key].to(device, non_blocking=non_blocking, **kwargs)
        x0 = mask_to_signal(batchdata[self.mask_key].to(device, non_blocking=non_blocking, **kwargs))
        noise = self.get_noise(x0)
        timesteps = self.get_timesteps(x0)
        target = {"x0": x0, "noise": noise, "timesteps": timesteps}
        return x0, target, (), {"noise": noise, "timesteps": timesteps, "condition": image, "mode": "concat"}


class SelfSupervisedPrepareBatch(PrepareBatch):
    """Inputs and targets from the images alone, for ``SupervisedTrainer`` / ``SupervisedEvaluator`` on unlabelled
    data (CUTS, Liu, Amodio et al., sec. 3.1): the target is the image itself (training: the loss receives
    ``loss(network(x), x)``, see :class:`monai_ext.losses.CUTSLoss`) or, with ``patch_size``, the P x P patch
    around every pixel (:func:`monai_ext.losses.pixel_patches`; validation of a
    :class:`monai_ext.networks.PatchAutoencoder` by its mean squared error).

    Args:
        image_key: batch key of the images (B, C, H, W).
        patch_size: None: the target is the image; an odd P >= 1: its pixel patches (B, C * P * P, H, W).
    """

    def __init__(self, image_key: str = "image", patch_size: int | None = None) -> None:
        if patch_size is not None and (patch_size < 1 or patch_size % 2 == 0):
            raise ValueError(f"patch_size must be None or odd and >= 1, got {patch_size}.")
        self.image_key = image_key
        self.patch_size = patch_size

    def __call__(
        self,
        batchdata: Mapping[str, torch.Tensor],
        device: str | torch.device | None = None,
        non_blocking: bool = False,
        **kwargs,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        images = batchdata[self.image_key].to(device=device, non_blocking=non_blocking, **kwargs)
        return images, images if self.patch_size is None else pixel_patches(images, self.patch_size)

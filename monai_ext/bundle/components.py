"""Components a bundle config builds from a config id's value: the sampling scheduler, the visual term's denoiser,
the values merged levels are merged by."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from monai.networks.schedulers import Scheduler
from torch import nn

from monai_ext.bundle.root import bundle_component
from monai_ext.networks import DiffusionDenoiser
from monai_ext.schedulers import PREDICTION_TYPES, ConsistentDDIMScheduler, LearnedVarianceDDPMScheduler
from monai_ext.weights import load_weights

VISUAL_TARGETS = ("image", "denoised")
MERGE_DENOISER_KEYS = ("bundle", "configs", "ckpt", "hint", "timestep", "num_draws", "input_size", "seed", "padding")


def visual_denoiser(visual_target: str, denoiser: nn.Module) -> nn.Module | None:
    """The denoiser the visual term reads (config id ``visual_target``): None for ``"image"`` (the paper's L_v on
    x0), ``denoiser`` for ``"denoised"`` (L_v on the diffusion model's x0 prediction).

    Raises:
        ValueError: ``visual_target`` is neither; the message names the config id.
    """
    if visual_target not in VISUAL_TARGETS:
        raise ValueError(f"visual_target must be one of {VISUAL_TARGETS}, got {visual_target!r}.")
    return denoiser if visual_target == "denoised" else None


def diffusion_model(
    bundle: str, configs: str | Sequence[str], ckpt: str, device: str | torch.device = "cpu", hint: str = ""
) -> tuple[nn.Module, Scheduler]:
    """The pretrained diffusion U-Net and its noise scheduler, as the diffusion bundle that trained them defines them.

    Args:
        bundle: the diffusion bundle's folder.
        configs: its config files defining ``network_def``, ``weights_settings`` and ``scheduler``, layered in order.
        ckpt: the U-Net's weights (a plain state dict with its ``model.json`` settings beside it).
        device: where the U-Net goes.
        hint: how to make missing weights, shown in the error.

    Raises:
        FileNotFoundError, ValueError: from :func:`~monai_ext.weights.load_weights`, e.g. when the weights were
            trained with other settings than ``configs`` give.
    """
    settings = bundle_component(bundle, "weights_settings", configs)
    unet = load_weights(bundle_component(bundle, "network_def", configs), ckpt, device, hint, settings)
    return unet, bundle_component(bundle, "scheduler", configs)


def merge_denoiser(merge_by: str, denoiser: Mapping[str, Any], device: str | torch.device) -> nn.Module | None:
    """What ``HierarchicalSegmenter`` merges the finest parts by (config id ``merge_by``, its ``merge_values``):
    None for ``"image"`` (the input's part means), a :class:`~monai_ext.networks.DiffusionDenoiser` for
    ``"denoised"`` (the part means of the diffusion model's x0 prediction, the visual target of training). The
    denoiser is built only then, so a network without merged levels never reads the diffusion weights.

    Args:
        merge_by: ``"image"`` or ``"denoised"``.
        denoiser: config id ``merge_denoiser``: ``bundle`` and ``configs`` (the diffusion bundle folder and config
            files defining its ``network_def``, ``weights_settings`` and ``scheduler``), ``ckpt`` (its weights),
            ``hint`` (how to make them, for the error), and ``DiffusionDenoiser``'s ``timestep``, ``num_draws``,
            ``input_size``, ``seed`` and ``padding``.
        device: where the denoiser runs.

    Raises:
        ValueError: ``merge_by`` is neither, or ``denoiser`` lacks a key; the messages name the config id.
    """
    if merge_by not in VISUAL_TARGETS:
        raise ValueError(f"config id 'merge_by' must be one of {VISUAL_TARGETS}, got {merge_by!r}.")
    if merge_by == "image":
        return None
    if missing := [key for key in MERGE_DENOISER_KEYS if key not in denoiser]:
        raise ValueError(f"config id 'merge_denoiser' lacks {missing}; it needs {list(MERGE_DENOISER_KEYS)}.")
    unet, scheduler = diffusion_model(
        denoiser["bundle"], denoiser["configs"], denoiser["ckpt"], device, denoiser["hint"]
    )
    options = {key: denoiser[key] for key in ("timestep", "num_draws", "input_size", "seed", "padding")}
    return DiffusionDenoiser(unet, scheduler, **options)


SAMPLERS = ("ddim", "ddpm")


def sampling_scheduler(
    sampler: str, num_train_timesteps: int, schedule: str = "linear_beta", prediction_type: str = "epsilon"
) -> Scheduler:
    """The scheduler an ensemble sampler runs with (config id ``sampler``), over the training noise schedule and
    for the network's ``prediction_type`` (config id ``prediction_type``): ``"ddim"`` (Song et al., ICLR 2021; any
    number of steps, the prediction of the mean only, stepping along the clipped x0 with
    ``ConsistentDDIMScheduler``) or ``"ddpm"`` (all T steps, with the learned variance of
    ``LearnedVarianceDDPMScheduler``).

    Raises:
        ValueError: ``sampler`` is neither, or ``prediction_type`` is not one of ``PREDICTION_TYPES``.
    """
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"config id 'prediction_type' must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")
    options = {"num_train_timesteps": num_train_timesteps, "schedule": schedule, "prediction_type": prediction_type}
    if sampler == "ddim":
        return ConsistentDDIMScheduler(**options)
    if sampler == "ddpm":
        return LearnedVarianceDDPMScheduler(**options)
    raise ValueError(f"config id 'sampler' must be one of {SAMPLERS}, got {sampler!r}.")

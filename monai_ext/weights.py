"""Weights files: a plain state dict (``weights_only`` loadable, as the model zoo ships them) and, beside it, the
settings needed to use it.

A state dict holds tensors only: it cannot say that a diffusion model was trained to predict v rather than the
noise, over how many timesteps, or for how many image channels, yet sampling with other settings runs and gives
wrong results. So every ``model.pt`` a training run writes gets a ``model.json`` beside it holding those settings
(config ids and values, e.g. ``{"prediction_type": "v_prediction", "num_train_timesteps": 1000}``), and
:func:`load_weights` compares them with the loading config's: a mismatch is an error naming both values.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from monai_ext import __version__

logger = logging.getLogger(__name__)


def settings_path(weights: str | Path) -> Path:
    """The settings file of a weights file: ``model.pt`` -> ``model.json``."""
    return Path(weights).with_suffix(".json")


def _plain(value: object) -> object:
    """``value`` as JSON gives it back (tuples become lists), so settings compare as they are stored."""
    return json.loads(json.dumps(value))


def atomic_save(obj: object, path: str | Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename it over ``path``: a run killed while saving
    leaves the previous file intact instead of a truncated one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(obj, file)
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes the file private; a weights file is not
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_weights(state: Mapping[str, torch.Tensor], path: str | Path, settings: Mapping[str, Any] | None) -> None:
    """Write a plain state dict to ``path`` and its ``settings`` (config ids and values) beside it, both atomically.

    Args:
        state: the state dict.
        path: the weights file (``.pt``).
        settings: what a config must repeat to use the weights (None: write no settings file).
    """
    atomic_save(dict(state), path)
    if settings is not None:
        content = json.dumps({"monai_ext": __version__, "settings": _plain(dict(settings))}, indent=2) + "\n"
        temporary = settings_path(path).with_name(f".{settings_path(path).name}.tmp")
        temporary.write_text(content)
        os.replace(temporary, settings_path(path))


def check_settings(path: str | Path, settings: Mapping[str, Any]) -> None:
    """Compare the settings a config uses with those stored beside the weights ``path``.

    A weights file without a settings file (written before monai-ext 0.2, or by other code) is loaded with a
    warning; a setting the file does not store is not checked.

    Raises:
        ValueError: a setting differs; the message names the config id, both values and the settings file.
    """
    stored_path = settings_path(path)
    if not stored_path.is_file():
        logger.warning(
            f"weights '{path}' have no settings file '{stored_path.name}' beside them: cannot check that "
            f"{sorted(settings)} match the ones they were trained with."
        )
        return
    try:
        stored = json.loads(stored_path.read_text())["settings"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"settings file '{stored_path}' of weights '{path}' cannot be read: {error}") from error
    for key, value in settings.items():
        if key in stored and stored[key] != _plain(value):
            raise ValueError(
                f"config id '{key}' is {value!r}, but weights '{path}' were trained with {key} = {stored[key]!r} "
                f"(stored in '{stored_path}'); pass --{key} {stored[key]!r} or weights trained with {value!r}."
            )


def _check_device(device: str | torch.device) -> torch.device:
    """``device`` as a ``torch.device``; a CUDA device on a machine without one is refused, naming the config id."""
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"config id 'device' must name a torch device such as 'cpu' or 'cuda:0': {error}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"config id 'device' is '{device}', but this machine has no CUDA GPU; pass --device cpu.")
    return device


def load_weights(
    network: nn.Module,
    path: str | Path,
    device: str | torch.device = "cpu",
    how_to_make: str = "",
    settings: Mapping[str, Any] | None = None,
) -> nn.Module:
    """Load a plain state dict (``weights_only=True``) into ``network`` with errors that say what to do.

    Args:
        network: the network built from the bundle's ``network_def``.
        path: the weights file (a plain state dict, e.g. ``models/model.pt``).
        device: where the network and its weights go.
        how_to_make: the command that creates a missing weights file, shown in the error.
        settings: config ids and values the weights must have been trained with (see :func:`check_settings`).

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it and ``how_to_make``).
        ValueError: ``path`` is not a file holding a state dict that fits ``network``, ``device`` is not available,
            or a setting differs from the weights'.
    """
    path = Path(path)
    device = _check_device(device)
    if path.is_dir():
        raise ValueError(f"weights '{path}' is a folder; pass the weights file inside it (e.g. '{path}/model.pt').")
    if not path.is_file():
        hint = how_to_make or "pass the path of an existing weights file."
        raise FileNotFoundError(f"'{path}' does not exist; {hint}")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except Exception as error:  # torch raises several types for truncated, corrupt or non-plain files
        raise ValueError(
            f"checkpoint '{path}' could not be read as a plain state dict (truncated, corrupt, or not saved with "
            f"torch.save(model.state_dict())): {error}"
        ) from error
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(
            f"weights '{path}' hold a {type(state).__name__}, not a state dict (names -> tensors); save them with "
            "torch.save(model.state_dict(), path)."
        )
    if settings:
        check_settings(path, settings)  # before the shapes: a setting names what differs
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"checkpoint '{path}' does not fit the configured {type(network).__name__}: {error}. Check that the "
            f"network definition in the config matches the one the weights were trained with."
        ) from error
    return network.to(device)

"""Helpers that bundle configs call: where the bundle lives, and which default data it runs on."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from torch import nn

from monai_ext.data.phantoms import make_phantoms

CACHE_ENV = "MONAI_EXT_CACHE"


def resolve_bundle_root(name: str) -> str:
    """The folder of bundle ``name``, whether the command runs from the repository root or the bundle folder.

    MONAI does not set ``bundle_root``; the model zoo and MONAI Label run a bundle from its own folder, a user
    of this repository from its root. ``--bundle_root DIR`` on the command line overrides this.

    Args:
        name: the bundle's ``name`` in its ``configs/metadata.json``.

    Raises:
        FileNotFoundError: neither ``./bundles/<name>`` nor ``.`` holds the metadata of a bundle called ``name``.
    """
    for candidate in (Path("bundles") / name, Path(".")):
        metadata = candidate / "configs" / "metadata.json"
        if metadata.is_file() and json.loads(metadata.read_text()).get("name") == name:
            return str(candidate)
    raise FileNotFoundError(
        f"cannot find bundle '{name}' from '{Path.cwd()}': run from the repository root or from "
        f"bundles/{name}, or pass --bundle_root DIR."
    )


def cache_dir(name: str) -> Path:
    """A folder for generated default data: ``$MONAI_EXT_CACHE/<name>``, else ``~/.cache/monai_ext/<name>``."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "monai_ext")
    return root / name


def ensure_phantoms(dataset_dir: str, variant: str = "regular", n: int = 120, seed: int = 0, size: int = 50) -> str:
    """Return ``dataset_dir/datalist.json``, generating cell phantoms there first if it has no datalist.

    A folder that holds files but no ``datalist.json`` is never written into: the generator refuses it.

    Args:
        dataset_dir: the folder of the bundle's data (config id ``dataset_dir``).
        variant, n, seed, size: options of ``monai_ext.data.phantoms.make_phantoms`` used when generating.
    """
    datalist = Path(dataset_dir) / "datalist.json"
    if not datalist.is_file():
        make_phantoms(str(dataset_dir), variant=variant, n=n, seed=seed, size=size)
    return str(datalist)


def require_file(path: str | Path, how_to_make: str) -> str:
    """Return ``path`` when it is a file; otherwise fail with a message that names it and says how to make it.

    Bundle configs call this before loading weights, e.g.
    ``"$monai_ext.bundle.require_file(@ckpt_path, 'train the bundle first: ...')"``.

    Args:
        path: the file that must exist (a checkpoint, a datalist, ...).
        how_to_make: the command or steps that create the file, shown in the error.

    Raises:
        FileNotFoundError: ``path`` does not exist or is not a file.
    """
    if not how_to_make:
        raise ValueError("how_to_make must say how to create the missing file, got an empty string.")
    if not Path(path).is_file():
        raise FileNotFoundError(f"'{path}' does not exist; {how_to_make}")
    return str(path)


def bundle_component(bundle_dir: str, config_id: str, configs: Sequence[str] = ("configs/train.json",)) -> Any:
    """Instantiate one config id of another bundle (e.g. the diffusion bundle's ``network_def``).

    Reading the definition from the bundle that trained the weights keeps the two bundles in step: a
    structure-discovery run builds exactly the network its diffusion checkpoint was trained as.

    Args:
        bundle_dir: the other bundle's folder.
        config_id: the id to instantiate (only it and what it references are evaluated).
        configs: its config files, relative to ``bundle_dir``, layered in order.
    """
    paths = [Path(bundle_dir) / c for c in ([configs] if isinstance(configs, str) else configs)]
    if missing := [str(p) for p in paths if not p.is_file()]:
        raise FileNotFoundError(f"config file(s) {missing} not found; is '{bundle_dir}' the right bundle folder?")
    parser = ConfigParser()
    parser.read_config([str(p) for p in paths])
    if config_id not in parser:
        raise ValueError(f"'{config_id}' is not an id of {[str(p) for p in paths]}.")
    return parser.get_parsed_content(config_id)


def load_weights(network: nn.Module, path: str, device: str | torch.device = "cpu", how_to_make: str = "") -> nn.Module:
    """Load a plain state dict (``weights_only=True``) into ``network`` with errors that say what to do.

    Args:
        network: the network built from the bundle's ``network_def``.
        path: the checkpoint file (a plain state dict, e.g. ``models/model.pt``).
        device: where the network and its weights go.
        how_to_make: the command that creates a missing checkpoint, shown in the error.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message names it and ``how_to_make``).
        ValueError: the checkpoint's tensors do not fit the configured network.
    """
    require_file(path, how_to_make or "Pass the path of an existing checkpoint.")
    state = torch.load(path, map_location=device, weights_only=True)
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise ValueError(
            f"checkpoint '{path}' does not fit the configured {type(network).__name__}: {error}. Check that the "
            f"network definition in the config matches the one the checkpoint was trained with."
        ) from error
    return network.to(device)

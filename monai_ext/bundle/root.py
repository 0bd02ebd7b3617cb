"""Where a bundle lives, and the files and config ids it reads from itself or from another bundle."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser


def resolve_bundle_root(name: str) -> str:
    """The folder of bundle ``name``, whether the command runs from the repository root or the bundle folder.

    MONAI does not set ``bundle_root``; the model zoo and MONAI Label run a bundle from its own folder, a user
    of this repository from its root. ``--bundle_root DIR`` on the command line overrides this. The bundle is
    ``./bundles/<name>`` when that exists, else the current folder when it holds a ``configs/metadata.json`` and
    configs of bundle ``name`` (a config that resolves its root with ``resolve_bundle_root('<name>')``), whatever
    the folder is called: an unzipped ``<name>``, ``<name>_v0.2.0`` or a copy under another name.

    Args:
        name: the bundle's id, the name of its folder in the repository.

    Raises:
        FileNotFoundError: neither ``./bundles/<name>`` nor ``.`` is the folder of bundle ``name``.
    """
    if (Path("bundles") / name / "configs" / "metadata.json").is_file():
        return str(Path("bundles") / name)
    if Path("configs", "metadata.json").is_file() and _names_itself(Path("configs"), name):
        return "."
    raise FileNotFoundError(
        f"cannot find bundle '{name}' from '{Path.cwd()}': run from the repository root or from the bundle's "
        f"folder (the one holding configs/metadata.json), or pass --bundle_root DIR."
    )


def _names_itself(configs: Path, name: str) -> bool:
    """Whether a config in ``configs`` sets its ``bundle_root`` as the root of bundle ``name``."""
    call = f"resolve_bundle_root('{name}')"
    for config in configs.glob("*.json"):
        try:
            root = json.loads(config.read_text()).get("bundle_root")
        except (OSError, ValueError, AttributeError):
            continue  # unreadable, or not a config of mapping form
        if isinstance(root, str) and call in root:
            return True
    return False


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

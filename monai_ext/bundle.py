"""Helpers that bundle configs call: where the bundle lives, and which default data it runs on."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from monai.bundle import ConfigParser
from monai.networks.schedulers import Scheduler
from monai.utils import set_determinism
from torch import nn

from monai_ext.data.brain import make_brains
from monai_ext.data.output_folder import on_rank_zero
from monai_ext.data.phantoms import make_phantoms
from monai_ext.schedulers import PREDICTION_TYPES, ConsistentDDIMScheduler, LearnedVarianceDDPMScheduler
from monai_ext.transforms.hierarchy import parse_num_parts

CACHE_ENV = "MONAI_EXT_CACHE"
DEFAULT_PHANTOMS = "phantoms_regular"
DEFAULT_DATA: dict[str, Callable[[str], Path]] = {  # cache folder name -> generator of its dataset
    DEFAULT_PHANTOMS: partial(make_phantoms, variant="regular", n=120, seed=0, size=50),
    "brains": partial(make_brains, n=60, seed=0, mode="3d", resolution=2),
    "cell_slices": partial(make_phantoms, variant="regular", n=120, seed=0, size=64, mode="2d"),
    "brain_slices": partial(
        make_brains, n=60, seed=0, mode="2d", resolution=2, slices_per_subject=4, empty_slices_per_subject=1
    ),
}


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


def cache_dir(name: str) -> Path:
    """A folder for generated default data: ``$MONAI_EXT_CACHE/<name>``, else ``~/.cache/monai_ext/<name>``."""
    root = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "monai_ext")
    return root / name


def default_dataset_dir(name: str = DEFAULT_PHANTOMS) -> str:
    """A bundle's default ``dataset_dir``: the cache folder where default dataset ``name`` is generated on first use.

    Args:
        name: one of ``DEFAULT_DATA``: ``"phantoms_regular"`` (the 120 regular cell phantoms, the bundles' default),
            ``"brains"`` (60 BraTS-like brain phantoms, the brain configs' default) or ``"brain_slices"`` (their 2D
            axial slices, 128 x 128 x 4 contrasts: 4 through the tumour and 1 without it per subject; the
            diffusion_segmentation and cuts bundles' default) or ``"cell_slices"`` (the central 64 x 64 axial slice
            of 120 regular cell phantoms, for cuts' ``configs/cell_slices.json``).

    Raises:
        ValueError: ``name`` is not a default dataset.
    """
    if name not in DEFAULT_DATA:
        raise ValueError(f"default dataset '{name}' does not exist; choose one of {sorted(DEFAULT_DATA)}.")
    return str(cache_dir(name))


def ensure_default_data(dataset_dir: str) -> str:
    """Return ``dataset_dir``; when it is a default folder (:func:`default_dataset_dir`) and holds no
    ``datalist.json`` yet, generate its dataset there first (``DEFAULT_DATA``).

    Bundle configs call this only where the dataset is built for a run, never in what MONAI Label builds
    (transforms, network, inferer), so loading a bundle reads and writes no data. Any other folder is returned
    as it is: a user's folder is never filled with phantoms. Under ``torch.distributed`` rank 0 generates while
    the other ranks wait.
    """
    folder = Path(dataset_dir)
    for name, make in DEFAULT_DATA.items():
        if folder.resolve() == Path(default_dataset_dir(name)).resolve() and not (folder / "datalist.json").is_file():
            on_rank_zero(partial(make, str(folder)))
    return str(dataset_dir)


def datalist_path(dataset_dir: str, datalist_name: str = "datalist.json") -> str:
    """``dataset_dir/datalist_name`` (default data generated first, see :func:`ensure_default_data`).

    Raises:
        FileNotFoundError: the folder has no ``datalist_name``; the message says what the file must hold.
    """
    datalist = Path(ensure_default_data(dataset_dir)) / datalist_name
    if not datalist.is_file():
        raise FileNotFoundError(
            f"dataset_dir '{dataset_dir}' has no {datalist_name} (config id datalist_name): it must list "
            f"'training', 'validation' and 'test' volumes as MONAI datalists do "
            f'({{"training": [{{"image": "a.nii.gz"}}, ...], ...}}).'
        )
    return str(datalist)


def check_num_parts(num_parts: Sequence[int], spatial_size: Sequence[int]) -> list[int]:
    """Refuse, before any network is built or run, more parts per level than the network input has voxels.

    Args:
        num_parts: K of each level (config id ``num_parts``).
        spatial_size: the network input grid (config id ``spatial_size``).

    Raises:
        ValueError: a K is not an integer >= 2 or exceeds the voxel count; the message names ``num_parts``.
    """
    parts = parse_num_parts(num_parts)
    voxels = math.prod(int(s) for s in spatial_size)
    if max(parts) > voxels:
        raise ValueError(
            f"num_parts must list integers K with 2 <= K <= {voxels} (the voxels of spatial_size "
            f"{list(spatial_size)}), got {list(num_parts)!r}."
        )
    return parts


def set_seed(seed: object) -> int:
    """Seed every generator (``monai.utils.set_determinism``) from config id ``seed``, refusing anything but an
    integer >= 0 with a message that names the id (``--seed abc`` failed inside MONAI without naming it)."""
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"config id 'seed' must be an integer >= 0, got {seed!r}.")
    set_determinism(seed=seed)
    return seed


def check_spatial_size(spatial_size: Sequence[int], multiple: int, config_id: str = "spatial_size") -> list[int]:
    """Refuse a network input size that a U-Net cannot run: each side must be a positive multiple of ``multiple``
    (``2 ** (levels - 1)`` for a U-Net that halves the grid between its levels), checked before anything runs.

    Args:
        spatial_size: the network input grid (config id ``config_id``).
        multiple: what every side must be a multiple of, >= 1.
        config_id: the config id named in the error.

    Raises:
        ValueError: a side is not a positive integer multiple of ``multiple``; the message proposes the nearest size.
    """
    sides = list(spatial_size) if isinstance(spatial_size, list | tuple) else [spatial_size]
    if not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 and s % multiple == 0 for s in sides):
        raise ValueError(
            f"config id '{config_id}' must list positive multiples of {multiple} (the network halves the grid "
            f"between its levels), got {spatial_size!r}."
        )
    return sides


VISUAL_TARGETS = ("image", "denoised")


def visual_denoiser(visual_target: str, denoiser: nn.Module) -> nn.Module | None:
    """The denoiser the visual term reads (config id ``visual_target``): None for ``"image"`` (the paper's L_v on
    x0), ``denoiser`` for ``"denoised"`` (L_v on the diffusion model's x0 prediction).

    Raises:
        ValueError: ``visual_target`` is neither; the message names the config id.
    """
    if visual_target not in VISUAL_TARGETS:
        raise ValueError(f"visual_target must be one of {VISUAL_TARGETS}, got {visual_target!r}.")
    return denoiser if visual_target == "denoised" else None


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

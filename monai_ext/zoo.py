"""The MONAI model zoo's checks of a bundle folder, and the zip the zoo publishes for it.

The rules are those of the zoo's CI (``Project-MONAI/model-zoo``: ``ci/verify_bundle.py`` for the files, the
version and the changelog, ``ci/update_model_info.py`` and ``ci/utils.py`` for the archive) and of the MONAI
Bundle Specification for the metadata keys. The network checks the zoo also runs (``verify_net_in_out``,
``ckpt_export``) need each bundle's own forward arguments and live in ``tests/test_zoo.py``.

The archive is ``<name>_v<version>.zip`` holding one folder ``<name>/`` (``configs/``, ``models/``, ``docs/``,
``LICENSE``, ...), written as the zoo's ``compress_bundle`` writes it: no directory entries, every file dated
2022-05-30 00:00, deflated, so the same files give the same bytes. Run outputs (``runs/``), the zoo CI's
``eval/`` folder, caches (``__pycache__``, hidden files and folders) and the ``large_files`` config (whose files
must then be present, as the zoo downloads them before zipping) are left out.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from monai.bundle import ConfigParser
from monai.utils import OptionalImportError

from monai_ext.flags import as_flag
from monai_ext.provenance import refuse_existing

REQUIRED_FILES = ("configs/metadata.json", "configs/inference.json", "docs/README.md", "LICENSE")
WEIGHTS = "models/model.pt"
LARGE_FILES = ("large_files.yml", "large_files.yaml", "large_files.json")
MAX_FILE_MB = 25
# the Bundle Specification's mandatory keys (``required_packages_version`` since the zoo's 2024-07-25 schema), plus
# what the zoo's CI and model browser read: ``schema``, ``version`` / ``changelog`` and the display ``name``
METADATA_KEYS = (
    "schema",
    "version",
    "changelog",
    "monai_version",
    "pytorch_version",
    "numpy_version",
    "required_packages_version",
    "name",
    "task",
    "description",
    "authors",
    "copyright",
    "network_data_format",
)
# keys every input and output of every zoo bundle on the 2024-07-25 schema has; ``verify_net_in_out`` reads the
# input ``image`` and the output ``pred``
TENSOR_KEYS = ("type", "format", "num_channels", "spatial_shape", "dtype", "value_range")
NETWORK_IO = {"inputs": "image", "outputs": "pred"}
OUTPUT_DIRS = ("runs", "eval")
ZIP_DATE = (2022, 5, 30, 0, 0, 0)


def read_metadata(bundle_dir: str | Path) -> dict[str, Any]:
    """The bundle's ``configs/metadata.json``.

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: it is not a JSON object.
    """
    path = Path(bundle_dir) / "configs" / "metadata.json"
    if not path.is_file():
        raise FileNotFoundError(f"'{path}' does not exist; every bundle needs configs/metadata.json.")
    try:
        metadata = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"'{path}' is not valid JSON: {error}.") from error
    if not isinstance(metadata, dict):
        raise ValueError(f"'{path}' must hold a JSON object, got {type(metadata).__name__}.")
    return metadata


def large_files(bundle_dir: str | Path) -> list[str]:
    """Paths (relative to the bundle) that its ``large_files.yml`` (or ``.yaml`` / ``.json``) links to."""
    listed = []
    for name in LARGE_FILES:
        path = Path(bundle_dir) / name
        if not path.is_file():
            continue
        try:
            entries = ConfigParser.load_config_file(str(path)).get("large_files", [])
        except OptionalImportError as error:
            raise ValueError(f"reading '{path}' needs PyYAML: pip install pyyaml (or write it as JSON).") from error
        listed += [str(entry["path"]) for entry in entries]
    return listed


def file_problems(bundle_dir: str | Path) -> list[str]:
    """What the zoo finds wrong with the bundle's files: a required file missing, no weights (``models/model.pt``
    or a ``large_files`` entry for it), or a file over 25 MB that ``large_files`` does not list."""
    bundle_dir = Path(bundle_dir)
    problems = [f"required file {name} is missing" for name in REQUIRED_FILES if not (bundle_dir / name).is_file()]
    linked = large_files(bundle_dir)
    if not (bundle_dir / WEIGHTS).is_file() and WEIGHTS not in linked:
        problems.append(f"{WEIGHTS} is missing (ship it, or link it in large_files.yml)")
    for path in bundle_files(bundle_dir):
        size_mb = (bundle_dir / path).stat().st_size / 2**20
        if size_mb > MAX_FILE_MB and path not in linked:
            problems.append(
                f"{path} has {size_mb:.0f} MB; the zoo stores files over {MAX_FILE_MB} MB elsewhere: upload it and "
                f"list its url in large_files.yml"
            )
    return problems


def version_problems(metadata: Mapping[str, Any]) -> list[str]:
    """What the zoo finds wrong with ``version`` and ``changelog``: the version must be a key of the changelog and
    start with a digit (the zoo names archives ``<name>_v<version>`` and parses them back with ``_v(\\d.*)``)."""
    version, changelog = metadata.get("version"), metadata.get("changelog")
    if not isinstance(version, str) or not version[:1].isdigit():
        return [f"metadata 'version' must be a string starting with a digit such as '0.1.0', got {version!r}"]
    if not isinstance(changelog, Mapping) or version not in changelog:
        listed = list(changelog) if isinstance(changelog, Mapping) else changelog
        return [f"metadata 'version' {version!r} is not a key of its 'changelog' ({listed!r}); describe it there"]
    return []


def metadata_problems(metadata: Mapping[str, Any]) -> list[str]:
    """Missing metadata keys (``METADATA_KEYS``) and network input / output descriptions (``TENSOR_KEYS``)."""
    problems = [f"metadata has no '{key}'" for key in METADATA_KEYS if key not in metadata]
    data_format = metadata.get("network_data_format")
    if not isinstance(data_format, Mapping):
        return problems
    for group, required in NETWORK_IO.items():
        tensors = data_format.get(group)
        if not isinstance(tensors, Mapping) or required not in tensors:
            problems.append(f"network_data_format#{group} must describe '{required}' (verify_net_in_out reads it)")
            continue
        for name, tensor in tensors.items():
            missing = [key for key in TENSOR_KEYS if not isinstance(tensor, Mapping) or key not in tensor]
            if missing:
                problems.append(f"network_data_format#{group}#{name} has no {missing}; it needs {list(TENSOR_KEYS)}")
    return problems


def weight_problems(bundle_dir: str | Path) -> list[str]:
    """Files ``models/**/*.pt`` that are not plain state dicts: ``torch.load(weights_only=True)`` must give a mapping
    of names to tensors (a training checkpoint with an optimizer, an epoch or a pickled module is refused)."""
    problems = []
    models = Path(bundle_dir) / "models"
    for path in sorted(models.rglob("*.pt")):
        name = path.relative_to(models).as_posix()
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for corrupt, truncated or pickled-object files
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            problems.append(f"models/{name} cannot be read with torch.load(weights_only=True): {first_line}")
            continue
        if not isinstance(state, Mapping):
            problems.append(f"models/{name} holds a {type(state).__name__}, not a state dict")
            continue
        bad = [key for key, value in state.items() if not isinstance(key, str) or not isinstance(value, torch.Tensor)]
        if bad:
            problems.append(
                f"models/{name} is not a plain state dict: entries {bad[:5]!r} are not named tensors; save "
                f"torch.save(network.state_dict(), ...)"
            )
    return problems


def bundle_problems(bundle_dir: str | Path) -> list[str]:
    """Everything the zoo's checks find wrong with a bundle folder (empty when it may be published)."""
    problems = [*file_problems(bundle_dir), *link_problems(bundle_dir)]
    try:
        metadata = read_metadata(bundle_dir)
    except FileNotFoundError:  # already among the missing required files
        return problems
    except ValueError as error:
        return [*problems, str(error)]
    return [*problems, *version_problems(metadata), *metadata_problems(metadata), *weight_problems(bundle_dir)]


def _left_out(parts: tuple[str, ...]) -> bool:
    """Whether the zoo's archive leaves a bundle path out: run outputs, caches, hidden entries, ``large_files``."""
    return (
        parts[0] in OUTPUT_DIRS
        or parts[-1] in LARGE_FILES
        or parts[-1].endswith(".pyc")
        or any(part == "__pycache__" or part.startswith(".") for part in parts)
    )


def _walk(bundle_dir: Path) -> list[tuple[Path, tuple[str, ...]]]:
    """Every entry under ``bundle_dir`` (files, folders, links) with its parts, sorted; links are never entered."""
    entries = []
    for root, folders, files in os.walk(bundle_dir, followlinks=False):
        for name in folders + files:
            path = Path(root) / name
            entries.append((path, path.relative_to(bundle_dir).parts))
    return sorted(entries)


def link_problems(bundle_dir: str | Path) -> list[str]:
    """Symbolic links among the files the zoo would archive: a link would put its target (any file of the machine)
    into the zip, so they are refused rather than followed."""
    return [
        f"{'/'.join(parts)} is a symbolic link (to '{os.readlink(path)}'); the archive holds regular files only: "
        "replace it with a copy of the file or remove it"
        for path, parts in _walk(Path(bundle_dir))
        if path.is_symlink() and not _left_out(parts)
    ]


def bundle_files(bundle_dir: str | Path) -> list[str]:
    """The bundle's files as the zoo archives them (POSIX paths relative to the folder, sorted), without run
    outputs (``runs/``, ``eval/``), caches (``__pycache__``, ``*.pyc``, hidden files and folders), the
    ``large_files`` config and symbolic links (never followed; :func:`link_problems` reports them)."""
    return [
        "/".join(parts)
        for path, parts in _walk(Path(bundle_dir))
        if path.is_file() and not path.is_symlink() and not _left_out(parts)
    ]


def package_bundle(name: str, out: str, bundles_dir: str = "bundles", overwrite: bool = False) -> Path:
    """Write ``out/<name>_v<version>.zip``, the archive the MONAI model zoo publishes for bundle ``name``.

    The bundle must pass the zoo's checks first (``bundle_problems``): required files, weights that are plain
    state dicts, a ``version`` listed in the ``changelog`` and the metadata keys.

    Args:
        name: the bundle's folder name in ``bundles_dir`` (the zip's top folder).
        out: folder for the zip; created if missing.
        bundles_dir: the folder holding the bundles.
        overwrite: replace an existing zip of the same name and version.

    Returns:
        path of the written zip.

    Raises:
        FileNotFoundError: there is no bundle ``name`` in ``bundles_dir``, or a file ``large_files.yml`` lists is
            not present.
        ValueError: the bundle fails a zoo check (the message lists every reason).
        FileExistsError: the zip exists and ``overwrite`` is off.
    """
    overwrite = as_flag(overwrite, "overwrite")
    name = str(name)
    if name in ("", ".", "..") or Path(name).name != name:
        raise ValueError(f"name must be the folder name of a bundle in '{bundles_dir}', got '{name}'.")
    bundle_dir = Path(bundles_dir) / name
    if not (bundle_dir / "configs").is_dir():
        available = sorted(p.parent.parent.name for p in Path(bundles_dir).glob("*/configs/metadata.json"))
        raise FileNotFoundError(f"'{bundle_dir}' is not a bundle folder; bundles in '{bundles_dir}': {available}.")
    if problems := bundle_problems(bundle_dir):
        raise ValueError(f"bundle '{name}' cannot be published to the model zoo: " + "; ".join(problems) + ".")
    if absent := [path for path in large_files(bundle_dir) if not (bundle_dir / path).is_file()]:
        raise FileNotFoundError(
            f"{absent} are listed in large_files of '{bundle_dir}' but not present; the zoo's zip holds them: "
            f"download them into the bundle first."
        )
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise NotADirectoryError(f"out '{out_dir}' exists and is not a folder.")
    target = refuse_existing(out_dir / f"{name}_v{read_metadata(bundle_dir)['version']}.zip", overwrite)
    files = bundle_files(bundle_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    try:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            for path in files:
                status = (bundle_dir / path).stat()
                info = zipfile.ZipInfo(f"{name}/{path}", date_time=ZIP_DATE)
                info.compress_type = zipfile.ZIP_DEFLATED
                info.file_size = status.st_size  # lets zipfile choose ZIP64 for files over 2 GiB
                info.external_attr = (stat.S_IFREG | stat.S_IMODE(status.st_mode)) << 16
                with (bundle_dir / path).open("rb") as source, archive.open(info, "w") as target_file:
                    shutil.copyfileobj(source, target_file)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, target)
    print(f"wrote {target} ({len(files)} files, {target.stat().st_size / 2**20:.1f} MB)")
    return target

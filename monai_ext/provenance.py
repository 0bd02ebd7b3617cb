"""What every result file records: the command, the machine, the package versions, time and memory."""

from __future__ import annotations

import json
import os
import platform
import resource
import shlex
import sys
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path

import torch

from monai_ext.flags import as_flag

PACKAGES = ("monai-ext", "monai", "torch", "numpy", "scipy", "pytorch-ignite", "scikit-learn", "bm4d", "nibabel")


def environment() -> dict[str, object]:
    """The command line, the machine (cores, device) and the versions of the packages results depend on."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "command": shlex.join([Path(sys.executable).name, *sys.argv]),  # quoted: an argument may hold spaces
        "machine": {
            "platform": platform.platform(),
            "cores": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        },
        "versions": versions,
    }


def peak_memory_mb() -> float:
    """Peak resident memory of this process and its finished children, in MiB (Linux reports KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, children) / 1024.0


def refuse_existing(path: str | Path, overwrite: bool | str = False) -> Path:
    """Return ``path``; raise ``FileExistsError`` when something non-empty is there and ``overwrite`` is off.

    Every writer of a result file checks here (``overwrite`` may come from the command line as a string).
    """
    path = Path(path)
    if path.exists() and path.stat().st_size > 0 and not as_flag(overwrite, "overwrite"):
        raise FileExistsError(
            f"'{path}' exists; choose another output folder or pass --overwrite (overwrite=True) to replace it."
        )
    return path


def write_json(path: str | Path, payload: Mapping[str, object], overwrite: bool | str = False) -> Path:
    """Write ``payload`` as indented JSON; refuse to replace an existing non-empty file unless ``overwrite``."""
    path = refuse_existing(path, overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path

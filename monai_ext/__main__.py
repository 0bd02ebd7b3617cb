"""Command line: ``python -m monai_ext COMMAND --option value`` (python-fire).

Commands:
    make-phantoms   hierarchical cell phantoms (regular / irregular) with a MONAI datalist
    make-brains     brain lesion phantoms (3D or 2D, four MR contrasts) on the MNI152 anatomy
    baselines       k-means and BM4D + k-means, matched Dice per level
"""

from __future__ import annotations

import sys

import fire

from monai_ext.baselines.evaluate import run_baselines
from monai_ext.data.brain import make_brains
from monai_ext.data.phantoms import make_phantoms

COMMANDS = {"make-phantoms": make_phantoms, "make-brains": make_brains, "baselines": run_baselines}


USER_ERRORS = (ValueError, FileExistsError, FileNotFoundError, NotADirectoryError)


def main() -> None:
    """Dispatch to one of ``COMMANDS``; return values are not printed (each command prints its own report).

    Errors caused by the user's input (bad options, missing or unreadable files, a non-empty output folder)
    are printed as one line and exit with status 2; anything else keeps its traceback.
    """
    try:
        fire.Fire(COMMANDS, serialize=lambda _: None)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

"""Command line: ``python -m monai_ext COMMAND --option value`` (python-fire).

Commands:
    make-phantoms    hierarchical cell phantoms (regular / irregular) with a MONAI datalist
    make-brains      brain lesion phantoms (3D or 2D, four MR contrasts) on the MNI152 anatomy
    baselines        k-means and BM4D + k-means, matched Dice per level
    package-bundle   the zip the MONAI model zoo publishes for one bundle of ``bundles/``

Every command's options are checked against its signature before fire calls it: fire runs a function with its
defaults first and only then complains about arguments it could not use, so a misspelled option would do the
whole job (and fill the output folder) before failing.
"""

from __future__ import annotations

import difflib
import inspect
import math
import sys
import types
import typing
from collections.abc import Callable, Sequence

import fire
from fire.parser import DefaultParseValue, SeparateFlagArgs

from monai_ext.baselines.evaluate import run_baselines
from monai_ext.data.brain import make_brains
from monai_ext.data.phantoms import make_phantoms
from monai_ext.zoo import package_bundle

COMMANDS = {
    "make-phantoms": make_phantoms,
    "make-brains": make_brains,
    "baselines": run_baselines,
    "package-bundle": package_bundle,
}

USER_ERRORS = (ValueError, FileExistsError, FileNotFoundError, NotADirectoryError)
HELP = ("-h", "--help")


def _is_flag(token: str) -> bool:
    """Whether fire reads ``token`` as an option name (``--name``, ``-n``), not as a value such as ``-3``."""
    return token.startswith("--") or (len(token) > 1 and token[0] == "-" and token[1].isalpha())


def _numeric_type(annotation: object) -> tuple[type | None, bool]:
    """``(int or float or None, whether None is allowed)`` for a parameter annotation."""
    members = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    members = members or (annotation,)
    numeric = float if float in members else int if int in members else None
    return numeric, type(None) in members


def _check_value(option: str, raw: str | None, annotation: object) -> None:
    """Refuse ``raw`` (None: the option was given no value) for an int- or float-annotated option unless fire
    would parse it to a finite number (an integer for ``int``)."""
    numeric, none_allowed = _numeric_type(annotation)
    if numeric is None:
        return
    kind = "an integer" if numeric is int else "a finite number"
    allowed = f"{kind}{' or None' if none_allowed else ''}"
    if raw is None:
        raise ValueError(f"option {option} needs a value ({allowed}).")
    value = DefaultParseValue(raw)
    if value is None and none_allowed:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"option {option} must be {allowed}, got {raw!r}.")
    if numeric is int and not isinstance(value, int):
        raise ValueError(f"option {option} must be {allowed}, got {raw!r} (not an integer).")


def _unknown_option(command: str, token: str, key: str, names: Sequence[str]) -> ValueError:
    close = difflib.get_close_matches(key, names, n=1)
    hint = f" Did you mean --{close[0]}?" if close else ""
    valid = ", ".join(f"--{name}" for name in names)
    return ValueError(f"{command}: unknown option {token}.{hint} Valid options: {valid}.")


def check_options(command: str, function: Callable, args: Sequence[str]) -> dict[str, str | None]:
    """Check the command-line ``args`` of ``command`` against ``function``'s signature, as fire will read them.

    Options are ``--name value``, ``--name=value``, a bare ``--name`` (True) or ``--noname`` (False), hyphens
    standing for underscores, and ``-x`` for the one parameter starting with ``x``; other tokens fill the
    parameters not named, in order. Arguments after a lone ``--`` are fire's own flags; help requests are
    left to fire. Boolean parameters are not checked here: the commands read them with
    ``monai_ext.flags.as_flag``.

    Args:
        command: the command's name, shown in errors.
        function: the function the command calls.
        args: the command-line arguments after the command's name.

    Returns:
        each parameter given, with its raw value as fire will read it (None for a bare ``--flag``; empty when help
        was asked for).

    Raises:
        ValueError: an option is not a parameter of ``function`` (the message lists the valid ones and the
            closest match), there are more positional values than parameters, or an ``int`` / ``float``
            parameter gets a value that is not a finite number (not an integer, for ``int``).
    """
    args, flag_args = SeparateFlagArgs(list(args))
    if any(token in HELP for token in [*args, *flag_args]):
        return {}
    hints = typing.get_type_hints(function)
    names = list(inspect.signature(function).parameters)
    values: dict[str, tuple[str, str | None]] = {}
    positional: list[str] = []
    index = 0
    while index < len(args):
        token = args[index]
        index += 1
        if not _is_flag(token):
            positional.append(token)
            continue
        key, has_value, raw = token.lstrip("-").partition("=")
        key = key.replace("-", "_")
        bare = not has_value and (index == len(args) or _is_flag(args[index]))
        if key not in names and bare and key.startswith("no") and key[2:] in names:
            values[key[2:]] = (token, "False")
            continue
        if key not in names and len(key) == 1 and len(shortcut := [n for n in names if n[0] == key]) == 1:
            key = shortcut[0]
        if key not in names:
            raise _unknown_option(command, token, key, names)
        if not has_value and not bare:
            raw = args[index]
            index += 1
        values[key] = (token.partition("=")[0], None if bare else raw)
    free = [name for name in names if name not in values]
    if len(positional) > len(free):
        raise ValueError(
            f"{command}: too many values {positional[len(free) :]}; after the options given, it takes at most "
            f"{len(free)} positional value(s), for {', '.join(free) or 'nothing'}."
        )
    values.update({name: (f"{name} (given by position)", raw) for name, raw in zip(free, positional, strict=False)})
    for name, (option, raw) in values.items():
        _check_value(option, raw, hints.get(name))
    return {name: raw for name, (_, raw) in values.items()}


def main(argv: Sequence[str] | None = None) -> None:
    """Dispatch to one of ``COMMANDS``; return values are not printed (each command prints its own report).

    Errors caused by the user's input (unknown options, values of the wrong type, missing or unreadable files, a
    non-empty output folder) are printed as one line and exit with status 2, before any work when the options
    are at fault; anything else keeps its traceback.

    Args:
        argv: the arguments after ``python -m monai_ext``; None reads ``sys.argv``.
    """
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        if args and args[0] in COMMANDS:
            check_options(args[0], COMMANDS[args[0]], args[1:])
        fire.Fire(COMMANDS, command=args, serialize=lambda _: None)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()

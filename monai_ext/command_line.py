"""The ``python -m monai.bundle run`` process: its options, checked against the ids of the configs they override,
and, for distributed runs, its end.

MONAI adds every ``--name value`` of its command line to the config as id ``name``: a misspelled option
(``--num_sample 2`` for ``--num_samples``) becomes a new id that nothing reads, and the run goes on with the
default. MONAI does not tell which ids came from the command line, so :func:`check_command_line` reads them from
``sys.argv`` and refuses, naming the closest known id, any that no config of the run defines.

A process of a gloo (or NCCL) process group can abort at exit ("terminate called without an active exception",
SIGABRT): a worker thread of the process group frees a finished work object that holds a Python object, needs the
GIL for it while the interpreter is already shutting down, and is ended inside a destructor that may not throw.
Destroying the process group does not stop those threads, so :func:`end_without_interpreter_teardown` ends the
process with its own exit code once its outputs are recorded and its logs flushed, before the interpreter's
teardown can start.
"""

from __future__ import annotations

import atexit
import difflib
import inspect
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from fire.parser import DefaultParseValue
from monai.bundle import ConfigParser, ConfigWorkflow
from monai.bundle.scripts import create_workflow, run
from monai.bundle.utils import DEFAULT_EXP_MGMT_SETTINGS, ID_SEP_KEY

from monai_ext.data.output_folder import release_all

ID_SEPARATOR = "#"


def _run_arguments() -> set[str]:
    """The names ``monai.bundle run`` takes as its own arguments, not as config ids."""
    names = set()
    for function in (run, create_workflow, ConfigWorkflow.__init__):
        names |= {p.name for p in inspect.signature(function).parameters.values() if p.kind is p.POSITIONAL_OR_KEYWORD}
    return names - {"self", "override", "kwargs"}


def bundle_command_line(argv: Sequence[str] | None = None) -> dict[str, object] | None:
    """The options of a ``python -m monai.bundle run ...`` command line (fire's spelling: ``--name value``,
    ``--name=value``, ``--flag``; hyphens read as underscores), or None when ``argv`` is not one."""
    argv = list(sys.argv if argv is None else argv)
    if len(argv) < 2 or Path(argv[0]).parts[-3:] != ("monai", "bundle", "__main__.py") or argv[1] != "run":
        return None
    options: dict[str, object] = {}
    tokens = argv[2:]
    for index, token in enumerate(tokens):
        if not token.startswith("--") or token == "--":
            continue
        name, _, value = token[2:].partition("=")
        if not value:
            following = tokens[index + 1] if index + 1 < len(tokens) else None
            value = following if following is not None and not following.startswith("--") else "True"
        options[name.replace("-", "_")] = DefaultParseValue(value)
    return options


def _config_files(value: object) -> list[str]:
    if isinstance(value, str) and "," in value and not Path(value).is_file():
        return [part.strip() for part in value.split(",")]
    return [str(v) for v in value] if isinstance(value, list | tuple) else [str(value)]


def _ids(config: object, prefix: str = "") -> dict[str, object]:
    """Every id of a config (``a``, ``a#b``, ``a#0``...) with its value."""
    found: dict[str, object] = {}
    items = config.items() if isinstance(config, Mapping) else enumerate(config) if isinstance(config, list) else ()
    for key, value in items:
        name = f"{prefix}{ID_SEPARATOR}{key}" if prefix else str(key)
        found[name] = value
        found.update(_ids(value, name))
    return found


def unknown_options(options: Mapping[str, object], config: Mapping[str, object]) -> list[str]:
    """The options that set no id of ``config`` (a merged bundle config): each with the closest known id.

    An option of a nested id (``a#b``) is known when the id exists, or when its parent is a component
    (``_target_``): the component's own arguments then check it.
    """
    ids = _ids(config)
    tracking = options.get("tracking")
    allowed = _run_arguments() | (set(DEFAULT_EXP_MGMT_SETTINGS["mlflow"]["configs"]) if tracking else set())
    problems = []
    for option in options:
        name = option.replace(ID_SEP_KEY, ID_SEPARATOR)
        if name in ids or name in allowed:
            continue
        parent = name.rpartition(ID_SEPARATOR)[0]
        if parent and isinstance(ids.get(parent), Mapping) and "_target_" in ids[parent]:
            continue
        candidates = [i for i in ids if i.count(ID_SEPARATOR) == name.count(ID_SEPARATOR)] + sorted(allowed)
        close = difflib.get_close_matches(name, candidates, n=1, cutoff=0.6)
        problems.append(f"--{option}" + (f" (did you mean --{close[0]}?)" if close else ""))
    return problems


def check_command_line(argv: Sequence[str] | None = None) -> None:
    """Refuse options of a ``python -m monai.bundle run`` command line that no config of the run defines (called
    first in every bundle config's ``initialize``; nothing when the process is not such a command line, e.g. under
    MONAI Label or in a test).

    Raises:
        ValueError: an option names no config id; the message names each and the closest known id.
    """
    options = bundle_command_line(argv)
    if options is None:
        return
    if options.get("args_file"):
        options = {**ConfigParser.load_config_file(str(options["args_file"])), **options}
    files = _config_files(options.get("config_file", []))
    parser = ConfigParser()
    parser.read_config(files)
    if problems := unknown_options(options, parser.get()):
        raise ValueError(
            f"unknown option(s) {', '.join(problems)}: no config of {files} has such an id, so the run would ignore "
            "it. Check the spelling (config ids are listed in the bundle's configs and README)."
        )


_EXIT_CODE = [0]


def _leave() -> None:
    release_all()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_EXIT_CODE[0] & 0xFF)


def end_without_interpreter_teardown() -> None:
    """End this process, when it exits, with its own exit code and without the interpreter's teardown (for the ranks
    of a distributed run; see the module docstring): 1 after an uncaught exception (whose traceback is printed
    first), ``n`` after ``sys.exit(n)``, else 0. At exit, the claimed output folders are released (their files
    recorded) and the logs and standard streams flushed; ``atexit`` handlers registered before this call do not
    run. A ``raise SystemExit(n)`` outside ``sys.exit`` is not seen and ends with 0.

    Called by the ``multi_gpu_train.json`` configs right after the process group is created; calling it again does
    nothing more.
    """
    if getattr(sys.excepthook, "monai_ext_exit", False):
        return
    previous_hook, previous_exit = sys.excepthook, sys.exit

    def excepthook(kind: type[BaseException], error: BaseException, trace: object) -> None:
        _EXIT_CODE[0] = 1
        previous_hook(kind, error, trace)

    def exit_with(code: object = None) -> None:
        _EXIT_CODE[0] = code if isinstance(code, int) else 0 if code is None else 1
        previous_exit(code)

    excepthook.monai_ext_exit = True  # type: ignore[attr-defined]
    sys.excepthook, sys.exit = excepthook, exit_with
    atexit.register(_leave)

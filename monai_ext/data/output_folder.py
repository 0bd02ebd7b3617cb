"""Output folders a run owns: claimed before anything is written, every file the run writes recorded, and only
recorded files ever replaced.

A run claims its output folder (:func:`prepare_output_dir`, :func:`prepare_training_dir`, or
:func:`claim_output_dir` as a context manager) before it writes anything. The claim

- refuses a folder that is, or holds, one of the run's inputs (a dataset folder, a file its datalist names, a
  checkpoint), whatever ``overwrite`` says, before anything is touched;
- takes an exclusive lock on the folder's manifest ``.monai_ext_outputs.jsonl`` (``fcntl.flock``), so a second run
  started on the same folder is refused while the first one writes (the lock goes with the process, also when it
  is killed);
- accepts an empty folder; with ``overwrite`` it removes the files that earlier monai-ext runs recorded there and
  nothing else: a folder that also holds files no run recorded (the user's) is refused, naming them, and so is a
  folder holding a training run, to any run but training;
- records, in the manifest, every file found in the folder when the run ends (normally or with an error; also
  each time :func:`record_outputs` is called, e.g. by the training checkpointer after every checkpoint). Files
  that appear in the folder while a run holds its lock are taken as that run's.

A training folder is kept as it is when claimed again without ``overwrite``, so training resumes from its
checkpoints. A run killed before it could record its last files leaves them unrecorded: a later ``overwrite``
names them and leaves it to the user to remove them.
"""

from __future__ import annotations

import atexit
import fcntl
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

import torch.distributed as dist

from monai_ext import __version__
from monai_ext.flags import as_flag

MANIFEST = ".monai_ext_outputs.jsonl"
LEGACY_TRAINING_MARKER = ".monai_ext_run.json"  # monai-ext <= 0.1 marked training folders with this file only
# what a training run of monai-ext <= 0.1 wrote: adopted as recorded in a folder holding the old marker
LEGACY_TRAINING_OUTPUTS = re.compile(
    r"checkpoint_epoch=\d+\.pt|model\.pt|model_selection\.json|events\.out\.tfevents\.[^/]+|\.monai_ext_run\.json"
)
KINDS = ("outputs", "training")
EXECUTED_CONFIG = re.compile(r"config_\d{8}_\d{6}\.json")  # the name MONAI's --tracking gives the executed config
SHOWN = 5


def on_rank_zero(prepare: Callable[..., object], *args: object) -> None:
    """Run ``prepare(*args)`` on rank 0 only when ``torch.distributed`` is initialized, else just run it.

    The other ranks wait until rank 0 is done (a broadcast of its outcome, which every rank must join, so it also
    serves as the barrier) and raise rank 0's error when it failed, so no rank starts on a folder that is not ready
    and none hangs waiting for one that gave up.
    """
    if not (dist.is_available() and dist.is_initialized()):
        prepare(*args)
        return
    outcome: list[Exception | None] = [None]
    if dist.get_rank() == 0:
        try:
            prepare(*args)
        except BaseException as error:  # handed to every rank below (an interrupt too, so none waits for ever)
            outcome[0] = error
    dist.broadcast_object_list(outcome, src=0)
    if outcome[0] is not None:
        raise outcome[0]


def _shown(paths: Sequence[str]) -> str:
    names = sorted(paths)
    return ", ".join(names[:SHOWN]) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _named_files(folder: Path) -> list[Path]:
    """The JSON files directly in a dataset folder (its datalists) and every existing file or folder they name
    (relative paths against the folder, as MONAI datalists are read)."""
    named = []

    def collect(value: object) -> None:
        if isinstance(value, str) and value and (folder / value).exists():
            named.append(folder / value)
        elif isinstance(value, list | tuple):
            for entry in value:
                collect(entry)
        elif isinstance(value, dict):
            for entry in value.values():
                collect(entry)

    for datalist in sorted(folder.glob("*.json")):
        named.append(datalist)
        try:
            collect(json.loads(datalist.read_text()))
        except (OSError, ValueError):
            continue  # not a readable JSON file: no datalist, nothing it could name
    return named


def input_paths(inputs: Sequence[str | Path | None]) -> list[Path]:
    """The paths a run reads: each of ``inputs`` (a dataset folder, a checkpoint, ...; None is skipped) and, for a
    folder, its datalists (``*.json``) and every file they name."""
    paths = []
    for entry in inputs:
        if entry is None or str(entry) == "":
            continue
        path = Path(entry)
        paths.append(path)
        if path.is_dir():
            paths += _named_files(path)
    return paths


def check_separate_from_inputs(out: Path, inputs: Sequence[Path]) -> None:
    """Refuse an output folder that is one of the run's inputs or holds one (writing or replacing files there could
    destroy them, and outputs beside the inputs would be read as inputs by the next run).

    Raises:
        ValueError: ``out`` is, or contains, one of ``inputs``; the message names both.
    """
    target = out.resolve()
    for path in inputs:
        resolved = path.resolve()
        if resolved == target or target in resolved.parents:
            what = "is" if resolved == target else "contains"
            raise ValueError(
                f"output folder '{out}' {what} the input '{path}': outputs must go to a folder that holds none of "
                f"the run's inputs (dataset_dir, the files of its datalist, checkpoints); choose another output_dir."
            )


class OutputFolder:
    """A claimed output folder: the lock on its manifest, and the files recorded there.

    Use :func:`claim_output_dir` (or the bundle helpers :func:`prepare_output_dir` / :func:`prepare_training_dir`)
    rather than this class directly.

    Args:
        folder: the output folder (created if needed).
        kind: ``"outputs"`` (results of an inference, evaluation or data generation) or ``"training"`` (a training
            run's folder, resumed when claimed again without ``overwrite``).

    Raises:
        ValueError: ``kind`` is not one of ``KINDS``.
        NotADirectoryError: ``folder`` exists and is not a folder.
    """

    def __init__(self, folder: str | Path, kind: str = "outputs") -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise NotADirectoryError(f"output '{self.folder}' exists and is not a folder.")
        self.kind = kind
        self.manifest = self.folder / MANIFEST
        self.recorded: set[str] = set()
        self.unrecorded: set[str] = set()  # files found when a training run resumed that no run recorded
        self.handle = None
        self.created_manifest = False

    # -- the lock ------------------------------------------------------------------------------------------------

    def lock(self) -> None:
        """Create the folder and take the exclusive lock on its manifest.

        Raises:
            FileExistsError: another process holds the folder; the message names it from its manifest.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            created = not self.manifest.exists()
            handle = open(self.manifest, "a+")  # noqa: SIM115 - held open until release: the lock lives with it
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                runs = [entry["run"] for entry in self._entries() if "run" in entry]
                holder = runs[-1] if runs else {}
                raise FileExistsError(
                    f"output folder '{self.folder}' is being written by another run (pid {holder.get('pid', '?')} "
                    f"on {holder.get('host', '?')}, started {holder.get('started', '?')}); wait for it to end or "
                    "choose another output folder."
                ) from None
            if self.manifest.exists() and os.path.samestat(os.fstat(handle.fileno()), self.manifest.stat()):
                break
            handle.close()  # a refused claim removed the manifest between our open and our lock: take the new one
        self.handle = handle
        self.created_manifest = created

    def release(self) -> None:
        """Record the folder's files, note the end of the run and give up the lock (nothing when not held)."""
        if self.handle is None:
            return
        try:
            if self.folder.is_dir():
                self.record()
                self._append({"end": time.strftime("%Y-%m-%dT%H:%M:%S")})
        finally:
            self.handle.close()
            self.handle = None
            _CLAIMS.pop(self.folder.resolve(), None)

    # -- the manifest ----------------------------------------------------------------------------------------------

    def _entries(self) -> list[dict]:
        try:
            lines = self.manifest.read_text().splitlines()
        except OSError:
            return []
        entries = []
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:
                continue  # a line cut short when a run was killed while writing it
            if isinstance(entry, dict):
                entries.append(entry)
        return entries

    def _append(self, entry: dict) -> None:
        with open(self.manifest, "a") as manifest:
            manifest.write(json.dumps(entry) + "\n")

    def _read(self) -> tuple[set[str], list[str]]:
        """The files recorded so far (relative paths inside the folder) and the kinds of the runs that wrote them."""
        entries = self._entries()
        recorded = {e["file"] for e in entries if isinstance(e.get("file"), str) and _inside(e["file"])}
        kinds = [e["run"].get("kind") for e in entries if isinstance(e.get("run"), dict)]
        if not entries and (self.folder / LEGACY_TRAINING_MARKER).is_file():  # a training folder of monai-ext <= 0.1
            recorded = {name for name in self.present() if LEGACY_TRAINING_OUTPUTS.fullmatch(name)}
            kinds = ["training"]
            self._append({"run": {"kind": "training", "adopted": LEGACY_TRAINING_MARKER}})
            for name in sorted(recorded):
                self._append({"file": name})
        return recorded, kinds

    def present(self) -> list[str]:
        """Every file (or symbolic link) in the folder, relative to it, except the manifest; links are not followed."""
        found = []
        for root, folders, files in os.walk(self.folder):
            links = [name for name in folders if (Path(root) / name).is_symlink()]  # listed, never entered
            for name in files + links:
                relative = (Path(root) / name).relative_to(self.folder).as_posix()
                if relative != MANIFEST:
                    found.append(relative)
        return found

    def record(self, paths: Sequence[str | Path] = ()) -> None:
        """Record ``paths`` (files in the folder), or, when none are given, every file that appeared in the folder
        since the claim."""
        if self.handle is None:
            return
        names = [Path(p).resolve().relative_to(self.folder.resolve()).as_posix() for p in paths]
        for name in names or sorted(set(self.present()) - self.unrecorded):
            if name not in self.recorded:
                self._append({"file": name})
                self.recorded.add(name)

    # -- the claim -------------------------------------------------------------------------------------------------

    def claim(self, overwrite: bool = False, adopt: Sequence[str] = ()) -> None:
        """Lock the folder and make it ready for this run (see the module docstring).

        Args:
            overwrite: remove the files earlier runs recorded.
            adopt: names of files already in the folder that belong to this run (MONAI's executed config).

        Raises:
            FileExistsError: the folder holds files and ``overwrite`` is off (a training folder is resumed instead),
                or it holds files no monai-ext run recorded, or another run holds it.
        """
        self.lock()
        try:
            self._prepare(overwrite, set(adopt))
        except BaseException:
            self.handle.close()
            self.handle = None
            if self.created_manifest:
                self.manifest.unlink(missing_ok=True)
            raise
        started = time.strftime("%Y-%m-%dT%H:%M:%S")
        run = {"kind": self.kind, "version": __version__, "pid": os.getpid(), "host": socket.gethostname()}
        self._append({"run": {**run, "started": started}})
        self.record([self.folder / name for name in sorted(adopt)])
        _CLAIMS[self.folder.resolve()] = self

    def _prepare(self, overwrite: bool, adopt: set[str]) -> None:
        recorded, kinds = self._read()
        present = set(self.present()) - adopt
        if not present:
            return
        training = bool(kinds) and kinds[-1] == "training"
        if self.kind == "training" and training and not overwrite:
            self.recorded, self.unrecorded = recorded & present, present - recorded
            return
        if self.kind != "training" and training:
            raise FileExistsError(
                f"output folder '{self.folder}' holds a training run ({_shown(present)}); inference, evaluation and "
                "data go to another folder, so that its weights and checkpoints are never replaced by them."
            )
        foreign = sorted(present - recorded - {LEGACY_TRAINING_MARKER})
        if foreign:
            raise FileExistsError(
                f"output folder '{self.folder}' holds {_shown(foreign)}, which no monai-ext run recorded writing "
                "there (files of yours, or of a run killed before it could record them); nothing was removed. "
                "Choose another output folder, or remove those files yourself."
            )
        if not overwrite:
            raise FileExistsError(
                f"output folder '{self.folder}' holds the outputs of an earlier run ({_shown(present)}); pass "
                "--overwrite true to replace them, or choose another output folder."
            )
        self._remove(present)

    def _remove(self, names: set[str]) -> None:
        """Remove the recorded files ``names`` (links are removed, never followed), then the folders they emptied."""
        parents = set()
        for name in names:
            path = self.folder / name
            path.unlink(missing_ok=True)
            parents.update(p for p in path.parents if self.folder.resolve() in p.resolve().parents)
        for parent in sorted(parents, key=lambda p: len(p.parts), reverse=True):
            if parent.is_dir() and not any(parent.iterdir()):
                parent.rmdir()
        (self.folder / LEGACY_TRAINING_MARKER).unlink(missing_ok=True)
        self.manifest.write_text("")


def _inside(name: str) -> bool:
    """Whether a recorded name is a relative path that stays inside its folder (a manifest may have been edited)."""
    path = Path(name)
    return not path.is_absolute() and ".." not in path.parts


_CLAIMS: dict[Path, OutputFolder] = {}


def _forget_claims() -> None:
    """In a forked child (a DataLoader worker, a process pool): close the inherited manifest handles, so that the
    lock ends when the claiming process releases it, and leave the folders to that process."""
    for claimed in _CLAIMS.values():
        if claimed.handle is not None:
            claimed.handle.close()
            claimed.handle = None
    _CLAIMS.clear()


os.register_at_fork(after_in_child=_forget_claims)


def release_all() -> None:
    """Release every folder this process claimed (at its exit: recorded here by ``atexit``)."""
    for claim in list(_CLAIMS.values()):
        with suppress(OSError):  # the folder was removed or became unwritable meanwhile: nothing left to record
            claim.release()


atexit.register(release_all)


def claim(
    out: str | Path,
    overwrite: bool | str = False,
    inputs: Sequence[str | Path | None] = (),
    kind: str = "outputs",
    executed_config: object = None,
) -> OutputFolder:
    """Claim ``out`` for this process until it ends (or until :meth:`OutputFolder.release`); see the module docstring.

    Args:
        out: the output folder.
        overwrite: replace the files earlier runs recorded (also ``"true"`` / ``"false"`` from a command line).
        inputs: what the run reads (dataset folders, checkpoints); ``out`` must neither be nor contain any of them.
        kind: ``"outputs"`` or ``"training"`` (see :class:`OutputFolder`).
        executed_config: MONAI's config id ``save_execute_config``: with ``--tracking`` MONAI writes the executed
            config into the output folder before the run starts; that file is taken as this run's.

    Raises:
        ValueError: ``out`` is or holds an input.
        FileExistsError: see :meth:`OutputFolder.claim`.
    """
    out = Path(out)
    check_separate_from_inputs(out, input_paths(inputs))
    earlier = _CLAIMS.get(out.resolve())
    if earlier is not None:  # an earlier run of this process (e.g. a test, or train then evaluate) ends here
        earlier.release()
    folder = OutputFolder(out, kind)
    adopt = []
    match = EXECUTED_CONFIG.search(str(executed_config)) if isinstance(executed_config, str) else None
    if match and (out / match.group(0)).is_file():
        adopt.append(match.group(0))
    folder.claim(as_flag(overwrite, "overwrite"), adopt)
    return folder


@contextmanager
def claim_output_dir(out: str | Path, overwrite: bool | str = False, **options: object) -> Iterator[Path]:
    """Claim ``out`` for the ``with`` block and release it at its end, recording what the block wrote there.

    ``options`` are those of :func:`claim`.
    """
    folder = claim(out, overwrite, **options)
    try:
        yield folder.folder
    finally:
        folder.release()


def prepare_output_dir(
    out: str | Path,
    overwrite: bool | str = False,
    inputs: Sequence[str | Path | None] = (),
    executed_config: object = None,
) -> Path:
    """Claim ``out`` for an inference or evaluation run (a bundle's ``initialize``); see :func:`claim`.

    Under ``torch.distributed`` only rank 0 touches the file system; every rank returns when the folder is ready.
    """
    on_rank_zero(claim, out, overwrite, inputs, "outputs", executed_config)
    return Path(out)


def prepare_training_dir(
    out: str | Path,
    overwrite: bool | str = False,
    inputs: Sequence[str | Path | None] = (),
    executed_config: object = None,
) -> Path:
    """Claim ``out`` for a training run (a bundle's ``initialize``): a training folder claimed again without
    ``overwrite`` is kept, so training resumes from its checkpoints; see :func:`claim`.

    Under ``torch.distributed`` only rank 0 touches the file system; every rank returns when the folder is ready.
    """
    on_rank_zero(claim, out, overwrite, inputs, "training", executed_config)
    return Path(out)


def record_outputs(path: str | Path) -> None:
    """Record the files now in the claimed folder that holds ``path`` (nothing when this process claimed none)."""
    resolved = Path(path).resolve()
    for folder, claimed in list(_CLAIMS.items()):
        if resolved == folder or folder in resolved.parents:
            claimed.record()


def remove_recorded(path: str | Path) -> bool:
    """Remove ``path`` when a run recorded it in a folder this process has claimed; return whether it was removed.

    A file no run recorded (or in a folder this process has not claimed) is left alone.
    """
    resolved = Path(path).resolve()
    for folder, claimed in list(_CLAIMS.items()):
        if folder in resolved.parents and resolved.relative_to(folder).as_posix() in claimed.recorded:
            resolved.unlink(missing_ok=True)
            return True
    return False

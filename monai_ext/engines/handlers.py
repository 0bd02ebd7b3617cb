"""Ignite handlers for monai-ext engines: resuming training, selecting models without labels, the base of the
writers that write one file at the end of a run."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader, CheckpointSaver, IgniteMetricHandler, MeanAbsoluteError, from_engine
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from monai_ext.data.output_folder import record_outputs, remove_recorded
from monai_ext.flags import as_flag
from monai_ext.metrics import MeanMaxProbabilityMetric
from monai_ext.provenance import refuse_existing
from monai_ext.weights import save_weights

CHECKPOINT_NAME = re.compile(r"checkpoint_epoch=(\d+)\.pt")

logger = logging.getLogger(__name__)


def epoch_checkpoints(folder: str | Path) -> list[Path]:
    """The ``checkpoint_epoch=N.pt`` files that ``SaveForResume`` (MONAI's ``CheckpointSaver``) wrote in ``folder``,
    newest epoch first.

    The order comes from the epoch number in the name, not from file times (copying or touching an old file must
    not make training resume from it). Other ``checkpoint*.pt`` files carry no epoch and are ignored.
    """
    numbered = []
    for path in Path(folder).glob("checkpoint*.pt"):
        match = CHECKPOINT_NAME.fullmatch(path.name)
        if match is None:
            logger.debug(f"ignoring '{path}': its name carries no epoch number (checkpoint_epoch=N.pt).")
        else:
            numbered.append((int(match.group(1)), path))
    return [path for _, path in sorted(numbered, reverse=True)]


def latest_checkpoint(folder: str | Path) -> str | None:
    """The ``checkpoint_epoch=N.pt`` in ``folder`` with the highest epoch N, or None when there is none."""
    checkpoints = epoch_checkpoints(folder)
    return str(checkpoints[0]) if checkpoints else None


class _NamedCheckpointLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader`` whose errors (keys or shapes that do not match, too many epochs) name the file."""

    def __call__(self, engine: Engine) -> None:
        try:
            super().__call__(engine)
        except Exception as error:
            raise RuntimeError(f"could not resume training from checkpoint '{self.load_path}': {error}") from error


class ResumeFromLatest:
    """Resume an interrupted run from the newest readable ``checkpoint_epoch=N.pt`` in a folder; do nothing when
    there is none.

    MONAI's ``CheckpointLoader`` needs the engine in ``load_dict`` to restore the epoch and iteration, but a
    bundle config cannot name the trainer inside the trainer's own handler list (a circular reference); this
    handler adds the engine it is attached to under ``"trainer"``.

    Checkpoints are tried newest epoch first, each read as ``CheckpointLoader`` reads it
    (``torch.load(..., weights_only=True)``); one that cannot be read (e.g. cut short when the run was killed
    while writing it) is skipped with a warning and the previous epoch's is used.

    Args:
        checkpoint_dir: folder written by ``CheckpointSaver`` with ``"trainer"`` in its ``save_dict``.
        load_dict: the other objects to restore, e.g. ``{"model": network, "optimizer": optimizer}``.
        map_location: passed to ``torch.load`` (e.g. the training device).

    Raises:
        RuntimeError: on ``attach``, when the folder has checkpoints and none of them can be read (training does
            not silently start again from scratch); on the engine's start, when the chosen checkpoint does not
            fit ``load_dict``.
    """

    def __init__(
        self, checkpoint_dir: str | Path, load_dict: dict, map_location: str | torch.device | None = None
    ) -> None:
        if not load_dict:
            raise ValueError("load_dict must name at least one object to restore.")
        self.checkpoint_dir = Path(checkpoint_dir)
        self.load_dict = dict(load_dict)
        self.map_location = map_location

    def attach(self, engine: Engine) -> None:
        checkpoints = epoch_checkpoints(self.checkpoint_dir)
        if not checkpoints:
            logger.info(f"no checkpoint in '{self.checkpoint_dir}': training starts from scratch.")
            return
        path = self.newest_readable(checkpoints)
        logger.info(f"resuming from '{path}'.")
        load_dict = {**self.load_dict, "trainer": engine}
        _NamedCheckpointLoader(load_path=str(path), load_dict=load_dict, map_location=self.map_location).attach(engine)

    def newest_readable(self, checkpoints: Sequence[Path]) -> Path:
        """The first of ``checkpoints`` that ``torch.load`` can read (as ``CheckpointLoader`` will read it).

        Raises:
            RuntimeError: none can be read; the message names every file and its error.
        """
        failures = []
        for path in checkpoints:
            try:
                torch.load(path, map_location=self.map_location, weights_only=True)
                return path
            except Exception as error:  # torch.load raises several types for damaged files
                logger.warning(f"skipping checkpoint '{path}': it cannot be read ({error}).")
                failures.append(f"'{path}' ({error})")
        raise RuntimeError(
            f"no checkpoint in '{self.checkpoint_dir}' can be read, so training cannot resume: {'; '.join(failures)}."
            " Remove them (or pass --overwrite true) to train from scratch, or choose another output_dir."
        )


class SaveForResume:
    """Save model, optimizer and the engine's own state every ``save_interval`` epochs, for ``ResumeFromLatest``.

    A thin wrapper on MONAI's ``CheckpointSaver`` that adds the engine it is attached to under ``"trainer"``
    (which a bundle config cannot reference from inside the trainer's handler list). Keeps the newest
    ``n_saved`` files named ``checkpoint_epoch=N.pt``, also across resumed runs: after each save, the older
    checkpoints that a run recorded in the claimed output folder (``monai_ext.data.output_folder``) are removed,
    and the folder's new files are recorded.

    Args:
        save_dir: folder of the checkpoints.
        save_dict: the objects to save besides the engine, e.g. ``{"model": network, "optimizer": optimizer}``.
        save_interval: epochs between checkpoints, >= 1.
        n_saved: checkpoints kept, >= 1.
    """

    def __init__(self, save_dir: str | Path, save_dict: dict, save_interval: int = 1, n_saved: int = 1) -> None:
        if not save_dict:
            raise ValueError("save_dict must name at least one object to save.")
        if save_interval < 1 or n_saved < 1:
            raise ValueError(f"save_interval and n_saved must be >= 1, got {save_interval} and {n_saved}.")
        self.save_dir = str(save_dir)
        self.save_dict = dict(save_dict)
        self.save_interval = save_interval
        self.n_saved = n_saved

    def attach(self, engine: Engine) -> None:
        CheckpointSaver(
            save_dir=self.save_dir,
            save_dict={**self.save_dict, "trainer": engine},
            save_interval=self.save_interval,
            n_saved=self.n_saved,
            epoch_level=True,
        ).attach(engine)
        engine.add_event_handler(Events.EPOCH_COMPLETED(every=self.save_interval), self.after_save)

    def after_save(self, engine: Engine) -> None:
        """Record the folder's new files, then remove the recorded checkpoints older than the newest ``n_saved``."""
        record_outputs(self.save_dir)
        for old in epoch_checkpoints(self.save_dir)[self.n_saved :]:
            remove_recorded(old)


class MeanMaxProbability(IgniteMetricHandler):
    """Ignite handler of ``MeanMaxProbabilityMetric``, the label-free model-selection score.

    Args:
        output_transform: maps the engine output to ``(y_pred, y)``; ``y`` is ignored.
        save_details: keep the per-volume values in ``engine.state.metric_details`` (also ``"true"`` /
            ``"false"`` from a command line).
    """

    def __init__(self, output_transform: Callable = lambda x: x, save_details: bool | str = True) -> None:
        super().__init__(
            metric_fn=MeanMaxProbabilityMetric(),
            output_transform=output_transform,
            save_details=as_flag(save_details, "save_details"),
        )


def denoising_metrics(timesteps: Sequence[int]) -> dict[str, MeanAbsoluteError]:
    """One metric handler per noise timestep t, ``val_denoising_l1_t{t}``: the mean absolute error between the
    diffusion model's denoising of the image noised to t (key ``pred_t{t}``) and the image (key ``label``), the
    held-out denoising L1 of Tursynbek & Niethammer (MICCAI 2023, sec. 4.2) per timestep."""
    return {
        f"val_denoising_l1_t{t}": MeanAbsoluteError(output_transform=from_engine([f"pred_t{t}", "label"]))
        for t in timesteps
    }


def write_metrics(evaluator: Engine, path: str | Path, overwrite: bool | str = False, **context: Any) -> dict:
    """Write a finished evaluator's metrics with ``context`` (e.g. the checkpoint and the split) to the JSON file
    ``path`` and print it; return what was written."""
    report = {**context, "metrics": dict(evaluator.state.metrics)}
    text = json.dumps(report, indent=4, default=str)
    refuse_existing(path, overwrite).write_text(text + "\n")
    print(text)
    return report


class BestPerLevel:
    """Keep each hierarchy level's weights from the validation round where its selection metric was best.

    The levels of a ``HierarchicalSegmenter`` are independent networks, so each is selected on its own
    (Tursynbek & Niethammer, MICCAI 2023, sec. 4.2: the epoch with the best mean probability); any other
    network is a single level, selected on one metric (e.g. the diffusion model on its validation L1). After every
    validation round that improves some level, the assembled state dict is written to ``save_path`` (a plain
    state dict, loadable with ``weights_only=True``, written atomically), the ``settings`` needed to use it beside it
    (``monai_ext.weights.save_weights``: ``model.json`` for ``model.pt``) and the chosen epochs to
    ``model_selection.json``.
    When the run resumes (a ``checkpoint_epoch=N.pt`` lies beside ``save_path``, see ``latest_checkpoint``), the
    earlier selection is read back from these two files, so a resumed run keeps a level's best weights unless a
    later epoch beats them.

    Args:
        network: the network being trained: a ``HierarchicalSegmenter`` (one level per entry of ``levels``) or
            any other module (one level), possibly wrapped in ``DistributedDataParallel``.
        metric_names: one evaluator metric per level (e.g. ``mean_max_prob_l1``...).
        save_path: file of the selected weights.
        higher_is_better: direction of the metrics (also ``"true"`` / ``"false"`` from a command line).
        settings: config ids and values that a config loading the weights must repeat (e.g. ``prediction_type``),
            checked by ``monai_ext.weights.load_weights``; None writes no settings file.
        first_epoch: the first epoch whose weights may be selected, >= 1 (e.g. the first after a warm start, whose
            epochs optimise another objective).
    """

    def __init__(
        self,
        network: nn.Module,
        metric_names: Sequence[str],
        save_path: str | Path,
        higher_is_better: bool | str = True,
        settings: Mapping[str, Any] | None = None,
        first_epoch: int = 1,
    ) -> None:
        if isinstance(network, DistributedDataParallel):  # multi-GPU training: select the wrapped network's weights
            network = network.module
        self.levels = list(network.levels) if hasattr(network, "levels") else [network]
        if len(metric_names) != len(self.levels):
            raise ValueError(f"need one metric per level ({len(self.levels)}), got {list(metric_names)}.")
        self.network = network
        self.metric_names = list(metric_names)
        self.save_path = Path(save_path)
        self.sign = 1.0 if as_flag(higher_is_better, "higher_is_better") else -1.0
        self.settings = None if settings is None else dict(settings)
        if isinstance(first_epoch, bool) or not isinstance(first_epoch, int) or first_epoch < 1:
            raise ValueError(f"first_epoch must be an int >= 1, got {first_epoch!r}.")
        self.first_epoch = first_epoch
        self.best: list[float | None] = [None] * len(metric_names)
        self.epochs: list[int | None] = [None] * len(metric_names)
        self.states: list[dict | None] = [None] * len(metric_names)

    def prefix(self, level: int) -> str:
        """Where a level's parameters sit in the network's state dict."""
        return f"levels.{level}." if hasattr(self.network, "levels") else ""

    @property
    def record_path(self) -> Path:
        return self.save_path.parent / "model_selection.json"

    def attach(self, engine: Engine) -> None:
        if latest_checkpoint(self.save_path.parent) is not None:
            self.restore()
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def restore(self) -> None:
        """Read back the selection of an interrupted run (nothing when its files are missing or for other levels)."""
        if not (self.record_path.is_file() and self.save_path.is_file()):
            return
        record = json.loads(self.record_path.read_text())
        if record.get("metrics") != self.metric_names:
            return
        try:
            state = torch.load(self.save_path, map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises several types for truncated or corrupt files
            raise RuntimeError(
                f"cannot resume the model selection: '{self.save_path}' cannot be read ({error}). Remove it and "
                f"'{self.record_path.name}' to select again from the resumed epochs, or pass --overwrite true."
            ) from error
        for level, (best, epoch) in enumerate(zip(record["best"], record["epochs"], strict=True)):
            if best is None:
                continue
            prefix = self.prefix(level)
            self.best[level], self.epochs[level] = best, epoch
            self.states[level] = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

    def __call__(self, engine: Engine) -> None:
        if engine.state.epoch < self.first_epoch:
            return
        improved = False
        for level, name in enumerate(self.metric_names):
            if name not in engine.state.metrics:
                raise KeyError(f"the evaluator computes no metric '{name}'; it has {sorted(engine.state.metrics)}.")
            value = float(engine.state.metrics[name])
            if self.best[level] is None or self.sign * value > self.sign * self.best[level]:
                self.best[level], self.epochs[level] = value, int(engine.state.epoch)
                self.states[level] = {k: v.detach().cpu().clone() for k, v in self.levels[level].state_dict().items()}
                improved = True
        if improved:
            self.save()

    def save(self) -> None:
        state = {k: v.detach().cpu() for k, v in self.network.state_dict().items()}
        for level, level_state in enumerate(self.states):
            for key, value in (level_state or {}).items():
                state[f"{self.prefix(level)}{key}"] = value
        save_weights(state, self.save_path, self.settings)
        record = {"metrics": self.metric_names, "best": self.best, "epochs": self.epochs}
        self.record_path.write_text(json.dumps(record, indent=2) + "\n")
        record_outputs(self.save_path.parent)


class EndOfRunWriter:
    """Base of the handlers that collect every item of a run and write one file at its end.

    ``attach`` refuses an existing non-empty ``self.path`` unless ``self.overwrite``
    (``monai_ext.provenance.refuse_existing``), then calls ``reset`` when the run starts, the handler itself after
    every iteration and ``write`` when the run completes, so an evaluator run every few epochs rewrites the file.
    Subclasses set their own attributes, end their constructor with this one, and define ``reset``,
    ``__call__(engine)`` and ``write``.

    Args:
        path: the file written at the end of a run.
        output_transform: maps ``engine.state.output`` to the decollated items.
        overwrite: replace an existing non-empty ``path`` (also ``"true"`` / ``"false"`` from a command line).
    """

    def __init__(
        self, path: str | Path, output_transform: Callable[[Any], Any] = lambda x: x, overwrite: bool | str = False
    ) -> None:
        self.path = Path(path)
        self.output_transform = output_transform
        self.overwrite = as_flag(overwrite, "overwrite")
        self.logger = logging.getLogger(type(self).__module__)
        self.reset()

    def reset(self) -> None:
        raise NotImplementedError(f"{type(self).__name__} must define reset.")

    def attach(self, engine: Engine) -> None:
        """Register on STARTED, ITERATION_COMPLETED and COMPLETED; refuse to overwrite an existing file."""
        refuse_existing(self.path, self.overwrite)
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)
        engine.add_event_handler(Events.COMPLETED, self.write)

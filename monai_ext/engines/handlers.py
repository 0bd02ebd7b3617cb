"""Ignite handlers for monai-ext engines: resuming training, selecting models without labels."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from ignite.engine import Engine, Events
from monai.handlers import CheckpointLoader, CheckpointSaver, IgniteMetricHandler
from torch import nn

from monai_ext.metrics import MeanMaxProbabilityMetric


def latest_checkpoint(folder: str | Path) -> str | None:
    """The most recently written ``checkpoint*.pt`` in ``folder``, or None."""
    candidates = sorted(Path(folder).glob("checkpoint*.pt"), key=lambda path: path.stat().st_mtime)
    return str(candidates[-1]) if candidates else None


class ResumeFromLatest:
    """Resume an interrupted run from the newest ``checkpoint*.pt`` in a folder; do nothing when there is none.

    MONAI's ``CheckpointLoader`` needs the engine in ``load_dict`` to restore the epoch and iteration, but a
    bundle config cannot name the trainer inside the trainer's own handler list (a circular reference); this
    handler adds the engine it is attached to under ``"trainer"``.

    Args:
        checkpoint_dir: folder written by ``CheckpointSaver`` with ``"trainer"`` in its ``save_dict``.
        load_dict: the other objects to restore, e.g. ``{"model": network, "optimizer": optimizer}``.
        map_location: passed to ``torch.load`` (e.g. the training device).
    """

    def __init__(
        self, checkpoint_dir: str | Path, load_dict: dict, map_location: str | torch.device | None = None
    ) -> None:
        if not load_dict:
            raise ValueError("load_dict must name at least one object to restore.")
        self.checkpoint_dir = Path(checkpoint_dir)
        self.load_dict = dict(load_dict)
        self.map_location = map_location
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        path = latest_checkpoint(self.checkpoint_dir)
        if path is None:
            self.logger.info(f"no checkpoint in '{self.checkpoint_dir}': training starts from scratch.")
            return
        self.logger.info(f"resuming from '{path}'.")
        loader = CheckpointLoader(
            load_path=path, load_dict={**self.load_dict, "trainer": engine}, map_location=self.map_location
        )
        loader.attach(engine)


class SaveForResume:
    """Save model, optimizer and the engine's own state every ``save_interval`` epochs, for ``ResumeFromLatest``.

    A thin wrapper on MONAI's ``CheckpointSaver`` that adds the engine it is attached to under ``"trainer"``
    (which a bundle config cannot reference from inside the trainer's handler list). Keeps the newest
    ``n_saved`` files named ``checkpoint_epoch=N.pt``.

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


class MeanMaxProbability(IgniteMetricHandler):
    """Ignite handler of ``MeanMaxProbabilityMetric``, the label-free model-selection score.

    Args:
        output_transform: maps the engine output to ``(y_pred, y)``; ``y`` is ignored.
        save_details: keep the per-volume values in ``engine.state.metric_details``.
    """

    def __init__(self, output_transform: Callable = lambda x: x, save_details: bool = True) -> None:
        super().__init__(
            metric_fn=MeanMaxProbabilityMetric(), output_transform=output_transform, save_details=save_details
        )


class BestPerLevel:
    """Keep each hierarchy level's weights from the validation round where its selection metric was best.

    The levels of a ``HierarchicalSegmenter`` are independent networks, so each is selected on its own
    (Tursynbek & Niethammer, MICCAI 2023, sec. 4.2: the epoch with the best mean probability); any other
    network is a single level, selected on one metric (e.g. the diffusion model on its validation L1). After every
    validation round that improves some level, the assembled state dict is written to ``save_path`` (a plain
    state dict, loadable with ``weights_only=True``) and the chosen epochs to ``model_selection.json`` beside it.
    When the run resumes (a ``checkpoint*.pt`` lies beside ``save_path``), the earlier selection is read back
    from these two files, so a resumed run keeps a level's best weights unless a later epoch beats them.

    Args:
        network: the network being trained: a ``HierarchicalSegmenter`` (one level per entry of ``levels``) or
            any other module (one level).
        metric_names: one evaluator metric per level (e.g. ``mean_max_prob_l1``...).
        save_path: file of the selected weights.
        higher_is_better: direction of the metrics.
    """

    def __init__(
        self, network: nn.Module, metric_names: Sequence[str], save_path: str | Path, higher_is_better: bool = True
    ) -> None:
        self.levels = list(network.levels) if hasattr(network, "levels") else [network]
        if len(metric_names) != len(self.levels):
            raise ValueError(f"need one metric per level ({len(self.levels)}), got {list(metric_names)}.")
        self.network = network
        self.metric_names = list(metric_names)
        self.save_path = Path(save_path)
        self.sign = 1.0 if higher_is_better else -1.0
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
        state = torch.load(self.save_path, map_location="cpu", weights_only=True)
        for level, (best, epoch) in enumerate(zip(record["best"], record["epochs"], strict=True)):
            if best is None:
                continue
            prefix = self.prefix(level)
            self.best[level], self.epochs[level] = best, epoch
            self.states[level] = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}

    def __call__(self, engine: Engine) -> None:
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
        self.save_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(state, self.save_path)
        record = {"metrics": self.metric_names, "best": self.best, "epochs": self.epochs}
        self.record_path.write_text(json.dumps(record, indent=2) + "\n")

"""Label-free model selection on the training objective itself (structure discovery, not in the paper)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from ignite.engine import Engine, Events
from monai.utils import CommonKeys
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from monai_ext.engines.discovery import level_stages, volume_keys
from monai_ext.losses import DiscoveryLoss
from monai_ext.networks import DiffusionDenoiser, DiffusionFeatureExtractor, HierarchicalSegmenter, UpsampledFeatures

# selection metric (config id ``selection_metric``): whether a higher value is better
SELECTION_METRICS = {"mean_max_prob": True, "objective": False}


def _check_selection_metric(selection_metric: str) -> None:
    if selection_metric not in SELECTION_METRICS:
        raise ValueError(f"selection_metric must be one of {list(SELECTION_METRICS)}, got {selection_metric!r}.")


def selection_metric_names(selection_metric: str, num_levels: int) -> list[str]:
    """The evaluator metric that selects each level's weights: ``<selection_metric>_l<level>``.

    Raises:
        ValueError: ``selection_metric`` is not one of ``SELECTION_METRICS``; the message names the config id.
    """
    _check_selection_metric(selection_metric)
    return [f"{selection_metric}_l{level + 1}" for level in range(num_levels)]


def selection_higher_is_better(selection_metric: str) -> bool:
    """Whether a higher value of ``selection_metric`` is better (raises ``ValueError`` as above)."""
    _check_selection_metric(selection_metric)
    return SELECTION_METRICS[selection_metric]


class ValidationObjective:
    """After each validation round, the training objective of each trained level on the validation volumes, as the
    evaluator metrics ``objective_l<level>`` (lower is better), for ``BestPerLevel``.

    Per level it is the ``DiscoveryLoss`` of that level alone on the untransformed volume (Tursynbek & Niethammer,
    MICCAI 2023, eq. 4, with the invariance term 0 since no photometric transform is drawn, and without the nesting
    term, which couples levels), averaged over the volumes. Not in the paper, which selects the epoch of the best mean
    max probability (sec. 4.2): that score cannot see parts that copy each other (two copies of the background split
    its voxels evenly, halving the max probability at no cost to the objective), so on brains it picked the first
    epoch of runs whose objective kept falling (``benchmarks/objective_gap.py``). The visual target and the features
    of each volume are computed once, with noise seeded by ``seed``, so the global random state of training is not
    touched and every round scores the same targets.

    Args:
        network: the ``HierarchicalSegmenter`` being trained, possibly in ``DistributedDataParallel``.
        loss_function: the trainer's ``DiscoveryLoss``.
        data_loader: the validation volumes (``image`` key, loaded with their file names).
        feature_stages: per trained level, its decoder stages (as the trainer's ``feature_stages``).
        feature_extractor: the frozen ``DiffusionFeatureExtractor``; None when ``lambda_f`` is 0.
        visual_denoiser: the ``DiffusionDenoiser`` the visual term reads; None: the image.
        seed: seed of the noise of the features.

    Under multi-GPU training the handler runs on the main process and scores the validation volumes of its sampler.
    """

    def __init__(
        self,
        network: HierarchicalSegmenter | DistributedDataParallel,
        loss_function: DiscoveryLoss,
        data_loader: DataLoader,
        feature_stages: Sequence[int | Sequence[int]],
        feature_extractor: DiffusionFeatureExtractor | None = None,
        visual_denoiser: DiffusionDenoiser | None = None,
        seed: int = 0,
    ) -> None:
        self.segmenter = network.module if isinstance(network, DistributedDataParallel) else network
        self.stages = level_stages(feature_stages)
        if len(self.stages) != len(self.segmenter.num_parts):
            raise ValueError(
                f"feature_stages needs one entry per trained level ({len(self.segmenter.num_parts)}), got "
                f"{list(feature_stages)}."
            )
        if loss_function.lambda_f and feature_extractor is None:
            raise ValueError("lambda_f > 0 needs the feature_extractor.")
        self.loss_function = loss_function
        self.data_loader = data_loader
        self.feature_extractor = feature_extractor if loss_function.lambda_f else None
        self.visual_denoiser = visual_denoiser
        self.seed = seed
        self._targets: dict[str, tuple[torch.Tensor, dict[int, torch.Tensor] | None]] = {}

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def targets(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[int, torch.Tensor] | None]:
        """The visual target and the native features of one validation volume."""
        visual = images if self.visual_denoiser is None else self.visual_denoiser(images)
        if self.feature_extractor is None:
            return visual, None
        generator = torch.Generator().manual_seed(self.seed)
        return visual, self.feature_extractor.native_mean(images, generator=generator)

    @torch.no_grad()
    def __call__(self, engine: Engine) -> None:
        training = self.segmenter.training
        self.segmenter.eval()
        totals = [0.0] * len(self.stages)
        volumes = 0
        for batch in self.data_loader:
            images = batch[CommonKeys.IMAGE].to(engine.state.device)
            for index, key in enumerate(volume_keys(images)):
                volume = images[index : index + 1]
                if key not in self._targets:
                    self._targets[key] = self.targets(volume)
                visual, native = self._targets[key]
                outputs = self.segmenter.split(self.segmenter(volume))
                levels = [outputs[level] for level in self.segmenter.trained_levels]
                size = volume.shape[2:]
                for level, (masks, stages) in enumerate(zip(levels, self.stages, strict=True)):
                    features = None if native is None else UpsampledFeatures([native[s] for s in stages], size)
                    totals[level] += float(self.loss_function([masks], [masks], visual, [features])[0])
                volumes += 1
        for level, total in enumerate(totals):
            engine.state.metrics[f"objective_l{level + 1}"] = total / max(volumes, 1)
        self.segmenter.train(training)

"""Training engine for label-free structure discovery (Tursynbek & Niethammer, MICCAI 2023, sec. 3, Fig. 2)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from ignite.engine import Engine
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.handlers import IgniteMetricHandler
from monai.transforms import RandAdjustContrast
from monai.utils import CommonKeys
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from monai_ext.baselines.kmeans import kmeans_segment, order_by_mean
from monai_ext.engines.handlers import MeanMaxProbability
from monai_ext.losses import DiscoveryLoss
from monai_ext.metrics import MatchedDiceMetric, MatchedHausdorffDistanceMetric, PartsUsedMetric
from monai_ext.networks import (
    DiffusionDenoiser,
    DiffusionFeatureExtractor,
    FeatureCache,
    HierarchicalSegmenter,
    UpsampledFeatures,
)
from monai_ext.transforms.hierarchy import level_output_transform


def volume_keys(images: torch.Tensor) -> list[str]:
    """One stable identifier per volume of a batch, the key of its ``FeatureCache`` entries: its source file
    name (MetaTensor meta). Raises ``ValueError`` when the batch carries no file names (e.g. plain tensors),
    since a position in the batch would give different volumes the same cached features."""
    names = images.meta.get("filename_or_obj") if hasattr(images, "meta") else None
    if names is None:
        raise ValueError(
            "the feature cache needs the source file name of every image (a MetaTensor from LoadImaged); "
            "this batch has none. Load images with LoadImaged or set use_feature_cache to false."
        )
    return [str(n) for n in (names if isinstance(names, (list, tuple)) else [names])]


def level_stages(feature_stages: Sequence[int | Sequence[int]]) -> list[list[int]]:
    """``feature_stages`` (per level, a decoder stage or a list of them) as one list of stages per level."""
    return [[s] if isinstance(s, int) else [int(x) for x in s] for s in feature_stages]


class DiscoveryTrainer(SupervisedTrainer):
    """A ``SupervisedTrainer`` whose iteration minimises the label-free loss of eq. 4 at every hierarchy level.

    Each iteration: features phi(x0) of the frozen diffusion model (from a ``FeatureCache`` or recomputed),
    masks M = f(x0) and M' = f(T(x0)) with T(x0) = x0^gamma, gamma ~ U[gamma_range] drawn once per batch
    (MONAI ``RandAdjustContrast``), then L = lambda_v C(x0) + lambda_f C(phi) + lambda_inv Dice(M, M') summed
    over levels (``DiscoveryLoss``). Level l reads the concatenated features of ``feature_stages[l]``.

    With a ``visual_denoiser`` the visual term is C(D(x0)) on the diffusion model's own denoising of the image
    (``DiffusionDenoiser``: its x0 prediction from a lightly noised copy, averaged over draws; computed once per
    volume and kept in memory), not on the noisy x0 (not in the paper; it keeps the method label-free).

    With ``warm_start_epochs`` > 0 the first epochs instead fit each level to the k-means partition (K_l parts) of
    that visual target, computed once per volume: a label-free start from the partition x0 + k-means finds, which
    the consistency loss then refines (not in the paper).

    Args:
        device: training device.
        max_epochs: epochs to train.
        train_data_loader: batches with an ``image`` in [0, 1] (B, 1, *spatial).
        network: the ``HierarchicalSegmenter``, or it wrapped in ``DistributedDataParallel`` (multi-GPU training).
        optimizer: its optimizer.
        loss_function: a ``DiscoveryLoss``.
        feature_stages: per level, the decoder stages whose features it uses (ints or lists of ints).
        feature_extractor: the frozen ``DiffusionFeatureExtractor`` (used when no cache is given).
        feature_cache: a ``FeatureCache`` over the same extractor; None recomputes features every step.
        gamma_range: range of the gamma of the photometric transform.
        seed: seed of the gamma draws.
        visual_denoiser: the frozen ``DiffusionDenoiser`` whose output the visual term reads; None: the image.
        warm_start_epochs: epochs fitted to the k-means partitions of the visual target before eq. 4, >= 0.
        kwargs: passed to ``SupervisedTrainer`` (amp, train_handlers, postprocessing, ...).
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: DataLoader,
        network: HierarchicalSegmenter | DistributedDataParallel,
        optimizer: torch.optim.Optimizer,
        loss_function: DiscoveryLoss,
        feature_stages: Sequence[int | Sequence[int]],
        feature_extractor: DiffusionFeatureExtractor | None = None,
        feature_cache: FeatureCache | None = None,
        gamma_range: tuple[float, float] = (0.9, 1.1),
        seed: int = 0,
        visual_denoiser: DiffusionDenoiser | None = None,
        warm_start_epochs: int = 0,
        **kwargs,
    ) -> None:
        segmenter = network.module if isinstance(network, DistributedDataParallel) else network
        stages = level_stages(feature_stages)
        if len(stages) != len(segmenter.num_parts):
            raise ValueError(
                f"feature_stages needs one entry per level ({len(segmenter.num_parts)} levels: num_parts "
                f"{segmenter.num_parts}), got {feature_stages}."
            )
        extractor = feature_cache.extractor if feature_cache is not None else feature_extractor
        if loss_function.lambda_f:
            if extractor is None:
                raise ValueError("lambda_f > 0 needs a feature_extractor or a feature_cache.")
            if missing := {s for level in stages for s in level} - set(extractor.stages):
                raise ValueError(
                    f"feature_stages {sorted(missing)} are not read by the extractor (its stages: {extractor.stages})."
                )
        if not 0 < gamma_range[0] <= gamma_range[1]:
            raise ValueError(f"gamma_range must satisfy 0 < low <= high, got {gamma_range}.")
        if (
            isinstance(warm_start_epochs, bool)
            or not isinstance(warm_start_epochs, int)
            or not 0 <= warm_start_epochs < max_epochs
        ):
            raise ValueError(
                f"warm_start_epochs must be an int in [0, max_epochs = {max_epochs}) so that eq. 4 trains at least "
                f"one epoch, got {warm_start_epochs!r}."
            )
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function,
            **kwargs,
        )
        self.segmenter = segmenter
        self.feature_stages = stages
        self.feature_extractor = extractor
        self.feature_cache = feature_cache
        self.visual_denoiser = visual_denoiser
        self._denoised: dict[str, torch.Tensor] = {}
        self.warm_start_epochs = warm_start_epochs
        self._partitions: dict[str, list[torch.Tensor]] = {}
        self.photometric = RandAdjustContrast(prob=1.0, gamma=gamma_range)
        self.photometric.set_random_state(seed)

    def level_features(self, images: torch.Tensor) -> list[UpsampledFeatures | None]:
        """phi(x0) of every level, read on the image grid (``UpsampledFeatures``); None for all levels when lambda_f
        is 0."""
        if not self.loss_function.lambda_f:
            return [None] * len(self.feature_stages)
        if self.feature_cache is not None:
            native = self.feature_cache.native(images, volume_keys(images))
        else:
            native = self.feature_extractor.native_mean(images)
        size = images.shape[2:]
        return [UpsampledFeatures([native[s] for s in level], size) for level in self.feature_stages]

    def visual_target(self, images: torch.Tensor) -> torch.Tensor:
        """What the visual term clusters: the images, or their denoising by ``visual_denoiser`` (once per volume)."""
        if self.visual_denoiser is None or not self.loss_function.lambda_v:
            return images
        targets = []
        for index, key in enumerate(volume_keys(images)):
            if key not in self._denoised:
                self._denoised[key] = self.visual_denoiser(images[index : index + 1]).cpu()
            targets.append(self._denoised[key])
        return torch.cat(targets).to(images.device)

    def warm_start_loss(
        self, masks: list[torch.Tensor], visual: torch.Tensor, keys: list[str]
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Cross-entropy of each level's masks against the k-means partition (K_l parts) of the visual target of each
        volume (``keys``: its ``volume_keys``; computed on its first use), its parts numbered by ascending mean
        (``order_by_mean``) so that part k is the same kind of part in every volume, summed over levels."""
        for index, key in enumerate(keys):
            if key not in self._partitions:
                values = visual[index].detach().cpu().numpy()
                parts = [kmeans_segment(values, k, channel_first=True) for k in self.segmenter.num_parts]
                parts = [order_by_mean(p, values, channel_first=True) for p in parts]  # the same order in every volume
                self._partitions[key] = [torch.as_tensor(p) for p in parts]
        loss = visual.new_zeros(())
        for level, m in enumerate(masks):
            target = torch.stack([self._partitions[key][level] for key in keys]).to(m.device)
            loss = loss + torch.nn.functional.nll_loss(torch.log(m.float().clamp_min(1e-8)), target)
        return loss, {"loss_warm_start": float(loss.detach())}

    def _iteration(self, engine: Engine, batchdata: dict[str, torch.Tensor]) -> dict:  # type: ignore[override]
        """One optimisation step; fires MONAI's iteration events (so decollation and handlers work as usual)."""
        if batchdata is None:
            raise ValueError("must provide batch data for current iteration.")
        images = batchdata[CommonKeys.IMAGE].to(engine.state.device, non_blocking=engine.non_blocking)
        features = self.level_features(images)
        visual = self.visual_target(images)
        engine.state.output = {CommonKeys.IMAGE: images}
        engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        warm_start = engine.state.epoch <= self.warm_start_epochs
        with self._autocast():
            masks = engine.network(images)
            transformed = None
            if engine.loss_function.lambda_inv and not warm_start:
                transformed = self.segmenter.split(engine.network(self.photometric(images)))
            engine.state.output[CommonKeys.PRED] = masks
            engine.fire_event(IterationEvents.FORWARD_COMPLETED)
            if warm_start:
                loss, terms = self.warm_start_loss(self.segmenter.split(masks), visual, volume_keys(images))
            else:
                loss, terms = engine.loss_function(self.segmenter.split(masks), transformed, visual, features)
            engine.state.output.update({CommonKeys.LOSS: loss, **terms})
            engine.fire_event(IterationEvents.LOSS_COMPLETED)
        if engine.amp and engine.scaler is not None:
            engine.scaler.scale(loss).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            loss.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.optimizer.step()
        engine.state.output[CommonKeys.PRED] = masks.detach()
        engine.state.output[CommonKeys.LOSS] = loss.detach()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return engine.state.output

    def _autocast(self) -> Callable:
        device_type = torch.device(self.state.device).type
        return torch.autocast(device_type=device_type, enabled=bool(self.amp) and device_type == "cuda")


def discovery_metrics(
    num_parts: Sequence[int],
    with_labels: bool,
    hd95_levels: Sequence[int] = (),
    report_classes: Sequence[int] | None = None,
    hd95_spacing: float | Sequence[float] | None = None,
) -> dict[str, IgniteMetricHandler]:
    """Evaluator metrics for a hierarchical output (per-level probabilities concatenated under ``pred``).

    ``mean_max_prob_l{l}`` (label-free model selection) and ``parts_used_l{l}`` (``PartsUsedMetric``: the parts
    holding at least 0.5 % of a volume) for every level; when the data have labels (one channel
    per level under ``label``) also ``matched_dice_l{l}`` and, for the 0-based levels in ``hd95_levels``,
    ``matched_hd95_l{l}``. ``report_classes`` restricts the Dice mean to some ground-truth classes (e.g. ``[1]``
    for a tumour), see ``MatchedDiceMetric``. ``hd95_spacing`` is the voxel spacing the HD95 is measured with
    (``MatchedHausdorffDistanceMetric``'s ``spacing``, e.g. 2.0 for a 2 mm grid gives mm); None measures in voxels.
    """
    if bad := [level for level in hd95_levels if not 0 <= level < len(num_parts)]:
        raise ValueError(f"hd95_levels {bad} are not 0-based levels of num_parts {list(num_parts)}.")
    metrics: dict[str, IgniteMetricHandler] = {}
    for level in range(len(num_parts)):
        name = f"l{level + 1}"
        metrics[f"mean_max_prob_{name}"] = MeanMaxProbability(
            output_transform=level_output_transform(num_parts, level, label=False)
        )
        metrics[f"parts_used_{name}"] = IgniteMetricHandler(
            metric_fn=PartsUsedMetric(), output_transform=level_output_transform(num_parts, level, label=False),
            save_details=True,
        )  # fmt: skip
        if not with_labels:
            continue
        metrics[f"matched_dice_{name}"] = IgniteMetricHandler(
            metric_fn=MatchedDiceMetric(report_classes=report_classes),
            output_transform=level_output_transform(num_parts, level),
            save_details=True,
        )
        if level in hd95_levels:
            metrics[f"matched_hd95_{name}"] = IgniteMetricHandler(
                metric_fn=MatchedHausdorffDistanceMetric(classes=report_classes, spacing=hd95_spacing),
                output_transform=level_output_transform(num_parts, level),
                save_details=True,
            )
    return metrics

"""Label-free model selection on the training objective (``ValidationObjective``, ``selection_metric``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from monai.data import MetaTensor

from monai_ext.engines import ValidationObjective, selection_higher_is_better, selection_metric_names
from monai_ext.losses import DiscoveryLoss
from monai_ext.networks import HierarchicalSegmenter


def _volume(seed: int, name: str) -> MetaTensor:
    generator = torch.Generator().manual_seed(seed)
    return MetaTensor(torch.rand(1, 1, 8, 8, 8, generator=generator), meta={"filename_or_obj": [name]})


def _kmeans_cost(masks: np.ndarray, values: np.ndarray) -> float:
    """Eq. 5 by loops: 1/N sum_k sum_u M_ku (x_u - z_k)^2, z_k the M_k-weighted mean of x."""
    total = 0.0
    for m in masks:
        centre = (m * values).sum() / (m.sum() + 1e-5)
        total += float((m * (values - centre) ** 2).sum())
    return total / values.size


def _scorer(network: HierarchicalSegmenter, volumes: list[MetaTensor], **loss) -> ValidationObjective:
    loader = [{"image": v} for v in volumes]
    return ValidationObjective(network, DiscoveryLoss(lambda_f=0.0, **loss), loader, feature_stages=[1, 2])


def test_objective_per_level_equals_the_kmeans_cost_of_the_masks_on_the_image():
    torch.manual_seed(0)
    network = HierarchicalSegmenter(num_parts=[2, 3], spatial_dims=3, in_channels=1, channels=[4, 8], strides=[2])
    volumes = [_volume(1, "a.nii.gz"), _volume(2, "b.nii.gz")]
    engine = Engine(lambda e, b: None)
    engine.state.device = "cpu"
    network.train()
    _scorer(network, volumes, lambda_v=2.0, lambda_inv=1.0, lambda_nest=1.0)(engine)
    assert network.training  # the training mode is restored
    network.eval()
    expected = []
    for level in range(2):
        costs = []
        for volume in volumes:
            with torch.no_grad():
                masks = network.split(network(volume.as_tensor()))[level][0].numpy()
            costs.append(2.0 * _kmeans_cost(masks, volume.as_tensor()[0, 0].numpy()))  # invariance 0, no nesting
        expected.append(np.mean(costs))
    measured = [engine.state.metrics["objective_l1"], engine.state.metrics["objective_l2"]]
    np.testing.assert_allclose(measured, expected, rtol=1e-4)


def test_objective_scores_only_the_trained_levels_of_a_merged_hierarchy():
    network = HierarchicalSegmenter(
        num_parts=[4], merged_parts=[2], spatial_dims=3, in_channels=1, channels=[4, 8], strides=[2]
    )
    engine = Engine(lambda e, b: None)
    engine.state.device = "cpu"
    scorer = ValidationObjective(network, DiscoveryLoss(lambda_f=0.0), [{"image": _volume(3, "c.nii.gz")}], [2])
    scorer(engine)
    assert set(engine.state.metrics) == {"objective_l1"}


def test_features_are_required_when_the_feature_term_is_on():
    network = HierarchicalSegmenter(num_parts=[2], spatial_dims=3, in_channels=1, channels=[4, 8], strides=[2])
    with pytest.raises(ValueError, match="lambda_f > 0 needs the feature_extractor"):
        ValidationObjective(network, DiscoveryLoss(), [], feature_stages=[1])
    with pytest.raises(ValueError, match="one entry per trained level"):
        ValidationObjective(network, DiscoveryLoss(lambda_f=0.0), [], feature_stages=[1, 2])


def test_selection_metric_names_its_levels_and_direction():
    assert selection_metric_names("objective", 3) == ["objective_l1", "objective_l2", "objective_l3"]
    assert not selection_higher_is_better("objective") and selection_higher_is_better("mean_max_prob")
    with pytest.raises(ValueError, match="selection_metric must be one of"):
        selection_metric_names("loss", 1)

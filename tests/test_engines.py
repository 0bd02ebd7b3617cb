from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch

from monai_ext.engines import BestPerLevel, SamplePredictionPrepareBatch
from monai_ext.networks import HierarchicalSegmenter


def _fake_engine(epoch: int, metrics: dict) -> SimpleNamespace:
    return SimpleNamespace(state=SimpleNamespace(epoch=epoch, metrics=metrics))


def _fill(net: torch.nn.Module, value: float) -> None:
    """Set every parameter of ``net`` to ``value`` (so saved weights show which epoch they come from)."""
    with torch.no_grad():
        for p in net.parameters():
            p.fill_(value)


def test_best_per_level_keeps_each_level_from_its_own_best_epoch(tmp_path):
    net = HierarchicalSegmenter(num_parts=(2, 3), channels=(4, 4), strides=(1,))
    handler = BestPerLevel(net, ["score_l1", "score_l2"], tmp_path / "model.pt")
    _fill(net, 1.0)
    handler(_fake_engine(1, {"score_l1": 0.5, "score_l2": 0.7}))
    _fill(net, 2.0)
    handler(_fake_engine(2, {"score_l1": 0.6, "score_l2": 0.6}))  # level 1 improves, level 2 does not
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    parameters = {name for name, _ in net.named_parameters()}
    level1 = [state[k] for k in parameters if k.startswith("levels.0.")]
    level2 = [state[k] for k in parameters if k.startswith("levels.1.")]
    assert level1 and all(torch.all(v == 2.0) for v in level1)
    assert level2 and all(torch.all(v == 1.0) for v in level2)
    assert json.loads((tmp_path / "model_selection.json").read_text())["epochs"] == [2, 1]
    restored = HierarchicalSegmenter(num_parts=(2, 3), channels=(4, 4), strides=(1,))
    restored.load_state_dict(state)


def test_best_per_level_keeps_the_earlier_selection_when_a_run_resumes(tmp_path):
    net = HierarchicalSegmenter(num_parts=(2, 3), channels=(4, 4), strides=(1,))
    first = BestPerLevel(net, ["score_l1", "score_l2"], tmp_path / "model.pt")
    _fill(net, 1.0)
    first(_fake_engine(1, {"score_l1": 0.9, "score_l2": 0.5}))
    torch.save({}, tmp_path / "checkpoint_epoch=1.pt")  # the run was interrupted after epoch 1
    resumed = BestPerLevel(net, ["score_l1", "score_l2"], tmp_path / "model.pt")
    resumed.attach(SimpleNamespace(add_event_handler=lambda *args: None))
    _fill(net, 2.0)
    resumed(_fake_engine(2, {"score_l1": 0.8, "score_l2": 0.6}))  # worse at level 1, better at level 2
    state = torch.load(tmp_path / "model.pt", weights_only=True)
    parameters = {name for name, _ in net.named_parameters()}
    assert all(torch.all(state[k] == 1.0) for k in parameters if k.startswith("levels.0."))
    assert all(torch.all(state[k] == 2.0) for k in parameters if k.startswith("levels.1."))
    record = json.loads((tmp_path / "model_selection.json").read_text())
    assert record["epochs"] == [1, 2] and record["best"] == [0.9, 0.6]


def test_best_per_level_selects_a_plain_network_on_one_metric_across_a_resume(tmp_path):
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(1.0)
    BestPerLevel(net, ["val_l1"], tmp_path / "model.pt", higher_is_better=False)(_fake_engine(1, {"val_l1": 0.2}))
    torch.save({}, tmp_path / "checkpoint_epoch=1.pt")
    resumed = BestPerLevel(net, ["val_l1"], tmp_path / "model.pt", higher_is_better=False)
    resumed.attach(SimpleNamespace(add_event_handler=lambda *args: None))
    with torch.no_grad():
        net.weight.fill_(2.0)
    resumed(_fake_engine(2, {"val_l1": 0.3}))  # worse than before the resume: model.pt keeps epoch 1
    assert torch.all(torch.load(tmp_path / "model.pt", weights_only=True)["weight"] == 1.0)
    resumed(_fake_engine(3, {"val_l1": 0.1}))
    assert torch.all(torch.load(tmp_path / "model.pt", weights_only=True)["weight"] == 2.0)
    assert json.loads((tmp_path / "model_selection.json").read_text())["epochs"] == [3]


def test_best_per_level_selects_nothing_before_its_first_epoch(tmp_path):
    """A warm start's epochs optimise another objective: their weights must not be selected (issue 31 review)."""
    net = torch.nn.Linear(2, 1)
    handler = BestPerLevel(net, ["val_l1"], tmp_path / "model.pt", first_epoch=3)
    handler(_fake_engine(2, {"val_l1": 0.9}))
    assert not (tmp_path / "model.pt").exists()
    handler(_fake_engine(3, {"val_l1": 0.1}))
    assert json.loads((tmp_path / "model_selection.json").read_text())["epochs"] == [3]
    with pytest.raises(ValueError, match="first_epoch"):
        BestPerLevel(net, ["val_l1"], tmp_path / "model.pt", first_epoch=0)


def test_best_per_level_needs_its_metrics(tmp_path):
    net = HierarchicalSegmenter(num_parts=(2,), channels=(4, 4), strides=(1,))
    with pytest.raises(ValueError, match="one metric per level"):
        BestPerLevel(net, ["a", "b"], tmp_path / "m.pt")
    with pytest.raises(KeyError, match="computes no metric 'a'"):
        BestPerLevel(net, ["a"], tmp_path / "m.pt")(_fake_engine(1, {"b": 1.0}))


def test_sample_prediction_prepare_batch_targets_the_clean_image():
    images = torch.rand(3, 1, 4, 4, 4)
    inputs, target, args, kwargs = SamplePredictionPrepareBatch(num_train_timesteps=250)({"image": images})
    assert torch.equal(target, images) and torch.equal(inputs, images) and args == ()
    assert kwargs["noise"].shape == images.shape and kwargs["timesteps"].shape == (3,)
    assert int(kwargs["timesteps"].max()) < 250
    with pytest.raises(ValueError, match="num_train_timesteps"):
        SamplePredictionPrepareBatch(num_train_timesteps=0)

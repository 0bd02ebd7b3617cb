"""The training options of the CUTS benchmarks reach the bundle's training as config overrides
(`benchmarks/cuts.py`'s ``encoder_config``, `benchmarks/cuts_selection.py`'s loss and seed options)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cuts
import cuts_selection

ROOT = Path(__file__).resolve().parents[1]


class _Config(dict):
    """The part of a bundle ``ConfigParser`` that ``encoder_config`` uses."""

    def get_parsed_content(self, key: str) -> str:
        return self[key]


class _StopError(Exception):
    """Raised by a stand-in for ``encoder_config`` once it has seen its arguments, before any work starts."""


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cuts.add_encoder_arguments(parser, "test", split="validation")
    return parser.parse_args(["--train", "--workdir", "w", *argv])


def test_overrides_reach_the_training_and_zero_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    trained = {}

    def train(workdir: str, dataset_dir: str | None, overrides: dict, dataset: str) -> tuple[str, dict]:
        trained.update(overrides)
        return "w/train/model.pt", {"overrides": overrides}

    monkeypatch.setattr(cuts, "train_encoder", train)
    monkeypatch.setattr(cuts, "inference_parser", lambda ckpt, *_: _Config(ckpt_path=ckpt, kernel_size=3))
    config, ckpt, _ = cuts.encoder_config(
        _args("--max-epochs", "2"), None, {"temperature": 0.1, "contrastive_weight": 0.0, "patch_size": None}
    )
    assert trained == {"max_epochs": 2, "temperature": 0.1, "contrastive_weight": 0.0}
    assert ckpt == "w/train/model.pt" and config["input_split"] == "validation"


def test_selection_options_are_training_config_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = {}

    def encoder_config(args: argparse.Namespace, dataset_dir: str | None, overrides: dict) -> None:
        seen.update(overrides)
        raise _StopError

    monkeypatch.setattr(cuts_selection, "encoder_config", encoder_config)
    argv = [
        "--train",
        *("--temperature", "0.1", "--contrastive-weight", "0", "--anchors-per-image", "8"),
        *("--seed", "0", "--positive-radius", "2"),
    ]
    monkeypatch.setattr(sys, "argv", ["cuts_selection.py", *argv])
    with pytest.raises(_StopError):
        cuts_selection.main()
    assert seen == {
        "patch_size": None,
        "temperature": 0.1,
        "contrastive_weight": 0.0,
        "anchors_per_image": 8,
        "seed": 0,
        "positive_radius": 2,
    }
    train = json.loads((ROOT / "bundles" / "cuts" / "configs" / "train.json").read_text())
    assert set(seen) <= set(train)


@pytest.mark.parametrize(
    "option",
    [
        ["--temperature", "0.1"],
        ["--contrastive-weight", "0.001"],
        ["--anchors-per-image", "8"],
        ["--seed", "0"],
        ["--positive-radius", "2"],
    ],
)
def test_selection_refuses_training_options_without_train(
    option: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def encoder_config(*_: object) -> None:
        raise _StopError

    monkeypatch.setattr(cuts_selection, "encoder_config", encoder_config)
    monkeypatch.setattr(sys, "argv", ["cuts_selection.py", *option])
    with pytest.raises(SystemExit):
        cuts_selection.main()
    assert "pass --train" in capsys.readouterr().err

"""Every boolean option of every bundle config means what its command-line spelling says.

``python -m monai.bundle run --overwrite false`` hands the config the string ``"false"`` (fire reads only Python
literals), which is truthy. Each boolean config id (one whose default is ``true`` / ``false``, or an expression
without references that evaluates to a bool, such as ``use_amp``) must therefore reach its consumers through
``monai_ext.flags.as_flag(@id, 'id')``. This test walks every config file of every bundle and fails on a reference
that bypasses the conversion.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from monai.bundle import ConfigParser

from monai_ext.flags import as_flag

BUNDLES = Path(__file__).resolve().parents[1] / "bundles"
# helpers that read a flag through ``as_flag`` themselves (``tests/test_output_folder.py`` passes them "false")
CONVERTS_ITSELF = (
    "monai_ext.data.output_folder.prepare_output_dir(",
    "monai_ext.data.output_folder.prepare_training_dir(",
)
# MONAI's tracking setting: True, or the path of the executed config MONAI sets in its place
NOT_A_FLAG = {"save_execute_config"}
CONFIG_FILES = sorted(p for p in BUNDLES.glob("*/configs/*.json") if p.name != "metadata.json")


def _strings(node: object, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string value of a JSON tree with its config id."""
    if isinstance(node, str):
        yield path, node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _strings(value, f"{path}#{key}" if path else str(key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _strings(value, f"{path}#{index}")


def _is_boolean(config: dict, key: str) -> bool:
    value = config[key]
    if isinstance(value, bool):
        return True
    if isinstance(value, str) and value.startswith("$") and "@" not in value and "import" not in value:
        parser = ConfigParser({"imports": config.get("imports", []), key: value})
        try:
            return isinstance(parser.get_parsed_content(key), bool)
        except Exception:  # an expression that needs more than the imports is not a plain option
            return False
    return False


def boolean_ids(folder: Path) -> set[str]:
    """Top-level boolean ids of all the config files of one bundle (files are layered, so ids are shared)."""
    ids = set()
    for path in folder.glob("*.json"):
        config = json.loads(path.read_text())
        if path.name != "metadata.json" and isinstance(config, dict):
            ids |= {key for key in config if not key.startswith(("_", "+")) and _is_boolean(config, key)}
    return ids


def bypasses(path: Path) -> list[str]:
    """The references to boolean ids in ``path`` that do not go through ``as_flag``."""
    flags = boolean_ids(path.parent)
    found = []
    for config_id, text in _strings(json.loads(path.read_text())):
        for match in re.finditer(r"@([A-Za-z_][\w#]*)", text):
            name = match.group(1)
            converted = re.search(rf"as_flag\(@{re.escape(name)}, '{re.escape(name)}'\)", text)
            if name in flags - NOT_A_FLAG and not converted and not text.lstrip("$").startswith(CONVERTS_ITSELF):
                found.append(f"{path.parent.parent.name}/{path.name}: {config_id} reads @{name} without as_flag")
    return found


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_boolean_options_go_through_as_flag(path: Path) -> None:
    assert bypasses(path) == []


def test_the_walk_finds_the_known_options_and_a_bypass(tmp_path: Path) -> None:
    """The check itself can fail: a config that passes a flag on raw is reported."""
    assert {"overwrite", "normalize_consistency", "use_feature_cache", "use_amp"} <= boolean_ids(
        BUNDLES / "structure_discovery" / "configs"
    )
    assert {"progress", "use_amp", "overwrite"} <= boolean_ids(BUNDLES / "diffusion_pretraining" / "configs")
    bad = tmp_path / "configs" / "train.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"normalize": False, "loss": {"_target_": "X", "normalize": "@normalize"}}))
    assert bypasses(bad) == [f"{tmp_path.name}/train.json: loss#normalize reads @normalize without as_flag"]


@pytest.mark.parametrize("spelling, expected", [("false", False), ("False", False), ("true", True), ("True", True)])
def test_command_line_spellings(spelling: str, expected: bool) -> None:
    assert as_flag(spelling, "overwrite") is expected

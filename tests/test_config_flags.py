"""Every boolean option of every bundle config means what its command-line spelling says.

``python -m monai.bundle run --overwrite false`` hands the config the string ``"false"`` (fire reads only Python
literals), which is truthy. Each boolean config id (one whose default is ``true`` / ``false``, or an expression
without references that evaluates to a bool, such as ``use_amp``) is therefore parsed once per config, as
``"flags#<id>": "$monai_ext.flags.as_flag(@<id>, '<id>')"`` (an entry of the config's ``flags`` mapping), and read
everywhere else as ``@flags#<id>``. This test walks every config file of every bundle and fails on a reference that
bypasses the parsed id, and on a ``$`` expression too long to read (over 120 characters: a named id, a ``_target_``
mapping or a tested helper instead).
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
MAX_EXPRESSION = 120
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
    """The references to boolean ids in ``path`` other than their one parse into ``flags#<id>``."""
    flags = boolean_ids(path.parent) - NOT_A_FLAG
    found = []
    for config_id, text in _strings(json.loads(path.read_text())):
        for match in re.finditer(r"@([A-Za-z_][\w#]*)", text):
            name = match.group(1)
            parse = f"$monai_ext.flags.as_flag(@{name}, '{name}')"
            if name in flags and not (config_id == f"flags#{name}" and text == parse):
                found.append(f"{path.parent.parent.name}/{path.name}: {config_id} reads @{name}, not @flags#{name}")
    return found


def long_expressions(path: Path) -> list[str]:
    """The ``$`` expressions of ``path`` longer than ``MAX_EXPRESSION`` characters."""
    return [
        f"{path.parent.parent.name}/{path.name}: {config_id} ({len(text)} characters)"
        for config_id, text in _strings(json.loads(path.read_text()))
        if text.startswith("$") and len(text) > MAX_EXPRESSION
    ]


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_boolean_options_are_parsed_once_and_read_parsed(path: Path) -> None:
    assert bypasses(path) == []


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda p: f"{p.parent.parent.name}/{p.name}")
def test_no_expression_is_too_long_to_read(path: Path) -> None:
    assert long_expressions(path) == []


def test_the_walk_finds_the_known_options_and_a_bypass(tmp_path: Path) -> None:
    """The check itself can fail: a config that passes a flag on raw is reported."""
    assert {"overwrite", "normalize_consistency", "use_feature_cache", "use_amp"} <= boolean_ids(
        BUNDLES / "structure_discovery" / "configs"
    )
    assert {"progress", "use_amp", "overwrite"} <= boolean_ids(BUNDLES / "diffusion_pretraining" / "configs")
    bad = tmp_path / "configs" / "train.json"
    bad.parent.mkdir()
    bad.write_text(json.dumps({"normalize": False, "loss": {"_target_": "X", "normalize": "@normalize"}}))
    assert bypasses(bad) == [f"{tmp_path.name}/train.json: loss#normalize reads @normalize, not @flags#normalize"]
    parsed_twice = {"normalize": False, "loss": {"normalize": "$monai_ext.flags.as_flag(@normalize, 'normalize')"}}
    bad.write_text(json.dumps(parsed_twice))
    assert bypasses(bad) == [f"{tmp_path.name}/train.json: loss#normalize reads @normalize, not @flags#normalize"]
    bad.write_text(json.dumps({"long": "$" + "x" * MAX_EXPRESSION}))
    assert long_expressions(bad) == [f"{tmp_path.name}/train.json: long ({MAX_EXPRESSION + 1} characters)"]


@pytest.mark.parametrize("spelling, expected", [("false", False), ("False", False), ("true", True), ("True", True)])
def test_command_line_spellings(spelling: str, expected: bool) -> None:
    assert as_flag(spelling, "overwrite") is expected

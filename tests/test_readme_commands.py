"""Every ``python -m monai.bundle run`` command the READMEs and ``make demo`` / ``make demo-full`` show names config
files that exist, options that the configs define, and layers configs whose references all resolve (issue 30:
documents and configs change apart; a renamed id must not leave a command that ``check_command_line`` refuses or
that fails on a missing id)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from fire.parser import DefaultParseValue
from monai.bundle import ConfigParser

from monai_ext.command_line import _ids, unknown_options

ROOT = Path(__file__).resolve().parents[1]
READMES = [ROOT / "README.md", *sorted((ROOT / "bundles").glob("*/docs/README.md"))]
RUN = "-m monai.bundle run"
FENCED = re.compile(r"```[a-z]*\n(.*?)```", re.DOTALL)
INLINE = re.compile(r"`python -m monai\.bundle run([^`]*)`")


def readme_commands(readme: Path) -> list[str]:
    """The option strings of the bundle commands of a README: lines of its code blocks (continuations joined) and
    inline code in its prose."""
    text = readme.read_text()
    commands = [" ".join(match.group(1).split()) for match in INLINE.finditer(text)]
    for block in FENCED.findall(text):
        for line in block.replace("\\\n", " ").splitlines():
            if RUN in line:
                commands.append(line.split(RUN, 1)[1].split("#", 1)[0] if " #" in line else line.split(RUN, 1)[1])
    return commands


def makefile_commands(makefile: Path, targets: tuple[str, ...] = ("demo", "demo-full")) -> list[str]:
    """The option strings of the bundle commands of ``targets``' recipes, with the Makefile's variables expanded."""
    text = makefile.read_text().replace("\\\n", " ")
    variables = dict(re.findall(r"^([A-Z0-9_]+) :?= (.*)$", text, re.MULTILINE))
    commands = []
    for target in targets:
        recipe = re.search(rf"^{re.escape(target)}:.*\n((?:\t.*\n)+)", text, re.MULTILINE).group(1)
        for line in recipe.splitlines():
            if RUN in line:
                expanded = re.sub(r"\$\((\w+)\)", lambda m: variables.get(m.group(1), ""), line)
                commands.append(expanded.split(RUN, 1)[1].replace("\\#", "#"))
    return commands


def _options(command: str) -> dict[str, object]:
    tokens = shlex.split(command)
    options: dict[str, object] = {}
    for index, token in enumerate(tokens):
        if token.startswith("--"):
            following = tokens[index + 1] if index + 1 < len(tokens) else "True"
            options[token[2:].replace("-", "_")] = DefaultParseValue(following)
    return options


def _config_files(readme: Path, value: object) -> list[Path]:
    names = value if isinstance(value, list) else [value]
    bundle = readme.parent.parent
    return [ROOT / name if (ROOT / name).is_file() else bundle / name for name in map(str, names)]


CASES = [(readme, command) for readme in READMES for command in readme_commands(readme)]
CASES += [(ROOT / "Makefile", command) for command in makefile_commands(ROOT / "Makefile")]


def test_the_readmes_and_the_demo_show_bundle_commands():
    readmes = {readme for readme, _ in CASES} - {ROOT / "Makefile"}
    assert len(CASES) >= 10 and readmes == set(READMES)
    assert sum(path.name == "Makefile" for path, _ in CASES) == 2


def unresolved(config: dict) -> list[str]:
    """The ``@id`` references of a merged config that name no id of it."""
    ids = _ids(config)
    found = []
    for config_id, value in ids.items():
        if isinstance(value, str) and value.startswith(("$", "@")):
            found += [f"{config_id}: @{ref}" for ref in re.findall(r"@([A-Za-z_][\w#]*)", value) if ref not in ids]
    return found


@pytest.mark.parametrize("readme, command", CASES, ids=[f"{r.parent.parent.name}: {c[:60]}" for r, c in CASES])
def test_a_readme_command_names_existing_configs_and_known_options(readme, command):
    options = _options(command)
    files = _config_files(readme, options["config_file"])
    assert all(path.is_file() for path in files), f"{readme}: {files}"
    parser = ConfigParser()
    parser.read_config([str(path) for path in files])
    assert unknown_options(options, parser.get()) == [], f"{readme}: {command}"
    assert unresolved(parser.get()) == [], f"{readme}: {command}"


def test_a_reference_to_a_missing_id_is_found():
    """The check can fail: an expression or reference naming an id that no layered config defines."""
    config = {"flags": {"overwrite": False}, "run": ["$print(@flags#overwrite, @flags#progress)"], "x": "@y"}
    assert unresolved(config) == ["run#0: @flags#progress", "x: @y"]

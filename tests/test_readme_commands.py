"""Every ``python -m monai.bundle run`` command the READMEs show names config files that exist and options that the
configs define (issue 30: documents and configs change apart; a renamed id must not leave a README command that
``monai_ext.command_line.check_command_line`` would refuse)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from fire.parser import DefaultParseValue
from monai.bundle import ConfigParser

from monai_ext.command_line import unknown_options

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


def test_the_readmes_show_bundle_commands():
    assert len(CASES) >= 8 and {readme for readme, _ in CASES} == set(READMES)


@pytest.mark.parametrize("readme, command", CASES, ids=[f"{r.parent.parent.name}: {c[:60]}" for r, c in CASES])
def test_a_readme_command_names_existing_configs_and_known_options(readme, command):
    options = _options(command)
    files = _config_files(readme, options["config_file"])
    assert all(path.is_file() for path in files), f"{readme}: {files}"
    parser = ConfigParser()
    parser.read_config([str(path) for path in files])
    assert unknown_options(options, parser.get()) == [], f"{readme}: {command}"

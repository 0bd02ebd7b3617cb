"""The release versions agree: ``pyproject.toml``, ``monai_ext.__version__``, the newest release of ``CHANGELOG.md``
and the bundle versions it ships (each a version of the bundle's own ``metadata.json`` changelog)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

import monai_ext

ROOT = Path(__file__).resolve().parents[1]
BUNDLES = sorted(path.name for path in (ROOT / "bundles").iterdir() if (path / "configs" / "metadata.json").is_file())
RELEASE = re.compile(r"^## \[(\d+\.\d+\.\d+)\] - (\d{4}-\d{2}-\d{2})$", re.MULTILINE)


def _releases() -> list[tuple[str, str]]:
    """(version, text of its section) of every release in CHANGELOG.md, newest first."""
    text = (ROOT / "CHANGELOG.md").read_text()
    found = list(RELEASE.finditer(text))
    ends = [match.start() for match in found[1:]] + [len(text)]
    return [(match.group(1), text[match.end() : end]) for match, end in zip(found, ends, strict=True)]


def _key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def test_the_package_version_is_the_newest_release() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    releases = _releases()
    assert releases, "CHANGELOG.md has no '## [x.y.z] - YYYY-MM-DD' release"
    assert pyproject == monai_ext.__version__ == releases[0][0]


def test_releases_are_listed_newest_first_with_keep_a_changelog_headings() -> None:
    releases = _releases()
    versions = [_key(version) for version, _ in releases]
    assert versions == sorted(versions, reverse=True) and len(set(versions)) == len(versions)
    allowed = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}
    for version, text in releases:
        headings = re.findall(r"^### (.+)$", text, re.MULTILINE)
        assert headings and set(headings) <= allowed, f"{version}: {headings}"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_the_newest_release_ships_each_bundle_version(bundle: str) -> None:
    metadata = json.loads((ROOT / "bundles" / bundle / "configs" / "metadata.json").read_text())
    newest = _releases()[0][1]
    assert f"`{bundle}` {metadata['version']}" in newest
    assert metadata["version"] in metadata["changelog"]

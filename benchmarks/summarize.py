"""Markdown tables of the measured results in benchmarks/results/, for the READMEs and the result pages.

Reads only the JSON files the other scripts wrote (each carries its command, machine and versions) and prints
the tables whose files exist, with the papers' values beside ours:

    python benchmarks/summarize.py                 # every table
    python benchmarks/summarize.py table1 speed    # some of them
    python benchmarks/summarize.py --update        # rewrite the tables in every document
    python benchmarks/summarize.py --check         # exit 1 if a document's tables differ from the results

``--update`` rewrites, in each document (``DOCUMENTS``, or the files given), every block between
``<!-- summarize: SECTION ... -->`` and ``<!-- /summarize -->`` with those sections, so the documents' tables quote
the results files; ``--check`` reports the documents that ``--update`` would change.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from steps import RESULTS, ROOT
from summaries import SECTIONS, render

DOCUMENTS = ("README.md", "benchmarks/README.md", "bundles/*/docs/README.md", "bundles/*/docs/results.md", "docs/*.md")
BLOCK = re.compile(r"(<!-- summarize: ([a-z0-9_ ]+) -->\n).*?(<!-- /summarize -->)", re.DOTALL)


def documents() -> list[Path]:
    """The documents with summarize blocks, from the repository root."""
    return sorted({path for pattern in DOCUMENTS for path in ROOT.glob(pattern)})


def rendered(path: Path) -> tuple[str, int]:
    """The text of a Markdown file with its summarize blocks rendered, and how many there were.

    Raises:
        ValueError: a block names an unknown section.
    """

    def fill(match: re.Match) -> str:
        sections = match.group(2).split()
        if unknown := sorted(set(sections) - set(SECTIONS)):
            raise ValueError(f"{path}: unknown sections {unknown} in '{match.group(1).strip()}'.")
        body = "\n\n".join(t for s in sections if (t := render(s)) is not None) or "(no results yet)"
        return f"{match.group(1)}{body}\n{match.group(3)}"

    return BLOCK.subn(fill, path.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sections", nargs="*", help=f"any of {', '.join(SECTIONS)} (default: all)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--update", nargs="*", metavar="FILE", help="rewrite the summarize blocks (default: DOCUMENTS)")
    mode.add_argument("--check", action="store_true", help="exit 1 if a document's blocks are not up to date")
    args = parser.parse_args()
    if args.check:
        stale = [path for path in documents() if rendered(path)[0] != path.read_text()]
        for path in stale:
            print(f"{path.relative_to(ROOT)} is stale: run python benchmarks/summarize.py --update", file=sys.stderr)
        sys.exit(1 if stale else 0)
    if args.update is not None:
        for path in [Path(p) for p in args.update] or documents():
            text, count = rendered(path)
            path.write_text(text)
            print(f"{path}: {count} blocks updated")
        return
    if unknown := sorted(set(args.sections) - set(SECTIONS)):
        parser.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    shown = [text for section in args.sections or SECTIONS if (text := render(section)) is not None]
    print("\n\n".join(shown) if shown else f"no results in {RESULTS}")


if __name__ == "__main__":
    main()

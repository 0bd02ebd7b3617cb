"""Markdown of the measured results in ``benchmarks/results/``, one module per bundle (and ``phantoms`` for the
data, ``clients`` for every bundle's tasks, ``runs`` for the list of results files): each module's ``SOURCES`` maps
a section name to its table function and to the reader of the results files it needs."""

from __future__ import annotations

from summaries import (
    clients,
    cuts,
    diffusion_pretraining,
    diffusion_segmentation,
    phantoms,
    runs,
    structure_discovery,
)

SOURCES = {
    **phantoms.SOURCES,
    **structure_discovery.SOURCES,
    **diffusion_pretraining.SOURCES,
    **diffusion_segmentation.SOURCES,
    **cuts.SOURCES,
    **clients.SOURCES,
    **runs.SOURCES,
}
SECTIONS = tuple(SOURCES)


def render(section: str) -> str | None:
    """One section as Markdown, or None when its results file is missing (reads only that section's files)."""
    function, read = SOURCES[section]
    result = read()
    return function(result) if result is not None else None

"""Helpers shared by the bundle tests."""

from __future__ import annotations

from pathlib import Path

from monai.bundle import ConfigWorkflow


def error_messages(error: BaseException | None) -> str:
    """The messages of an exception and of every exception it was raised from (MONAI wraps config errors)."""
    parts = []
    while error is not None:
        parts.append(f"{type(error).__name__}: {error}")
        error = error.__cause__
    return " | ".join(parts)


def bundle_workflow(configs: Path, config_file: str | list[str], workflow_type: str, **override) -> ConfigWorkflow:
    """An initialized workflow of ``config_file`` with the metadata and logging config of the ``configs`` folder."""
    wf = ConfigWorkflow(
        config_file=config_file,
        meta_file=str(configs / "metadata.json"),
        logging_file=str(configs / "logging.conf"),
        workflow_type=workflow_type,
        **override,
    )
    wf.initialize()
    return wf
